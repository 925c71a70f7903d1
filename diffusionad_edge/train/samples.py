"""Training samples: normal images, half of each batch turned into synthetic anomalies.

Sample ``i`` is a pure function of ``(seed, i)``: which image, whether it is anomalous and the
synthetic anomaly all come from a generator seeded with both. Training from step ``s`` therefore
sees exactly the batches an uninterrupted run would have seen, which makes ``--resume`` and
``--seed`` exact, whatever the number of data-loader workers.

With ``crop_size`` the networks train on random patches (they are fully convolutional, so they
still run on the full image): far cheaper per step, which is what makes CPU training feasible.
``anomaly_scale="image"`` makes each synthetic anomaly on the whole image before the patch is cut
(around one of its pixels), so anomalies keep their whole-image sizes instead of shrinking with the
patch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..data.foreground import foreground_for
from ..data.framing import Preprocessing, as_preprocessing
from ..data.preprocess import read_image, to_chw_float
from ..data.synthesis import AnomalySynthesizer
from ..errors import DataError
from .distributed import share_rows


def load_foreground_masks(paths: Sequence[Path], folder: str | Path, size: int | tuple[int, int] | Preprocessing) -> list[np.ndarray]:
    """The user's foreground masks, one per training image: ``<folder>/<stem>.png`` or
    ``<folder>/<stem>_mask.png`` (nonzero = where anomalies may be synthesised), brought to the
    training images' geometry (``size``, or the ROI and input size of a :class:`Preprocessing`)."""
    prep = as_preprocessing(size)
    from ..data.preprocess import read_mask

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"foreground mask folder not found: {folder}")
    masks = []
    for p in paths:
        candidates = [folder / f"{p.stem}.png", folder / f"{p.stem}_mask.png"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(f"no foreground mask for training image {p}: expected {candidates[0]}")
        m = prep.training_mask(read_mask(found))
        if not m.any():
            raise DataError(f"foreground mask is empty: {found}")
        masks.append(m > 0)
    return masks


def load_images(paths: Sequence[Path], size: int | tuple[int, int] | Preprocessing) -> list[np.ndarray]:
    """Read and prepare images once: the training set lives in memory. ``size``: resize to S x S or
    (H, W); a :class:`Preprocessing`: its ROI, then its input size (or full resolution when tiled)."""
    if not paths:
        raise DataError("no training images")
    prep = as_preprocessing(size)
    out = []
    for p in paths:
        try:
            out.append(prep.training_image(read_image(p)))
        except DataError as exc:
            raise DataError(f"{exc}: {p}") from None
    return out


class SyntheticAnomalySamples(Dataset):
    """Index ``i`` -> (image (3,H,W) in [0,1], mask (1,H,W), is_clean); batch layout is fixed:
    the first half of every batch of ``batch_size`` consecutive indices is clean."""

    def __init__(
        self,
        images: list[np.ndarray],
        synthesizer: AnomalySynthesizer,
        batch_size: int,
        seed: int,
        foreground_mode: str = "auto",
        crop_size: int | None = None,
        user_masks: list[np.ndarray] | None = None,
        anomaly_scale: str = "crop",
    ):
        self.images = images
        self.crop_size = crop_size
        self.anomaly_scale = anomaly_scale
        self.synthesizer = synthesizer
        self.batch_size = batch_size
        self.seed = seed
        # The foreground estimate depends on the image only: compute it once per image.
        masks = user_masks or [None] * len(images)
        self.foregrounds = [foreground_for(img, foreground_mode, m) for img, m in zip(images, masks)]

    def __len__(self) -> int:  # effectively unbounded: indices come from StepSampler
        return 2**62

    def image_index(self, index: int) -> int:
        """Which of ``images`` sample ``index`` is made from (the first draw of its generator)."""
        return int(np.random.default_rng([self.seed, index]).integers(len(self.images)))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.integers(len(self.images)))  # = image_index(index); the same generator then crops and synthesises
        img, fg = self.images[k], self.foregrounds[k]
        clean = index % self.batch_size < self.batch_size // 2
        # An anomaly at image scale is made before the patch is cut (around it); otherwise the patch first.
        crop_after = self.crop_size is not None and not clean and self.anomaly_scale == "image"
        if self.crop_size is not None and not crop_after:
            img, fg = self._crop(img, fg, rng)
        if clean:
            mask = np.zeros(img.shape[:2], np.float32)
        else:
            img, mask = self.synthesizer.synthesize(img, rng, foreground=fg)
        if crop_after:
            img, mask = self._crop_around(img, mask, rng)
        return (
            torch.from_numpy(to_chw_float(img)),
            torch.from_numpy(mask.astype(np.float32))[None],
            torch.tensor(clean),
        )


    def _crop(self, img: np.ndarray, fg: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random crop_size patch, preferring one that holds some foreground (a few tries)."""
        c = self.crop_size
        h, w = img.shape[:2]
        for _ in range(5):
            y, x = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
            if fg[y : y + c, x : x + c].any():
                break
        return img[y : y + c, x : x + c], fg[y : y + c, x : x + c]

    def _crop_around(self, img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random crop_size patch holding a random pixel of ``mask`` (never empty: the
        synthesiser's masks are not), anywhere in the patch."""
        c = self.crop_size
        h, w = img.shape[:2]
        ys, xs = np.nonzero(mask)
        i = int(rng.integers(len(ys)))
        y = int(rng.integers(max(0, ys[i] - c + 1), min(ys[i], h - c) + 1))
        x = int(rng.integers(max(0, xs[i] - c + 1), min(xs[i], w - c) + 1))
        return img[y : y + c, x : x + c], mask[y : y + c, x : x + c]


class StepSampler(Sampler[int]):
    """Yields the sample indices of steps ``start .. stop-1`` in order: all ``batch_size`` of each
    step, or, for rank ``rank`` of ``world_size`` processes, that rank's share of them (see
    :func:`.distributed.share_rows`: an equal slice of the clean and of the synthetic half)."""

    def __init__(self, start_step: int, stop_step: int, batch_size: int, world_size: int = 1, rank: int = 0):
        self.start, self.stop, self.batch_size = start_step, stop_step, batch_size
        self.rows = share_rows(batch_size, world_size, rank)

    def __iter__(self) -> Iterator[int]:
        b = self.batch_size
        return (step * b + r for step in range(self.start, self.stop) for r in self.rows)

    def __len__(self) -> int:
        return (self.stop - self.start) * len(self.rows)
