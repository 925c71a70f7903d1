"""Random image augmentations for the anomaly source, strip shuffling and procedural textures."""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .perlin import perlin_noise

Op = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _gamma(img, rng):
    g = rng.uniform(0.5, 2.0)
    return (255.0 * (img / 255.0) ** g).astype(np.uint8)


def _contrast(img, rng):
    c = rng.uniform(0.5, 1.8)
    return np.clip((img.astype(np.float32) - 128) * c + 128, 0, 255).astype(np.uint8)


def _brightness(img, rng):
    return np.clip(img.astype(np.int16) + int(rng.integers(-60, 61)), 0, 255).astype(np.uint8)


def _hue_saturation(img, rng):
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-50, 51))) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def _sharpen(img, rng):
    blur = cv2.GaussianBlur(img, (0, 0), 2.0)
    a = rng.uniform(0.5, 2.0)
    return cv2.addWeighted(img, 1 + a, blur, -a, 0)


def _solarize(img, rng):
    t = int(rng.integers(32, 224))
    return np.where(img >= t, 255 - img, img).astype(np.uint8)


def _posterize(img, rng):
    bits = int(rng.integers(2, 5))
    shift = 8 - bits
    return ((img >> shift) << shift).astype(np.uint8)


def _equalize(img, rng):
    return np.stack([cv2.equalizeHist(np.ascontiguousarray(img[..., c])) for c in range(3)], axis=-1)


def _invert(img, rng):
    return (255 - img).astype(np.uint8)


def _rotate(img, rng):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-90, 90)), 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def _flip(img, rng):
    return np.ascontiguousarray(img[:, ::-1] if rng.random() < 0.5 else img[::-1])


def _affine(img, rng):
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [0, h]])
    dst = src + rng.uniform(-0.15, 0.15, src.shape).astype(np.float32) * np.float32([w, h])
    return cv2.warpAffine(img, cv2.getAffineTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT)


AUGMENTATIONS: tuple[Op, ...] = (
    _gamma, _contrast, _brightness, _hue_saturation, _sharpen, _solarize,
    _posterize, _equalize, _invert, _rotate, _flip, _affine,
)


def random_augment(img: np.ndarray, rng: np.random.Generator, n: int = 3) -> np.ndarray:
    """Apply ``n`` distinct augmentations, chosen at random, in random order."""
    for i in rng.choice(len(AUGMENTATIONS), size=min(n, len(AUGMENTATIONS)), replace=False):
        img = AUGMENTATIONS[int(i)](img, rng)
    return np.ascontiguousarray(img, dtype=np.uint8)


def strip_shuffle(img: np.ndarray, rng: np.random.Generator, n_strips: int | None = None) -> np.ndarray:
    """Cut into horizontal or vertical strips and shuffle them: same statistics, broken structure."""
    n = int(n_strips or rng.integers(4, 17))
    axis = int(rng.integers(0, 2))
    strips = np.array_split(img, n, axis=axis)
    order = rng.permutation(len(strips))
    return np.ascontiguousarray(np.concatenate([strips[i] for i in order], axis=axis))


def procedural_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random coloured texture (two colours mixed by multi-octave Perlin noise) as RGB uint8."""
    h, w = shape
    noise = np.zeros((h, w), np.float32)
    for octave in range(int(rng.integers(2, 5))):
        r = 2 ** (octave + int(rng.integers(0, 3)))
        noise += perlin_noise((h, w), (r, r), rng) / (octave + 1)
    noise = (noise - noise.min()) / (np.ptp(noise) + 1e-6)
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    tex = c1[None, None] * noise[..., None] + c2[None, None] * (1 - noise[..., None])
    return tex.astype(np.uint8)
