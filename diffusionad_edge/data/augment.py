"""Image operations that turn a texture or the image itself into an anomaly source.

All operations take and return RGB uint8 HxWx3 images of unchanged shape and draw
their parameters from the given ``np.random.Generator`` only, so a seeded
generator reproduces them exactly.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .perlin import perlin_noise

Op = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _lut(img: np.ndarray, table: np.ndarray) -> np.ndarray:
    return cv2.LUT(img, np.clip(np.round(table), 0, 255).astype(np.uint8))


def gamma_contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma curve with gamma in [0.5, 2.0]."""
    x = np.arange(256, dtype=np.float64) / 255.0
    return _lut(img, 255.0 * x ** rng.uniform(0.5, 2.0))


def linear_contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stretch or squeeze gray levels around mid-gray by a factor in [0.5, 1.8]."""
    x = np.arange(256, dtype=np.float64)
    return _lut(img, (x - 128.0) * rng.uniform(0.5, 1.8) + 128.0)


def brightness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiply by [0.8, 1.2] and add [-30, 30]."""
    x = np.arange(256, dtype=np.float64)
    return _lut(img, x * rng.uniform(0.8, 1.2) + rng.uniform(-30.0, 30.0))


def hue_saturation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate hue by up to +-50 degrees (OpenCV units: +-25) and scale saturation."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-25, 26))) % 180  # OpenCV hue is 0..179
    hsv[..., 1] = np.clip(np.round(hsv[..., 1] * rng.uniform(0.5, 1.5)), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def sharpen(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unsharp masking with a random amount."""
    amount = rng.uniform(0.5, 2.0)
    blurred = cv2.GaussianBlur(img, (0, 0), rng.uniform(1.0, 3.0))
    return cv2.addWeighted(img, 1.0 + amount, blurred, -amount, 0.0)


def solarize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Invert every value above a random threshold."""
    x = np.arange(256, dtype=np.float64)
    return _lut(img, np.where(x >= rng.integers(32, 224), 255.0 - x, x))


def posterize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep only 2..5 most significant bits."""
    drop = 8 - int(rng.integers(2, 6))
    return (img >> drop) << drop


def equalize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Histogram equalisation of each channel."""
    return np.dstack([cv2.equalizeHist(np.ascontiguousarray(img[..., c])) for c in range(3)])


def invert(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photographic negative."""
    return 255 - img


def _warp(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def rotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate by [-90, 90] degrees about the centre (reflected border)."""
    h, w = img.shape[:2]
    return _warp(img, cv2.getRotationMatrix2D((w / 2.0, h / 2.0), rng.uniform(-90.0, 90.0), 1.0))


def flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal or vertical mirror."""
    return np.ascontiguousarray(img[:, ::-1] if rng.random() < 0.5 else img[::-1])


def affine(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random scale, shear and translation (reflected border)."""
    h, w = img.shape[:2]
    scale = rng.uniform(0.7, 1.3)
    shear = np.tan(np.deg2rad(rng.uniform(-20.0, 20.0)))
    tx, ty = rng.uniform(-0.2, 0.2) * w, rng.uniform(-0.2, 0.2) * h
    # Scale and shear about the image centre, then translate.
    a = np.array([[scale, shear * scale], [0.0, scale]])
    centre = np.array([w / 2.0, h / 2.0])
    offset = centre - a @ centre + np.array([tx, ty])
    return _warp(img, np.hstack([a, offset[:, None]]).astype(np.float64))


AUGMENTATIONS: tuple[Op, ...] = (
    gamma_contrast,
    linear_contrast,
    brightness,
    hue_saturation,
    sharpen,
    solarize,
    posterize,
    equalize,
    invert,
    rotate,
    flip,
    affine,
)


def random_augment(img_rgb: np.ndarray, rng: np.random.Generator, n: int = 3) -> np.ndarray:
    """Apply ``n`` distinct operations from AUGMENTATIONS, chosen and ordered at random."""
    img = np.ascontiguousarray(img_rgb, dtype=np.uint8)
    picks = rng.choice(len(AUGMENTATIONS), size=min(max(0, int(n)), len(AUGMENTATIONS)), replace=False)
    for i in picks:
        img = np.ascontiguousarray(AUGMENTATIONS[int(i)](img, rng), dtype=np.uint8)
    return img


def strip_shuffle(img: np.ndarray, rng: np.random.Generator, n_strips: int | None = None) -> np.ndarray:
    """Cut into horizontal or vertical strips and put them back in random order.

    Keeps the local appearance of the image but breaks its structure; with
    ``n_strips`` None a count in [2, 8] is drawn.
    """
    axis = int(rng.integers(0, 2))
    n = int(n_strips) if n_strips is not None else int(rng.integers(2, 9))
    n = max(1, min(n, img.shape[axis]))
    strips = np.array_split(img, n, axis=axis)
    order = rng.permutation(n)
    if n > 1 and np.array_equal(order, np.arange(n)):
        order = np.roll(order, 1)  # an identity shuffle would not change anything
    return np.ascontiguousarray(np.concatenate([strips[i] for i in order], axis=axis))


def _fractal(shape: tuple[int, int], rng: np.random.Generator, base: int, octaves: int) -> np.ndarray:
    """Sum of Perlin octaves, normalised to [0, 1]."""
    h, w = shape
    acc = np.zeros((h, w), np.float32)
    for o in range(octaves):
        r = base * 2**o
        acc += perlin_noise(shape, (min(r, h), min(r, w)), rng) * (0.5**o)
    lo, hi = float(acc.min()), float(acc.max())
    return (acc - lo) / (hi - lo + 1e-6)


def procedural_texture(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random coloured texture, RGB uint8 of ``shape[:2]``.

    Either a mixture of two to four random colours weighted by fractal Perlin noise,
    or noise-distorted stripes; used as anomaly source when no texture folder is given.
    """
    h, w = int(shape[0]), int(shape[1])
    field = _fractal((h, w), rng, base=2 ** int(rng.integers(1, 4)), octaves=int(rng.integers(2, 5)))
    if rng.random() < 0.5:
        # Mixture: partition the noise range into bands, one colour per band, soft edges.
        k = int(rng.integers(2, 5))
        colours = rng.uniform(0, 255, size=(k, 3)).astype(np.float32)
        pos = field * (k - 1)
        lo = np.floor(pos).astype(np.int64).clip(0, k - 2)
        t = (pos - lo)[..., None]
        tex = colours[lo] * (1 - t) + colours[np.minimum(lo + 1, k - 1)] * t
    else:
        # Stripes of random frequency and direction, bent by the noise field.
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4.0, max(5.0, min(h, w) / 4.0))
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period + 2.0 * field
        t = (0.5 + 0.5 * np.sin(2 * np.pi * phase))[..., None]
        c1, c2 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        tex = c1 * (1 - t) + c2 * t
    return np.clip(np.round(tex), 0, 255).astype(np.uint8)
