"""A built-in synthetic dataset in MVTec layout, so everything runs with no download.

Categories: ``surface`` (brushed metal) and ``grid`` (wire mesh), square, with defect types
``scratch``, ``spot`` and ``hole`` (see :mod:`.defects`); and ``long-part`` (see :mod:`.long_part`):
images 2.5 times as wide as tall (``size`` is the height) with 2-4 px ``scratch`` and ``crack``
defects at full resolution. The dataset is a pure
function of its arguments: the same seed writes the same files.
"""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from diffusionad_edge.errors import ConfigError, DataError

from .defects import DEFECTS
from .long_part import LONG_PART_DEFECTS, long_part
from .materials import MATERIALS, make_material

KNOWN_CATEGORIES = ("surface", "grid")
LONG_PART = "long-part"
#: every category the generator writes
ALL_CATEGORIES = KNOWN_CATEGORIES + (LONG_PART,)
DEFECT_TYPES = tuple(DEFECTS)
MARKER = ".diffusionad_edge_builtin.json"  # proves a folder was written by this generator
_LAYOUT_DIRS = ("train", "test", "ground_truth")


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def _write_png(path: Path, img: np.ndarray) -> None:
    """Write an RGB or gray uint8 image; DataError naming the path on failure."""
    data = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, buf = cv2.imencode(".png", data)
    if not ok:
        raise DataError(f"cannot encode image for {path}")
    try:
        buf.tofile(str(path))  # also works for non-ASCII paths on Windows
    except OSError as exc:
        raise DataError(f"cannot write {path} ({exc.strerror or exc})") from exc


def _prepare(root: Path, params: dict) -> None:
    """Create ``root``; clear a previous generated dataset there, never anything else."""
    if root.exists() and not root.is_dir():
        raise DataError(f"output path exists and is not a folder: {root}")
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise DataError(f"output folder is not empty and was not made by the built-in generator: {root}")
        for name in _LAYOUT_DIRS:
            shutil.rmtree(root / name, ignore_errors=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
        # The marker goes first, so an interrupted run can still be cleared next time.
        (root / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")
    except OSError as exc:
        raise DataError(f"cannot create dataset folder {root} ({exc.strerror or exc})") from exc


def _check_args(category: str, n_train: int, n_test_good: int, n_test_per_defect: int, size: int) -> None:
    if category not in MATERIALS and category != LONG_PART:
        raise ConfigError(f"unknown built-in category {category!r} (known: {', '.join(ALL_CATEGORIES)})")
    if n_train < 1 or n_test_good < 0 or n_test_per_defect < 0:
        raise ConfigError(
            f"need n_train >= 1 and non-negative test counts, got {n_train}, {n_test_good}, {n_test_per_defect}"
        )
    if size < 32:
        raise ConfigError(f"built-in images must be at least 32 pixels, got {size}")


def generate_dataset(
    out_dir: str | Path,
    category: str = "surface",
    n_train: int = 120,
    n_test_good: int = 20,
    n_test_per_defect: int = 12,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write a synthetic MVTec-layout category and return its folder ``out_dir/category``.

    ``size`` is the image side, or for ``long-part`` the height (the width is 2.5 times it).
    Writes ``train/good/000.png ...``, ``test/good/...``, ``test/<type>/000.png`` and
    ``ground_truth/<type>/000_mask.png`` (255 on defect pixels) for the types in
    DEFECT_TYPES. Deterministic for a given seed. A folder previously written by this
    function is replaced; any other non-empty folder raises DataError.
    """
    _check_args(category, n_train, n_test_good, n_test_per_defect, size)
    root = Path(out_dir) / category
    params = dict(category=category, n_train=n_train, n_test_good=n_test_good,
                  n_test_per_defect=n_test_per_defect, size=size, seed=seed)
    _prepare(root, params)
    if category == LONG_PART:
        _generate_long_parts(root, n_train, n_test_good, n_test_per_defect, size, seed)
        return root

    cat_id = KNOWN_CATEGORIES.index(category)
    material = make_material(np.random.default_rng([seed, cat_id]))
    draw_normal = MATERIALS[category]

    def normal(split: int, i: int) -> tuple[np.ndarray, np.random.Generator]:
        # One generator per image, keyed by (split, index): changing a count does
        # not change the other images.
        rng = np.random.default_rng([seed, cat_id, split, i])
        return draw_normal(size, material, rng), rng

    def defective(k: int, draw, i: int) -> tuple[np.ndarray, np.ndarray]:
        return draw(*normal(2 + k, i))

    _write_layout(root, lambda split, i: normal(split, i)[0],
                  {defect: partial(defective, k, draw) for k, (defect, draw) in enumerate(DEFECTS.items())},
                  n_train, n_test_good, n_test_per_defect)
    return root


def _generate_long_parts(root: Path, n_train: int, n_test_good: int, n_test_per_defect: int, height: int, seed: int) -> None:
    cat_id = ALL_CATEGORIES.index(LONG_PART)

    def normal(split: int, i: int):
        rng = np.random.default_rng([seed, cat_id, split, i])
        img, box = long_part(height, rng)
        return img, box, rng

    def defective(k: int, draw, i: int) -> tuple[np.ndarray, np.ndarray]:
        img, box, rng = normal(2 + k, i)
        for _ in range(20):  # a defect that fell mostly onto a hole is drawn again
            bad, mask = draw(img, box, rng)
            if mask.sum() >= 6 * height // 32:
                break
        return bad, mask

    _write_layout(root, lambda split, i: normal(split, i)[0],
                  {defect: partial(defective, k, draw) for k, (defect, draw) in enumerate(LONG_PART_DEFECTS.items())},
                  n_train, n_test_good, n_test_per_defect)


def _write_layout(root: Path, good: Callable[[int, int], np.ndarray],
                  defective: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray]]],
                  n_train: int, n_test_good: int, n_test_per_defect: int) -> None:
    """Write one category's MVTec layout: ``good(split, i)`` images (split 0: train, 1: test) into
    ``train/good`` and ``test/good``; per defect type, ``defective[type](i)`` -> (image, mask) into
    ``test/<type>`` and ``ground_truth/<type>`` (mask 255 on defect pixels)."""
    for split, code, count in (("train", 0, n_train), ("test", 1, n_test_good)):
        out = root / split / "good"
        out.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            _write_png(out / f"{i:03d}.png", _to_uint8(good(code, i)))
    for defect, make in defective.items():
        img_dir, gt_dir = root / "test" / defect, root / "ground_truth" / defect
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n_test_per_defect):
            bad, mask = make(i)
            _write_png(img_dir / f"{i:03d}.png", _to_uint8(bad))
            _write_png(gt_dir / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)


BUILTIN_CATEGORY = "surface"


def builtin_root() -> Path:
    """Where the built-in dataset is cached (``$DAE_CACHE`` or ``~/.cache/diffusionad_edge``)."""
    import os

    base = os.environ.get("DAE_CACHE") or Path.home() / ".cache" / "diffusionad_edge"
    return Path(base) / "builtin"


def open_dataset(data: str | Path | None, category: str | None, log=None):
    """The user's MVTec-layout folder, or the built-in dataset (generated into the cache on first
    use, atomically: an interrupted run leaves no half dataset) when ``data`` is None."""
    from ..files import generate_dir
    from .mvtec import MVTecCategory

    if data is not None:
        dataset = MVTecCategory(data, category)
        if log is not None:
            for note in dataset.notes:
                log(f"note: {note}")
        return dataset
    root = builtin_root()
    name = category or BUILTIN_CATEGORY
    if not (root / name).is_dir():
        if log is not None:
            log(f"generating the built-in dataset in {root} ...")
        generate_dir(root / name, lambda tmp: generate_dataset(tmp, category=name))
    return MVTecCategory(root, name)
