"""2-D gradient (Perlin) noise and the random anomaly masks made from it."""

from __future__ import annotations

import cv2
import numpy as np


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Gradient noise of ``shape`` with ``res`` lattice cells per axis, values roughly in [-1, 1].

    Works for any shape: the noise is generated on a lattice-aligned grid and cropped.
    """
    h, w = shape
    ry, rx = res
    cell_y, cell_x = -(-h // ry), -(-w // rx)  # ceil division: cell size in pixels
    angles = rng.uniform(0, 2 * np.pi, (ry + 1, rx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    # Position of every pixel inside its cell, in [0, 1).
    ys = (np.arange(ry * cell_y) % cell_y) / cell_y
    xs = (np.arange(rx * cell_x) % cell_x) / cell_x
    fy, fx = np.meshgrid(ys, xs, indexing="ij")
    iy = np.arange(ry * cell_y) // cell_y
    ix = np.arange(rx * cell_x) // cell_x
    gy, gx = np.meshgrid(iy, ix, indexing="ij")

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[gy + dy, gx + dx]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    uy, ux = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    noise = (top * (1 - uy) + bottom * uy) * np.sqrt(2)
    return noise[:h, :w].astype(np.float32)


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_exp: int = 0,
    max_exp: int = 5,
    threshold: float = 0.5,
) -> np.ndarray:
    """Binary float32 mask: Perlin noise at scale 2**U{min_exp..max_exp} per axis, randomly rotated
    in [-90, 90] degrees, thresholded."""
    res = (2 ** int(rng.integers(min_exp, max_exp + 1)), 2 ** int(rng.integers(min_exp, max_exp + 1)))
    noise = perlin_noise(shape, res, rng)
    h, w = shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-90, 90)), 1.0)
    noise = cv2.warpAffine(noise, rot, (w, h), borderMode=cv2.BORDER_REFLECT)
    return (noise > threshold).astype(np.float32)
