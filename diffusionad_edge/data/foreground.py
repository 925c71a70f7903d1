"""Foreground estimation, so synthetic anomalies land on the object and not on the background.

The reference implementation needs masks from an external segmentation model; the toolkit computes
its own: Otsu threshold, polarity from the image border, morphology, hole filling.
"""

from __future__ import annotations

import cv2
import numpy as np

FOREGROUND_MODES = ("auto", "object", "texture")


def estimate_foreground(img_rgb: np.ndarray) -> np.ndarray:
    """Boolean (H, W) estimate of the object: whatever differs from the image border's dominant class."""
    gray = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2GRAY)
    k = max(3, (min(gray.shape) // 64) | 1)
    blurred = cv2.GaussianBlur(gray, (k, k), 0)
    _, binary = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    border = np.concatenate([binary[0], binary[-1], binary[:, 0], binary[:, -1]])
    if border.mean() > 0.5:  # the border (background) came out as 1: flip
        binary = 1 - binary
    ksize = max(3, min(gray.shape) // 32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (ksize, ksize))
    binary = cv2.morphologyEx(binary.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
    # Fill holes: flood the background from the border; what it cannot reach is inside the object.
    h, w = binary.shape
    flood = np.pad(binary, 1).copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 2)
    filled = flood[1:-1, 1:-1] != 2
    # Keep components of at least 1% of the image (drop specks).
    n, labels, stats, _ = cv2.connectedComponentsWithStats(filled.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.01 * h * w
    return keep[labels]


def foreground_for(img_rgb: np.ndarray, mode: str = "auto", user_mask: np.ndarray | None = None) -> np.ndarray:
    """Where anomalies may be placed: the user's mask, the whole image (texture) or the estimate
    (object/auto), falling back to the whole image when the estimate covers <5% or >95%."""
    h, w = img_rgb.shape[:2]
    if user_mask is not None:
        return np.asarray(user_mask).astype(bool)
    if mode == "texture":
        return np.ones((h, w), bool)
    if mode not in FOREGROUND_MODES:
        raise ValueError(f"unknown foreground mode {mode!r}")
    fg = estimate_foreground(img_rgb)
    cover = fg.mean()
    return fg if 0.05 <= cover <= 0.95 else np.ones((h, w), bool)
