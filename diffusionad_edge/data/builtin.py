"""A built-in synthetic dataset in MVTec layout, so that everything runs with no download.

Category ``surface``: brushed-metal-like plates (fine horizontal grain, soft lighting gradient,
sensor noise), with three defect types whose masks cover exactly the altered pixels:

* ``scratch``: a thin bright or dark polyline;
* ``spot``: an irregular discoloured blob;
* ``hole``: a dark disc with a lighter rim.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .perlin import perlin_noise

KNOWN_CATEGORIES = ("surface",)
DEFECT_TYPES = ("scratch", "spot", "hole")


def _surface(size: int, rng: np.random.Generator) -> np.ndarray:
    """A normal plate: RGB uint8."""
    grain = rng.normal(0, 1, (size, size + 64)).astype(np.float32)
    grain = cv2.blur(grain, (41, 1))[:, 32 : 32 + size]  # streaks along x
    grain = grain / (grain.std() + 1e-6)
    light = perlin_noise((size, size), (2, 2), rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    gradient = np.cos(angle) * xx + np.sin(angle) * yy
    base = 150 + 10 * grain + 14 * light + 18 * (gradient - 0.5) + rng.normal(0, 2.0, (size, size))
    tint = np.array([1.0, 0.98, 0.93], np.float32)  # a slightly warm metal
    return np.clip(base[..., None] * tint, 0, 255).astype(np.uint8)


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    mask = np.zeros(img.shape[:2], np.uint8)
    n = int(rng.integers(2, 5))
    start = rng.uniform(0.2, 0.8, 2) * size
    direction = rng.uniform(0, 2 * np.pi)
    points = [start]
    for _ in range(n):
        direction += rng.uniform(-0.5, 0.5)
        step = rng.uniform(0.06, 0.15) * size
        points.append(np.clip(points[-1] + step * np.array([np.cos(direction), np.sin(direction)]), 2, size - 3))
    cv2.polylines(mask, [np.round(np.array(points)).astype(np.int32)], False, 1, thickness=int(rng.integers(2, 4)))
    value = rng.choice([235.0, 60.0])
    out = img.astype(np.float32)
    out[mask > 0] = 0.25 * out[mask > 0] + 0.75 * value
    return out.astype(np.uint8), mask


def _spot(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    r = rng.uniform(0.04, 0.08) * size
    c = rng.uniform(0.2, 0.8, 2) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.hypot(xx - c[0], yy - c[1]) / r
    wobble = 0.35 * perlin_noise((size, size), (8, 8), rng)
    mask = (dist + wobble < 1.0).astype(np.uint8)
    colour = np.array(rng.choice([[90, 60, 40], [200, 170, 90], [70, 70, 80]]), np.float32)
    out = img.astype(np.float32)
    out[mask > 0] = 0.35 * out[mask > 0] + 0.65 * colour
    return out.astype(np.uint8), mask


def _hole(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    r = rng.uniform(0.025, 0.05) * size
    c = rng.uniform(0.2, 0.8, 2) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.hypot(xx - c[0], yy - c[1])
    rim = max(1.5, r * 0.3)
    mask = (dist < r + rim).astype(np.uint8)
    out = img.astype(np.float32)
    out[dist < r] = 25 + 10 * (dist[dist < r] / r)[:, None]
    ring = (dist >= r) & (dist < r + rim)
    out[ring] = np.minimum(out[ring] + 55, 255)
    return out.astype(np.uint8), mask


_DEFECTS = {"scratch": _scratch, "spot": _spot, "hole": _hole}


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"cannot write {path}")


def generate_dataset(
    out_dir: str | Path,
    category: str = "surface",
    n_train: int = 120,
    n_test_good: int = 20,
    n_test_per_defect: int = 12,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write a synthetic MVTec-layout category to ``out_dir/category``; deterministic per seed."""
    root = Path(out_dir) / category
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        _write(root / "train" / "good" / f"{i:03d}.png", _surface(size, rng))
    for i in range(n_test_good):
        _write(root / "test" / "good" / f"{i:03d}.png", _surface(size, rng))
    for defect, draw in _DEFECTS.items():
        for i in range(n_test_per_defect):
            img, mask = draw(_surface(size, rng), rng)
            _write(root / "test" / defect / f"{i:03d}.png", img)
            _write(root / "ground_truth" / defect / f"{i:03d}_mask.png", mask * 255)
    return root
