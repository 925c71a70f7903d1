"""Defects drawn onto built-in normal images.

Each function takes a float32 RGB image in [0, 1] and a generator, and returns
(defective image, bool mask). Only pixels inside the mask are changed, and all of
them clearly, so the mask is exactly the defect (no soft edges outside it).
Sizes scale with the image side; each defect covers roughly 0.5-3% of the image.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .perlin import perlin_noise


def _centre(size: int, rng: np.random.Generator, margin: float = 0.2) -> np.ndarray:
    return rng.uniform(margin, 1.0 - margin, 2) * size


def _contrasting(img: np.ndarray, mask: np.ndarray) -> float:
    """A gray level far from the image under ``mask``: bright on dark, dark on bright."""
    return 0.95 if float(img[mask].mean()) < 0.5 else 0.05


def scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin bright or dark polyline."""
    size = img.shape[0]
    n_seg = int(rng.integers(1, 4))
    length = rng.uniform(0.3, 0.5) * size
    heading = rng.uniform(0.0, 2.0 * np.pi)
    points = [_centre(size, rng, 0.25)]
    for _ in range(n_seg):
        heading += rng.uniform(-0.6, 0.6)
        step = length / n_seg * np.array([np.cos(heading), np.sin(heading)])
        points.append(np.clip(points[-1] + step, 1, size - 2))
    thickness = max(1, int(round(size / 128 * rng.uniform(1.5, 2.5))))
    canvas = np.zeros((size, size), np.uint8)
    # LINE_8 (no anti-aliasing): every drawn pixel is fully in the mask.
    cv2.polylines(canvas, [np.round(np.array(points)).astype(np.int32)], False, 1, thickness, cv2.LINE_8)
    mask = canvas > 0
    target = _contrasting(img, mask)
    out = img.copy()
    out[mask] = 0.2 * out[mask] + 0.8 * target
    return out, mask


def spot(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An irregular dark, bright or discoloured blob."""
    size = img.shape[0]
    radius = rng.uniform(0.05, 0.085) * size
    cx, cy = _centre(size, rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy) / max(radius, 2.0)
    # Perlin wobble makes the outline irregular; the centre always stays inside.
    wobble = 0.3 * perlin_noise((size, size), (min(8, size), min(8, size)), rng)
    mask = dist + np.clip(wobble, -0.3, 0.3) < 1.0
    mask[int(cy), int(cx)] = True
    kind = int(rng.integers(0, 3))
    if kind == 0 and float(img[mask].mean()) < 0.35:
        kind = 1  # a dark stain would vanish on a dark material
    if kind == 0:  # dark stain
        colour = np.full(3, 0.08, np.float32)
    elif kind == 1:  # bright deposit
        colour = np.full(3, 0.95, np.float32)
    else:  # discoloration (rust, copper, blue-ish oxide)
        colour = np.array([(0.6, 0.28, 0.1), (0.75, 0.45, 0.2), (0.2, 0.3, 0.6)][int(rng.integers(0, 3))], np.float32)
    out = img.copy()
    out[mask] = 0.3 * out[mask] + 0.7 * colour
    return out, mask


def hole(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark disc with a lighter rim."""
    size = img.shape[0]
    radius = max(2.0, rng.uniform(0.035, 0.06) * size)
    rim = max(1.5, 0.35 * radius)
    cx, cy = _centre(size, rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy)
    inner = dist < radius
    ring = (dist >= radius) & (dist < radius + rim)
    out = img.copy()
    # Inside: nearly black, slightly lighter towards the edge (depth shading).
    out[inner] = (0.03 + 0.08 * (dist[inner] / radius))[:, None]
    out[ring] = np.minimum(out[ring] + 0.3, 1.0)
    return out, inner | ring


#: Defect type name -> drawing function.
DEFECTS: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "scratch": scratch,
    "spot": spot,
    "hole": hole,
}
