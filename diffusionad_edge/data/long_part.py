"""The built-in ``long-part`` category: long, thin machined parts with hairline defects.

A gray part (a bar 2.5 times as wide as the image is tall, brushed along its length, with a row of
drilled holes) on a dark background, slightly shifted from image to image, as a line camera or a
fixed camera sees a long part. Defects are 2-4 pixels wide at full resolution, whatever the image
size: ``scratch`` (a long thin line along the part, slightly darker or brighter) and ``crack`` (a
short jagged dark line across it). Squashed into a 256x256 square they become sub-pixel; that is the
case the ROI, rectangular inputs and tiles exist for. Images are float32 RGB (gray) in [0, 1].
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .perlin import perlin_noise

#: width / height of a long-part image
ASPECT = 2.5


def long_part_shape(height: int) -> tuple[int, int]:
    """(height, width) of a long-part image of this height."""
    return height, int(round(height * ASPECT))


def _part_box(h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the part: about the middle 55% of the height, 90% of the width."""
    dy, dx = rng.uniform(-0.03, 0.03) * h, rng.uniform(-0.01, 0.01) * w
    top, bottom = int(round(0.22 * h + dy)), int(round(0.77 * h + dy))
    left, right = int(round(0.05 * w + dx)), int(round(0.95 * w + dx))
    return top, bottom, left, right


def long_part(height: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A normal long-part image (float32 RGB, height x 2.5 height) and the part's box."""
    h, w = long_part_shape(height)
    top, bottom, left, right = _part_box(h, w, rng)
    # Brushed metal: streaks along the length, smeared grain, a soft lighting gradient.
    streaks = perlin_noise((h, w), (max(2, h // 6), 3), rng)
    grain = cv2.blur(rng.normal(0.0, 1.0, (h, w)).astype(np.float32), (max(3, w // 20), 1))
    grain /= grain.std() + 1e-6
    ramp = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * float(rng.uniform(-0.06, 0.06))
    metal = 0.6 + 0.035 * streaks + 0.012 * grain + ramp
    gray = np.full((h, w), 0.12, np.float32) + rng.normal(0.0, 0.01, (h, w)).astype(np.float32)
    part = np.zeros((h, w), np.uint8)
    cv2.rectangle(part, (left, top), (right - 1, bottom - 1), 1, -1)
    # Drilled holes along the axis, evenly spaced: dark discs with a bright chamfer.
    cy, radius = (top + bottom) // 2, max(3, int(0.07 * h))
    for cx in np.linspace(left + 0.08 * (right - left), right - 0.08 * (right - left), 5):
        cv2.circle(part, (int(cx), cy), radius + max(1, radius // 4), 2, -1)
        cv2.circle(part, (int(cx), cy), radius, 3, -1)
    gray = np.where(part == 1, metal, gray)
    gray = np.where(part == 2, np.minimum(metal + 0.15, 1.0), gray)
    gray = np.where(part == 3, 0.05, gray)
    gray = cv2.GaussianBlur(gray, (3, 3), 0.7)  # optics: edges one pixel soft
    gray = gray + rng.normal(0.0, 0.008, (h, w)).astype(np.float32)
    rgb = np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    return rgb.astype(np.float32), (top, bottom, left, right)


def _on_metal(img: np.ndarray, box: tuple[int, int, int, int], mask: np.ndarray) -> np.ndarray:
    """Keep the defect on the part's plain metal (not over a hole or off the part)."""
    top, bottom, left, right = box
    inside = np.zeros(mask.shape, bool)
    inside[top + 2 : bottom - 2, left + 2 : right - 2] = True
    gray = img[..., 0]
    return mask & inside & (gray > 0.4) & (gray < 0.7)


def _paint(img: np.ndarray, mask: np.ndarray, delta: float) -> np.ndarray:
    out = img.copy()
    out[mask] = np.clip(out[mask] + delta, 0.0, 1.0)
    return out


def scratch(img: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A long, thin (2-4 px) line roughly along the part, slightly darker or brighter."""
    h, w = img.shape[:2]
    top, bottom, left, right = box
    length = rng.uniform(0.12, 0.25) * w
    y0 = rng.uniform(top + 0.15 * (bottom - top), bottom - 0.15 * (bottom - top))
    x0 = rng.uniform(left + 0.05 * w, right - 0.05 * w - length)
    angle = np.deg2rad(rng.uniform(-8.0, 8.0))
    pts = [(x0, y0)]
    for _ in range(3):
        angle += np.deg2rad(rng.uniform(-4.0, 4.0))
        pts.append((pts[-1][0] + length / 3 * np.cos(angle), pts[-1][1] + length / 3 * np.sin(angle)))
    canvas = np.zeros((h, w), np.uint8)
    cv2.polylines(canvas, [np.round(np.array(pts)).astype(np.int32)], False, 1, int(rng.integers(2, 5)), cv2.LINE_8)
    mask = _on_metal(img, box, canvas > 0)
    return _paint(img, mask, float(rng.choice([-1.0, 1.0]) * rng.uniform(0.18, 0.28))), mask


def crack(img: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A short jagged dark line (2-3 px) across the part."""
    h, w = img.shape[:2]
    top, bottom, left, right = box
    x = rng.uniform(left + 0.05 * w, right - 0.05 * w)
    y = top + rng.uniform(0.1, 0.3) * (bottom - top)
    end = top + rng.uniform(0.6, 0.9) * (bottom - top)
    pts = [(x, y)]
    while pts[-1][1] < end:
        pts.append((pts[-1][0] + rng.uniform(-0.01, 0.01) * h * 3, pts[-1][1] + rng.uniform(0.03, 0.07) * h))
    canvas = np.zeros((h, w), np.uint8)
    cv2.polylines(canvas, [np.round(np.array(pts)).astype(np.int32)], False, 1, int(rng.integers(2, 4)), cv2.LINE_8)
    mask = _on_metal(img, box, canvas > 0)
    return _paint(img, mask, -float(rng.uniform(0.25, 0.35))), mask


#: Defect type name -> drawing function (image, part box, rng) -> (defective image, mask).
LONG_PART_DEFECTS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {"scratch": scratch, "crack": crack}
