"""Synthetic defects that look like real ones on parts: the "mixed" anomaly synthesis.

The paper's synthesis (Perlin blobs filled with a foreign texture) teaches a network to spot
texture swaps; real production defects are more often *structural*: a piece of the part displaced
or missing, a thin crack or scratch, a small hole or pit, a region slightly darker, brighter or discoloured. Each
function here takes an RGB uint8 image, a foreground (bool) and a generator and returns
(defective image, float32 {0, 1} mask) or ``None`` when it found no place inside the foreground.
Only pixels inside the mask change. Sizes scale with the image side.
"""

from __future__ import annotations

from typing import Callable, Optional

import cv2
import numpy as np

from .perlin import perlin_mask

Defect = Optional[tuple[np.ndarray, np.ndarray]]


def _finish(img: np.ndarray, changed: np.ndarray, mask: np.ndarray) -> Defect:
    """Keep only the pixels that really changed inside the mask (an invisible defect teaches the
    segmentation net to hallucinate); None if nothing visible is left."""
    diff = np.abs(changed.astype(np.int16) - img.astype(np.int16)).max(axis=2)
    mask = (mask > 0) & (diff >= 4)
    if mask.sum() < 4:
        return None
    out = img.copy()
    out[mask] = changed[mask]
    return out, mask.astype(np.float32)


def is_gray(img_rgb: np.ndarray) -> bool:
    """True when the three channels are (nearly) equal on average: a monochrome camera's frame as RGB,
    on which a coloured defect would be a give-away no real defect has."""
    c = img_rgb.astype(np.float32)
    return float(np.abs(c[..., 0] - c[..., 1]).mean() + np.abs(c[..., 1] - c[..., 2]).mean()) < 2.0


def _random_point(fg: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    ys, xs = np.nonzero(fg)
    i = int(rng.integers(len(ys)))
    return int(xs[i]), int(ys[i])


def _defect_level(
    base: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
    min_local: float, p_dark: float, dark_max: float, brighter: tuple[float, float],
) -> float:
    """The gray level a defect takes: on a surface brighter than ``min_local``, with probability
    ``p_dark``, darker (a groove, a hole: up to ``dark_max`` x the local mean); otherwise brighter by
    ``brighter`` levels (a scratch or a speck on a dark surface)."""
    local = float(base[mask].mean())
    dark = local > min_local and rng.random() < p_dark
    return rng.uniform(0.0, dark_max) * local if dark else min(255.0, local + rng.uniform(*brighter))


def cut_paste(img: np.ndarray, fg: np.ndarray, rng: np.random.Generator) -> Defect:
    """A piece of the part itself, rotated/flipped and slightly re-lit, pasted elsewhere inside the
    foreground in an irregular outline: a displaced or foreign structure of the same material."""
    h, w = img.shape[:2]
    ph = int(rng.uniform(0.06, 0.2) * h) + 2
    pw = int(rng.uniform(0.06, 0.2) * w) + 2
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    patch = img[sy : sy + ph, sx : sx + pw].copy()
    k = int(rng.integers(4))
    patch = np.rot90(patch, k).copy()
    if rng.random() < 0.5:
        patch = patch[:, ::-1].copy()
    gain = rng.uniform(0.75, 1.25)
    patch = np.clip(patch.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    ph, pw = patch.shape[:2]
    cx, cy = _random_point(fg, rng)
    y0, x0 = int(np.clip(cy - ph // 2, 0, h - ph)), int(np.clip(cx - pw // 2, 0, w - pw))
    # An irregular outline inside the rectangle: an ellipse with Perlin wobble.
    outline = np.zeros((ph, pw), np.uint8)
    cv2.ellipse(outline, (pw // 2, ph // 2), (max(1, pw // 2 - 1), max(1, ph // 2 - 1)), 0, 0, 360, 1, -1)
    blob = perlin_mask((ph, pw), rng) if min(ph, pw) >= 8 else np.ones((ph, pw), np.float32)
    shape = (outline > 0) & ((blob > 0) | (rng.random() < 0.5))
    changed = img.copy()
    region = changed[y0 : y0 + ph, x0 : x0 + pw]
    region[shape] = patch[shape]
    mask = np.zeros((h, w), bool)
    mask[y0 : y0 + ph, x0 : x0 + pw] = shape
    return _finish(img, changed, mask & fg)


def crack(img: np.ndarray, fg: np.ndarray, rng: np.random.Generator) -> Defect:
    """A thin crack or scratch: a wandering (sometimes branching) polyline of 1-3 px at 256 px,
    darker (crack, groove) or brighter (scratch on a dark surface) than the material around it."""
    h, w = img.shape[:2]
    size = min(h, w)
    canvas = np.zeros((h, w), np.uint8)
    thickness = max(1, int(round(size / 256 * rng.uniform(1.0, 3.0))))
    n_branches = 1 + int(rng.random() < 0.35)
    for _ in range(n_branches):
        x, y = (float(v) for v in _random_point(fg, rng))
        heading = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.15, 0.6) * size
        n_seg = int(rng.integers(4, 12))
        pts = [(x, y)]
        for _ in range(n_seg):
            heading += rng.normal(0, 0.45)
            x = float(np.clip(x + np.cos(heading) * length / n_seg, 0, w - 1))
            y = float(np.clip(y + np.sin(heading) * length / n_seg, 0, h - 1))
            pts.append((x, y))
        cv2.polylines(canvas, [np.round(np.array(pts)).astype(np.int32)], False, 1, thickness, cv2.LINE_8)
    mask = (canvas > 0) & fg
    if not mask.any():
        return None
    base = img.astype(np.float32)
    target = _defect_level(base, mask, rng, min_local=60, p_dark=0.75, dark_max=0.35, brighter=(50, 120))
    strength = rng.uniform(0.6, 1.0)
    changed = base.copy()
    changed[mask] = (1 - strength) * base[mask] + strength * target
    return _finish(img, np.clip(np.round(changed), 0, 255).astype(np.uint8), mask)


def intensity_shift(img: np.ndarray, fg: np.ndarray, rng: np.random.Generator) -> Defect:
    """A region slightly darker, brighter or discoloured (stain, burn, uneven surface), same
    texture underneath: the subtle defects a texture swap never teaches."""
    h, w = img.shape[:2]
    mask = perlin_mask((h, w), rng) > 0
    mask &= fg
    if not mask.any():
        return None
    base = img.astype(np.float32)
    changed = base.copy()
    if is_gray(img) or rng.random() < 0.6:  # a colour shift on a gray part would be a give-away
        gain = rng.uniform(0.5, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.6)
        changed[mask] = base[mask] * gain
    else:
        shift = rng.normal(0, 1, 3)
        shift = shift / (np.linalg.norm(shift) + 1e-6) * rng.uniform(25, 60)
        changed[mask] = base[mask] + shift
    return _finish(img, np.clip(np.round(changed), 0, 255).astype(np.uint8), mask)


def pit(img: np.ndarray, fg: np.ndarray, rng: np.random.Generator) -> Defect:
    """One to three small holes, pits or spots (blowholes, dents, specks of dirt): compact blobs a
    few pixels across, shaded darker towards the centre (a cavity) or, less often, brighter."""
    h, w = img.shape[:2]
    size = min(h, w)
    canvas = np.zeros((h, w), np.float32)
    for _ in range(1 + int(rng.integers(3))):
        cx, cy = _random_point(fg, rng)
        ax = max(1.5, size * rng.uniform(0.008, 0.045))
        ay = ax * rng.uniform(0.5, 1.5)
        yy, xx = np.ogrid[:h, :w]
        theta = rng.uniform(0, np.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / ax
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ay
        # Depth profile: 1 at the centre, falling to 0 at the rim (a bowl, not a flat disc).
        canvas = np.maximum(canvas, np.clip(1.0 - (u * u + v * v), 0.0, 1.0) ** 0.5)
    mask = (canvas > 0) & fg
    if not mask.any():
        return None
    base = img.astype(np.float32)
    target = _defect_level(base, mask, rng, min_local=40, p_dark=0.8, dark_max=0.4, brighter=(40, 110))
    depth = canvas[..., None] * rng.uniform(0.7, 1.0)
    changed = base * (1 - depth) + target * depth
    return _finish(img, np.clip(np.round(changed), 0, 255).astype(np.uint8), mask)


#: Structural defect name -> function (used by AnomalySynthesizer with kinds="mixed").
STRUCTURAL_DEFECTS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], Defect]] = {
    "cut_paste": cut_paste,
    "crack": crack,
    "intensity_shift": intensity_shift,
    "pit": pit,
}
