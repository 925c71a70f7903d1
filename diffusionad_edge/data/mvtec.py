"""Reader for MVTec-AD-layout folders.

```
<category>/train/good/*.png
<category>/test/good/*.png
<category>/test/<defect>/<id>.png
<category>/ground_truth/<defect>/<id>_mask.png
```
Images may be grayscale and of any size; they are converted and resized by :mod:`.preprocess`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .preprocess import IMAGE_EXTENSIONS, preprocess, read_image, read_mask

LAYOUT_HINT = "expected train/good/, test/<type>/ and ground_truth/<type>/<id>_mask.png"


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; other files are ignored."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class TestSample:
    image_path: Path
    defect_type: str
    mask_path: Path | None  # None for good images

    @property
    def is_anomalous(self) -> bool:
        return self.defect_type != "good"


class MVTecCategory:
    """One category of an MVTec-layout dataset; validates the layout on construction."""

    def __init__(self, root: str | Path, category: str | None = None):
        root = Path(root)
        self.path = root / category if category else root
        if not self.path.is_dir():
            raise DataError(f"dataset folder not found: {self.path}")
        train_dir = self.path / "train" / "good"
        if not train_dir.is_dir() or not list_images(train_dir):
            hint = ""
            subdirs = sorted(d.name for d in self.path.iterdir() if d.is_dir() and (d / "train" / "good").is_dir())
            if subdirs:
                hint = f"; did you mean --category {subdirs[0]}? (categories here: {', '.join(subdirs)})"
            raise DataError(f"no images in {train_dir} ({LAYOUT_HINT}){hint}")
        self.name = self.path.name
        self.train_images = list_images(train_dir)
        self.test_samples = self._scan_test()
        self.defect_types = sorted({s.defect_type for s in self.test_samples} - {"good"})

    @property
    def has_test(self) -> bool:
        return bool(self.test_samples)

    def _scan_test(self) -> list[TestSample]:
        test_dir = self.path / "test"
        if not test_dir.is_dir():
            return []
        samples = []
        for type_dir in sorted(d for d in test_dir.iterdir() if d.is_dir()):
            for img in list_images(type_dir):
                mask = None if type_dir.name == "good" else self._find_mask(type_dir.name, img)
                samples.append(TestSample(img, type_dir.name, mask))
        return samples

    def _find_mask(self, defect: str, image: Path) -> Path:
        gt = self.path / "ground_truth" / defect
        candidates = [gt / f"{image.stem}_mask.png", gt / f"{image.stem}.png"]
        candidates += [gt / f"{image.stem}_mask{ext}" for ext in IMAGE_EXTENSIONS]
        for c in candidates:
            if c.is_file():
                return c
        raise DataError(f"no mask for test image {image}: expected {candidates[0]}")


def load_test_sample(sample: TestSample, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed image (3, size, size) and mask (size, size) in {0, 1} (zeros for good images)."""
    img = read_image(sample.image_path)
    if sample.mask_path is None:
        return preprocess(img, size), np.zeros((size, size), np.float32)
    mask = read_mask(sample.mask_path, size, expected_hw=img.shape[:2])
    return preprocess(img, size), mask


def split_train_val(paths: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Seeded split of normal images into (train, held-out validation); train is never empty."""
    paths = list(paths)
    if val_fraction <= 0 or len(paths) < 2:
        return paths, []
    n_val = min(max(1, round(len(paths) * val_fraction)), len(paths) - 1)
    order = np.random.default_rng(seed).permutation(len(paths))
    val_idx = set(order[:n_val].tolist())
    train = [p for i, p in enumerate(paths) if i not in val_idx]
    val = [p for i, p in enumerate(paths) if i in val_idx]
    return train, val
