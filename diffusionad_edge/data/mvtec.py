"""Reader for datasets in the MVTec-AD folder layout.

One category looks like::

    <category>/train/good/*.png                      normal training images
    <category>/test/good/*.png                       normal test images
    <category>/test/<type>/<id>.png                  defective test images
    <category>/ground_truth/<type>/<id>_mask.png     their masks (255 = defect)

Images may be grayscale, 16-bit or of any size; :mod:`.preprocess` converts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffusionad_edge.errors import ConfigError, DataError

from .preprocess import IMAGE_EXTENSIONS, is_image_file, preprocess, read_image, read_mask, resize_mask

GOOD = "good"
LAYOUT_HINT = (
    "expected an MVTec-style layout: <category>/train/good/*.png, "
    "<category>/test/<type>/*.png, <category>/ground_truth/<type>/<id>_mask.png"
)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; other files are ignored."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _category_candidates(folder: Path) -> list[str]:
    """Names of sub-folders of ``folder`` that look like categories (they have train/good)."""
    try:
        return [d.name for d in _subdirs(folder) if (d / "train" / GOOD).is_dir()]
    except OSError:
        return []


@dataclass(frozen=True)
class TestSample:
    """One test image, its defect type ("good" for normal) and its mask (None for good)."""

    __test__ = False  # not a pytest test class, despite the name

    image_path: Path
    defect_type: str
    mask_path: Path | None

    @property
    def is_anomalous(self) -> bool:
        """True for any defect type other than "good"."""
        return self.defect_type != GOOD


class MVTecCategory:
    """One category of an MVTec-layout dataset, validated on construction.

    ``MVTecCategory(root, "bottle")`` reads ``root/bottle``; ``MVTecCategory(folder)``
    reads ``folder`` itself as the category. A folder without ``train/`` that holds images
    is a *plain folder of good images*: every image is a normal training image and there is no
    test split (``layout == "plain"``). Raises DataError when the folder, the training
    images or a defect mask is missing.

    Attributes: ``path``, ``name``, ``layout`` ("mvtec" or "plain"), ``train_images`` (sorted),
    ``test_samples`` (sorted by path; may be empty), ``defect_types`` (sorted, without "good"),
    ``notes`` (lines worth telling the user once, e.g. that the layout won over loose images).
    """

    def __init__(self, root: str | Path, category: str | None = None):
        root = Path(root)
        self.path = root / category if category else root
        if not self.path.is_dir():
            hint = ""
            if category and root.is_dir():
                found = _category_candidates(root)
                if found:
                    hint = f" (categories in {root}: {', '.join(found)})"
            raise DataError(f"dataset folder not found: {self.path}{hint}")
        self.name = self.path.resolve().name
        self.notes: list[str] = []
        train_dir = self.path / "train" / GOOD
        loose = list_images(self.path)
        if not (self.path / "train").is_dir() and loose:
            # A plain folder of good images: all of them are for training; no test split.
            self.layout = "plain"
            self.train_images: list[Path] = loose
            self.test_samples: list[TestSample] = []
            self.notes.append(f"{self.path} holds images only: all {len(loose)} are normal training images "
                              f"(part held out as usual); no test split, so no test metrics")
            self.defect_types: list[str] = []
            return
        self.layout = "mvtec"
        if loose:
            self.notes.append(f"{self.path} has a train/ folder and {len(loose)} loose images: the MVTec layout is used, "
                              "the loose images are ignored")
        self.train_images = list_images(train_dir)
        if not self.train_images:
            raise DataError(self._no_train_message(train_dir))
        self.test_samples = self._scan_test()
        self.defect_types: list[str] = sorted({s.defect_type for s in self.test_samples if s.is_anomalous})

    @property
    def has_test(self) -> bool:
        """True when the category has at least one test image."""
        return bool(self.test_samples)

    def __repr__(self) -> str:
        return (
            f"MVTecCategory({str(self.path)!r}: {len(self.train_images)} train, "
            f"{len(self.test_samples)} test, defects={self.defect_types})"
        )

    def _no_train_message(self, train_dir: Path) -> str:
        if not (self.path / "train").is_dir() and not _category_candidates(self.path):
            return (f"no images in {self.path}: give a folder of good images (png, jpg, bmp, tif) or an MVTec-layout "
                    f"folder ({LAYOUT_HINT})")
        what = "no training images in" if train_dir.is_dir() else "missing folder"
        msg = f"{what} {train_dir}; {LAYOUT_HINT}"
        # The most common mistake is pointing at the dataset root instead of a category.
        found = _category_candidates(self.path)
        if found:
            others = f" (categories here: {', '.join(found)})" if len(found) > 1 else ""
            msg += f"; did you mean --category {found[0]}{others}?"
        return msg

    def _scan_test(self) -> list[TestSample]:
        test_dir = self.path / "test"
        if not test_dir.is_dir():
            return []
        samples = []
        for type_dir in _subdirs(test_dir):
            defect = type_dir.name
            for image in list_images(type_dir):
                mask = None if defect == GOOD else self._find_mask(defect, image)
                samples.append(TestSample(image, defect, mask))
        return sorted(samples, key=lambda s: s.image_path)

    def _find_mask(self, defect: str, image: Path) -> Path:
        gt_dir = self.path / "ground_truth" / defect
        expected = gt_dir / f"{image.stem}_mask.png"
        # MVTec uses <id>_mask.png; other exports keep the image's extension or drop "_mask".
        candidates = [expected]
        candidates += [gt_dir / f"{image.stem}_mask{ext}" for ext in IMAGE_EXTENSIONS]
        candidates += [gt_dir / f"{image.stem}{ext}" for ext in IMAGE_EXTENSIONS]
        for cand in candidates:
            if cand.is_file():
                return cand
        raise DataError(f"missing mask for test image {image}: expected {expected}")


def read_test_sample(sample: TestSample) -> tuple[np.ndarray, np.ndarray]:
    """One test sample at its own resolution: (RGB uint8 HxWx3, mask float32 HxW, zeros for good
    images). Raises DataError if the mask's size differs from the image's."""
    img = read_image(sample.image_path)
    if sample.mask_path is None:
        return img, np.zeros(img.shape[:2], np.float32)
    mask = read_mask(sample.mask_path)
    if mask.shape != img.shape[:2]:
        raise DataError(
            f"mask size {mask.shape[0]}x{mask.shape[1]} differs from image size "
            f"{img.shape[0]}x{img.shape[1]}: {sample.mask_path} (image: {sample.image_path})"
        )
    return img, mask


def load_test_sample(sample: TestSample, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Read one test sample as (image float32 (3, size, size), mask float32 (size, size)); ``size``
    may be (height, width). The mask is zeros for good images. Raises DataError if the mask's
    original size differs from the image's."""
    img, mask = read_test_sample(sample)
    return preprocess(img, size), resize_mask(mask, size)


def split_train_val(paths: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Seeded, deterministic split of normal images into (train, validation).

    Validation gets round(n * val_fraction) images, at least 1 when val_fraction > 0
    and n >= 2; train is never empty. Both lists keep the input order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"validation fraction must lie in [0, 1), got {val_fraction}")
    paths = list(paths)
    n = len(paths)
    if n == 0:
        raise DataError("no images to split into train and validation")
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, n - 1)  # training needs at least one image
    # A generator of its own, so the split does not depend on any global RNG state.
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    train = [p for i, p in enumerate(paths) if i not in chosen]
    val = [p for i, p in enumerate(paths) if i in chosen]
    return train, val


def load_test_arrays(dataset: MVTecCategory, size: int | tuple[int, int], limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``limit`` (all by default) test images as one (N, 3, size, size) float32 array,
    with their labels (1 = anomalous) and masks (N, size, size)."""
    samples = dataset.test_samples[:limit] if limit else dataset.test_samples
    loaded = [load_test_sample(s, size) for s in samples]
    images = np.stack([img for img, _ in loaded]).astype(np.float32)
    masks = np.stack([mask for _, mask in loaded]).astype(np.float32)
    return images, np.array([s.is_anomalous for s in samples], dtype=np.uint8), masks
