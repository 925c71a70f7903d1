"""Synthetic anomalies for training (DiffusionAD paper, section IV-D).

    I' = I * (1 - M) + (1 - beta) * A * M + beta * I * M,   beta ~ U(beta_range)

M is a Perlin blob mask restricted to the foreground; A is the anomaly source: an
augmented image from a DTD-style texture folder when one is given, otherwise a
procedural texture or the image itself augmented and strip-shuffled.

With ``kinds="mixed"`` only 40% of the anomalies are made this way; the rest are the structural
defects of :mod:`.structural` (cut-paste pieces of the part, thin cracks and scratches, intensity
and colour shifts), which resemble real production defects more than texture swaps do.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from diffusionad_edge.errors import ConfigError, DataError

from .augment import procedural_texture, random_augment, strip_shuffle
from .foreground import FOREGROUND_MODES, foreground_for
from .perlin import perlin_mask
from .preprocess import is_image_file, read_image, resize_to
from .structural import STRUCTURAL_DEFECTS, is_gray

#: Anomaly synthesis modes.
SYNTHESIS_KINDS = ("paper", "mixed")
#: With kinds="mixed": probability of the paper's blend; the rest is split evenly between the
#: structural defects.
PAPER_SHARE_IN_MIXED = 0.4


class AnomalySynthesizer:
    """Turns a normal training image into (anomalous image, binary mask).

    ``textures_dir``: optional DTD-style folder, searched recursively for images
    (DataError if it is missing or holds none); images are read lazily and cached
    at the requested size. ``foreground_mode``: "auto", "object" or "texture", see
    :func:`~diffusionad_edge.data.foreground.foreground_for`.
    """

    #: Resized textures kept in memory (about 50 MB at 256 x 256).
    texture_cache_size = 256

    def __init__(
        self,
        textures_dir: str | Path | None = None,
        foreground_mode: str = "auto",
        beta_range: tuple[float, float] = (0.2, 0.8),
        max_tries: int = 50,
        kinds: str = "paper",
    ):
        if kinds not in SYNTHESIS_KINDS:
            raise ConfigError(f"unknown synthesis {kinds!r} (expected one of {', '.join(SYNTHESIS_KINDS)})")
        self.kinds = kinds
        if foreground_mode not in FOREGROUND_MODES:
            raise ConfigError(
                f"unknown foreground mode {foreground_mode!r} (expected one of {', '.join(FOREGROUND_MODES)})"
            )
        lo, hi = (float(b) for b in beta_range)
        if not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(f"beta range must satisfy 0 <= low <= high <= 1, got {tuple(beta_range)}")
        if int(max_tries) < 1:
            raise ConfigError(f"max_tries must be at least 1, got {max_tries}")
        self.foreground_mode = foreground_mode
        self.beta_range = (lo, hi)
        self.max_tries = int(max_tries)
        self.textures_dir = Path(textures_dir) if textures_dir is not None else None
        self.texture_paths: list[Path] = self._find_textures(self.textures_dir) if self.textures_dir else []
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()

    @staticmethod
    def _find_textures(folder: Path) -> list[Path]:
        if not folder.is_dir():
            raise DataError(f"textures folder not found: {folder}")
        paths = sorted(p for p in folder.rglob("*") if is_image_file(p))
        if not paths:
            raise DataError(f"no images found in textures folder: {folder}")
        return paths

    def _texture(self, index: int, h: int, w: int) -> np.ndarray:
        """Texture ``index`` resized to h x w, through a small LRU cache."""
        key = (index, h, w)
        tex = self._cache.get(key)
        if tex is None:
            tex = resize_to(read_image(self.texture_paths[index]), h, w)
            self._cache[key] = tex
            if len(self._cache) > self.texture_cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return tex

    def _mask(self, fg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A non-empty float32 {0, 1} mask inside ``fg``."""
        for _ in range(self.max_tries):
            mask = perlin_mask(fg.shape, rng)
            mask[~fg] = 0.0
            if mask.any():
                return mask
        # Tiny foregrounds can defeat the noise: an ellipse around a foreground pixel.
        h, w = fg.shape
        ys, xs = np.nonzero(fg)
        i = int(rng.integers(len(ys)))
        axes = tuple(max(1, int(rng.uniform(s / 32.0, s / 12.0))) for s in (w, h))
        canvas = np.zeros((h, w), np.uint8)
        cv2.ellipse(canvas, (int(xs[i]), int(ys[i])), axes, rng.uniform(0.0, 180.0), 0, 360, 1, -1)
        canvas[ys[i], xs[i]] = 1  # the seed pixel is in the foreground: never empty
        return ((canvas > 0) & fg).astype(np.float32)

    def _self_source(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return strip_shuffle(random_augment(img, rng, n=3), rng)

    def _source(self, img: np.ndarray, is_object: bool, rng: np.random.Generator) -> np.ndarray:
        """The anomaly source A, same shape as ``img``."""
        h, w = img.shape[:2]
        if self.texture_paths:
            # Objects also get self-augmented sources: defects on objects often look
            # like displaced pieces of the object rather than foreign textures.
            if is_object and rng.random() < 0.5:
                return self._self_source(img, rng)
            tex = self._texture(int(rng.integers(len(self.texture_paths))), h, w)
            return random_augment(tex, rng, n=3)
        if rng.random() < 0.5:
            return random_augment(procedural_texture((h, w), rng), rng, n=3)
        return self._self_source(img, rng)

    def synthesize(
        self,
        img_rgb: np.ndarray,
        rng: np.random.Generator,
        foreground: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (anomalous image RGB uint8 HxWx3, mask float32 HxW in {0, 1}).

        ``img_rgb`` is a normal image already at training size. The mask is never
        empty and lies inside ``foreground`` (default: :func:`foreground_for` with
        this synthesizer's mode; an empty foreground means the whole image). Pixels
        outside the mask are returned unchanged, bit for bit.
        """
        if img_rgb.dtype != np.uint8 or img_rgb.ndim != 3 or img_rgb.shape[2] != 3:
            raise DataError(f"expected an RGB uint8 HxWx3 image, got {img_rgb.dtype} {img_rgb.shape}")
        h, w = img_rgb.shape[:2]
        if foreground is None:
            fg = foreground_for(img_rgb, self.foreground_mode)
        else:
            fg = foreground_for(img_rgb, self.foreground_mode, user_mask=foreground)
        if not fg.any():
            fg = np.ones((h, w), bool)
        if self.kinds == "mixed" and rng.random() >= PAPER_SHARE_IN_MIXED:
            names = list(STRUCTURAL_DEFECTS)
            for _ in range(3):
                made = STRUCTURAL_DEFECTS[names[int(rng.integers(len(names)))]](img_rgb, fg, rng)
                if made is not None:
                    return made
            # Nowhere visible to put one (e.g. a flat black region): the paper's blend below.
        mask = self._mask(fg, rng)
        source = self._source(img_rgb, is_object=not fg.all(), rng=rng).astype(np.float32)
        if is_gray(img_rgb):
            # A monochrome camera never sees colour: a coloured patch on a gray part would teach
            # the segmentation net "colour = defect", which no real defect satisfies.
            source = np.repeat(source.mean(axis=2, keepdims=True), 3, axis=2)
        beta = np.float32(rng.uniform(*self.beta_range))
        m = mask[..., None]
        base = img_rgb.astype(np.float32)
        blended = base * (1 - m) + (1 - beta) * source * m + beta * base * m
        out = np.clip(np.round(blended), 0, 255).astype(np.uint8)
        # Float rounding must not touch pixels outside the mask: copy them verbatim.
        keep = mask == 0
        out[keep] = img_rgb[keep]
        return out, mask
