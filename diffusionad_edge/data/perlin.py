"""2-D gradient (Perlin) noise and the random blob masks made from it."""

from __future__ import annotations

import cv2
import numpy as np


def _smootherstep(t: np.ndarray) -> np.ndarray:
    """6t^5 - 15t^4 + 10t^3: zero first and second derivative at cell borders."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Gradient noise of ``shape`` (H, W) with ``res`` (rows, cols) lattice periods.

    Returns float32 roughly in [-1, 1]. Any shape works: the lattice is laid out
    on a grid whose size is a multiple of ``res`` and the result is cropped.
    """
    h, w = int(shape[0]), int(shape[1])
    ry, rx = max(1, int(res[0])), max(1, int(res[1]))
    # Cell size in pixels, rounded up so the padded grid covers the whole shape.
    cy, cx = -(-h // ry), -(-w // rx)
    # One random unit gradient per lattice corner.
    theta = rng.uniform(0.0, 2.0 * np.pi, size=(ry + 1, rx + 1))
    grad_y, grad_x = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)

    # Only the rows/columns we keep are computed: cropping is done up front.
    iy, ix = np.arange(h) // cy, np.arange(w) // cx  # cell index per row / column
    fy = ((np.arange(h) % cy) / cy).astype(np.float32)[:, None]  # position inside the cell
    fx = ((np.arange(w) % cx) / cx).astype(np.float32)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        # Two 1-D takes are much faster than one 2-D fancy index.
        gy = grad_y.take(iy + dy, axis=0).take(ix + dx, axis=1)
        gx = grad_x.take(iy + dy, axis=0).take(ix + dx, axis=1)
        return gy * (fy - dy) + gx * (fx - dx)

    uy, ux = _smootherstep(fy), _smootherstep(fx)
    n00, n01, n10, n11 = corner(0, 0), corner(0, 1), corner(1, 0), corner(1, 1)
    top = n00 + ux * (n01 - n00)
    bottom = n10 + ux * (n11 - n10)
    # 2-D Perlin noise with unit gradients lies in [-sqrt(1/2), sqrt(1/2)].
    return ((top + uy * (bottom - top)) * np.float32(np.sqrt(2.0))).astype(np.float32)


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_exp: int = 0,
    max_exp: int = 5,
    threshold: float = 0.5,
) -> np.ndarray:
    """Random blob mask: float32 (H, W) in {0, 1}.

    The noise scale is 2**k per axis with k drawn independently in [min_exp, max_exp]
    (inclusive); the noise is rotated by a random angle in [-90, 90] degrees and
    thresholded. The mask may be empty; callers retry.
    """
    h, w = int(shape[0]), int(shape[1])
    res_y = min(2 ** int(rng.integers(min_exp, max_exp + 1)), h)
    res_x = min(2 ** int(rng.integers(min_exp, max_exp + 1)), w)
    noise = perlin_noise((h, w), (res_y, res_x), rng)
    angle = float(rng.uniform(-90.0, 90.0))
    rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    # Reflecting keeps blob statistics near the corners instead of padding with zeros.
    noise = cv2.warpAffine(noise, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return (noise > threshold).astype(np.float32)
