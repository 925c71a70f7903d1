"""Synthetic anomalies for training (DiffusionAD paper, section IV-D).

I' = I (1 - M) + (1 - beta) A M + beta I M, beta ~ U(0.2, 0.8), where M is a Perlin mask
restricted to the foreground and A an anomaly source: an augmented texture image (a DTD-style
folder when the user supplies one, otherwise a procedural texture) or the image itself augmented
and strip-shuffled.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError
from .augment import procedural_texture, random_augment, strip_shuffle
from .foreground import foreground_for
from .perlin import perlin_mask
from .preprocess import IMAGE_EXTENSIONS, read_image, resize_image


class AnomalySynthesizer:
    """Turns a normal image into (anomalous image, binary mask)."""

    def __init__(
        self,
        textures_dir: str | Path | None = None,
        foreground_mode: str = "auto",
        beta_range: tuple[float, float] = (0.2, 0.8),
        max_tries: int = 50,
    ):
        self.foreground_mode = foreground_mode
        self.beta_range = beta_range
        self.max_tries = max_tries
        self.texture_paths: list[Path] = []
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        if textures_dir is not None:
            folder = Path(textures_dir)
            if not folder.is_dir():
                raise DataError(f"texture folder not found: {folder}")
            self.texture_paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not self.texture_paths:
                raise DataError(f"no images in texture folder: {folder}")

    def _texture(self, index: int, size: int) -> np.ndarray:
        key = (index, size)
        if key not in self._cache:
            self._cache[key] = resize_image(read_image(self.texture_paths[index]), size)
        return self._cache[key]

    def _mask(self, shape: tuple[int, int], fg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for _ in range(self.max_tries):
            m = perlin_mask(shape, rng) * fg
            if m.any():
                return m.astype(np.float32)
        # Very small foregrounds: an ellipse around a foreground pixel, so the mask is never empty.
        ys, xs = np.nonzero(fg)
        i = int(rng.integers(len(ys)))
        m = np.zeros(shape, np.uint8)
        axes = (max(2, shape[1] // 16), max(2, shape[0] // 16))
        cv2.ellipse(m, (int(xs[i]), int(ys[i])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        return (m.astype(bool) & fg).astype(np.float32)

    def _source(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        if self.texture_paths and rng.random() < (0.5 if self.foreground_mode != "texture" else 1.0):
            tex = self._texture(int(rng.integers(len(self.texture_paths))), max(h, w))[:h, :w]
            return random_augment(tex, rng)
        if not self.texture_paths and rng.random() < 0.5:
            return random_augment(procedural_texture((h, w), rng), rng)
        return strip_shuffle(random_augment(img, rng), rng)

    def synthesize(self, img: np.ndarray, rng: np.random.Generator, foreground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Anomalous copy of ``img`` (RGB uint8 at training size) and its float32 {0, 1} mask."""
        fg = foreground if foreground is not None else foreground_for(img, self.foreground_mode)
        fg = fg.astype(bool)
        if not fg.any():
            fg = np.ones(img.shape[:2], bool)
        mask = self._mask(img.shape[:2], fg, rng)
        source = self._source(img, rng).astype(np.float32)
        beta = rng.uniform(*self.beta_range)
        m = mask[..., None]
        base = img.astype(np.float32)
        out = base * (1 - m) + (1 - beta) * source * m + beta * base * m
        out = np.clip(np.round(out), 0, 255).astype(np.uint8)
        # Outside the mask the image is untouched, bit for bit.
        out[mask == 0] = img[mask == 0]
        return out, mask
