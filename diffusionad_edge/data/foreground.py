"""Where synthetic anomalies may be placed: a foreground estimate made by the toolkit itself.

DiffusionAD restricts synthetic anomalies of object categories to the object. The
reference code takes foreground masks from an external model; here a classical
estimate is used instead: Otsu threshold, polarity from the image border,
morphological clean-up, hole filling and removal of small specks.
"""

from __future__ import annotations

import cv2
import numpy as np

from diffusionad_edge.errors import ConfigError, DataError

FOREGROUND_MODES = ("auto", "object", "texture")

# An estimate outside this coverage is not a believable object: use the whole image.
MIN_COVERAGE, MAX_COVERAGE = 0.05, 0.95
# "auto" additionally treats the image as a texture when Otsu separates the gray levels
# poorly (between-class / total variance; a uniform ramp gives 0.75, clean
# object-on-background images well above 0.85) ...
MIN_SEPARABILITY = 0.8
# ... or when the estimate runs along much of the image border, as a lighting
# gradient across a texture does (a framed object touches little of it).
MAX_BORDER_TOUCH = 0.25


def _odd(n: int) -> int:
    return max(3, int(n) | 1)


def _border(a: np.ndarray, width: int) -> np.ndarray:
    """All pixels within ``width`` of the image edge, flattened."""
    return np.concatenate(
        [a[:width].ravel(), a[-width:].ravel(), a[width:-width, :width].ravel(), a[width:-width, -width:].ravel()]
    )


def _fill_holes(fg: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the image border."""
    # Pad with background so all outside background is one connected component.
    bg = np.pad(~fg, 1, constant_values=True).astype(np.uint8)
    _, labels = cv2.connectedComponents(bg, connectivity=4)
    outside = labels[0, 0]
    return (labels[1:-1, 1:-1] != outside) | fg


def _keep_large(fg: np.ndarray, min_fraction: float = 0.01) -> np.ndarray:
    """Drop connected components smaller than ``min_fraction`` of the image (keep the largest)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return fg
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, bool)
    keep[1:] = areas >= min_fraction * fg.size
    keep[1 + int(np.argmax(areas))] = True
    return keep[labels]


def _otsu(img_rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """Blurred Otsu split with the border class as background; returns (fg, separability)."""
    if img_rgb.ndim != 3 or img_rgb.shape[2] != 3 or img_rgb.dtype != np.uint8:
        raise DataError(f"expected an RGB uint8 HxWx3 image, got {img_rgb.dtype} {img_rgb.shape}")
    gray = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    # Blur first so that fine texture and sensor noise do not fragment the split.
    gray = cv2.GaussianBlur(gray, (_odd(min(h, w) // 50), _odd(min(h, w) // 50)), 0)
    t, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    bright = gray > t
    total_var = float(gray.var())
    if total_var < 1e-6 or bright.all() or not bright.any():
        return np.zeros((h, w), bool), 0.0
    g = gray.astype(np.float64)
    p = bright.mean()
    between = p * (1 - p) * (g[bright].mean() - g[~bright].mean()) ** 2
    # Whatever dominates the border is background, whichever its brightness.
    width = max(1, min(h, w) // 50)
    fg = ~bright if _border(bright, width).mean() > 0.5 else bright
    return fg, between / total_var


def estimate_foreground(img_rgb: np.ndarray) -> np.ndarray:
    """Estimate the object in an RGB uint8 image as a bool (H, W) mask.

    Blur, Otsu threshold on gray, background = the class dominating the image
    border, morphological close + open, hole filling, keep large components.
    May return an (almost) empty or full mask; see :func:`foreground_for`.
    """
    return _estimate(img_rgb)[0]


def _estimate(img_rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """(cleaned foreground estimate, Otsu separability)."""
    raw, separability = _otsu(img_rgb)
    return _clean(raw), separability


def _clean(fg: np.ndarray) -> np.ndarray:
    h, w = fg.shape
    k = _odd(min(h, w) // 40)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    closed = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_CLOSE, kernel)  # bridge small gaps
    opened = cv2.morphologyEx(closed, cv2.MORPH_OPEN, kernel)  # remove isolated specks
    return _keep_large(_fill_holes(opened.astype(bool)))


def _looks_like_object(fg: np.ndarray, separability: float) -> bool:
    """Heuristic used by "auto": is the estimate a distinct object on a background?"""
    if separability < MIN_SEPARABILITY:
        return False
    width = max(1, min(fg.shape) // 50)
    return _border(fg, width).mean() <= MAX_BORDER_TOUCH


def foreground_for(img_rgb: np.ndarray, mode: str, user_mask: np.ndarray | None = None) -> np.ndarray:
    """Bool (H, W) mask of where anomalies may be synthesised.

    * a ``user_mask`` (any dtype, nonzero = foreground, same H x W) always wins;
    * ``"texture"``: the whole image;
    * ``"object"``: :func:`estimate_foreground`, or the whole image when the estimate
      covers less than 5% or more than 95% of it;
    * ``"auto"``: like "object", but also the whole image when the image does not
      look like an object on a background (weak Otsu separation, or an estimate that
      runs along the image border), so textures are not cut in half by lighting.
    """
    h, w = img_rgb.shape[:2]
    if user_mask is not None:
        user = np.asarray(user_mask)
        if user.shape[:2] != (h, w):
            raise DataError(f"foreground mask shape {user.shape[:2]} differs from image shape {(h, w)}")
        return (user[..., 0] if user.ndim == 3 else user) > 0
    if mode not in FOREGROUND_MODES:
        raise ConfigError(f"unknown foreground mode {mode!r} (expected one of {', '.join(FOREGROUND_MODES)})")
    whole = np.ones((h, w), bool)
    if mode == "texture":
        return whole
    fg, separability = _estimate(img_rgb)
    if mode == "auto" and not _looks_like_object(fg, separability):
        return whole
    return fg if MIN_COVERAGE <= fg.mean() <= MAX_COVERAGE else whole
