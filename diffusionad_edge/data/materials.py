"""Procedural "normal" images for the built-in dataset.

A material is a family of images: its parameters (base level, tint, structure
scale) come from one generator per category, so every image of a category shows
the same material; each image then varies by its own random phase, lighting
gradient and sensor noise. Images are float32 RGB HxWx3 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .perlin import perlin_noise


@dataclass(frozen=True)
class Material:
    """Parameters shared by all images of one built-in category."""

    level: float  # mean gray level
    tint: tuple[float, float, float]  # per-channel gain (RGB)
    period: float  # structure scale, in fractions of the image side
    contrast: float  # strength of the structure


def make_material(rng: np.random.Generator) -> Material:
    """Draw the parameters of a material."""
    tint = 1.0 + rng.uniform(-0.05, 0.05, 3)
    return Material(
        level=float(rng.uniform(0.45, 0.58)),
        tint=(float(tint[0]), float(tint[1]), float(tint[2])),
        period=float(rng.uniform(0.055, 0.075)),
        contrast=float(rng.uniform(0.9, 1.1)),
    )


def _lighting(size: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A soft linear lighting gradient in a random direction, zero mean."""
    ramp = (np.arange(size, dtype=np.float32) / max(size - 1, 1)) - 0.5
    angle = rng.uniform(0.0, 2.0 * np.pi)
    return amplitude * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])


def _finish(gray: np.ndarray, mat: Material, rng: np.random.Generator, noise: float = 0.012) -> np.ndarray:
    """Add lighting and sensor noise, apply the tint: float32 RGB in [0, 1]."""
    size = gray.shape[0]
    gray = gray + _lighting(size, rng, float(rng.uniform(0.03, 0.08)))
    gray = gray + rng.normal(0.0, noise, gray.shape).astype(np.float32)
    rgb = gray[..., None] * np.asarray(mat.tint, np.float32)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def brushed_surface(size: int, mat: Material, rng: np.random.Generator) -> np.ndarray:
    """Brushed metal: long horizontal streaks, fine grain and faint mottling."""
    rows = max(2, size // 4)  # many lattice rows, few columns: streaks along x
    streaks = perlin_noise((size, size), (rows, 2), rng) + 0.5 * perlin_noise((size, size), (2 * rows, 4), rng)
    # Grain: white noise smeared along x.
    white = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    grain = cv2.blur(white, (max(3, size // 8), 1), borderType=cv2.BORDER_REFLECT)
    grain = grain / (grain.std() + 1e-6)
    mottle = perlin_noise((size, size), (2, 2), rng)
    gray = mat.level + mat.contrast * (0.05 * streaks + 0.02 * grain + 0.03 * mottle)
    return _finish(gray.astype(np.float32), mat, rng)


def wire_grid(size: int, mat: Material, rng: np.random.Generator) -> np.ndarray:
    """A metal mesh: bright wires on a dark background, random phase and slight tilt."""
    period = max(6.0, mat.period * size * 1.4)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.deg2rad(rng.uniform(-3.0, 3.0))
    u = xx * np.cos(angle) + yy * np.sin(angle) + rng.uniform(0.0, period)
    v = -xx * np.sin(angle) + yy * np.cos(angle) + rng.uniform(0.0, period)
    # Distance to the nearest wire, in periods; wires are ~25% of a period wide.
    du = np.abs((u / period) % 1.0 - 0.5)
    dv = np.abs((v / period) % 1.0 - 0.5)
    wires = np.clip((np.maximum(du, dv) - 0.37) / 0.05, 0.0, 1.0)
    shade = perlin_noise((size, size), (4, 4), rng)
    gray = 0.18 + mat.contrast * wires * (0.5 + 0.08 * shade) + 0.02 * shade
    return _finish(gray.astype(np.float32), mat, rng)


#: Built-in category name -> normal image generator (size, material, rng) -> float RGB.
MATERIALS: dict[str, Callable[[int, Material, np.random.Generator], np.ndarray]] = {
    "surface": brushed_surface,
    "grid": wire_grid,
}
