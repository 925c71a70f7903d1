"""Drawing what the detector decided: the part itself, the defect region and a banner with the verdict.

Only the region where the map reaches the pixel threshold is painted: a translucent heat colour
(green just above the threshold, red at 1) and, for regions larger than a speck, an outline along
the region's inner edge. Everywhere
else, below the banner, the frame is left exactly as it was, so the part stays visible.
"""

from __future__ import annotations

import cv2
import numpy as np

from .thresholds import decision, score_text

OK_COLOUR = (60, 170, 40)  # BGR
NG_COLOUR = (40, 40, 220)
NONE_COLOUR = (120, 120, 120)
BANNER_BG = (32, 32, 32)
OUTLINE = (255, 255, 255)


def banner_height(frame_height: int) -> int:
    """Height in pixels of the status banner drawn across the top of a frame of this height."""
    return max(22, frame_height // 12)


def _fit_text(text: str, width: int, height: int, thickness: int) -> float:
    """The largest Hershey font scale at which ``text`` fits into ``width`` x ``height`` pixels."""
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, thickness)
    return max(0.25, min(height * 0.62 / max(th, 1), width / max(tw, 1)))


def draw_banner(img: np.ndarray, is_anomalous: bool | None, score: float, threshold: float | None = None,
                fps: float | None = None) -> None:
    """Draw (in place) the top banner: a coloured OK/NG chip, then score, threshold and FPS in white
    (as much of that as fits legibly: on a narrow frame the score alone)."""
    h, w = img.shape[:2]
    bar = banner_height(h)
    cv2.rectangle(img, (0, 0), (w - 1, bar - 1), BANNER_BG, -1)
    word = decision(is_anomalous) or "--"
    colour = NONE_COLOUR if is_anomalous is None else (NG_COLOUR if is_anomalous else OK_COLOUR)
    thick = 2 if bar >= 30 else 1
    scale = _fit_text(word, w // 3, bar, thick)
    (tw, th), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    chip_w = tw + max(8, bar // 2)
    cv2.rectangle(img, (0, 0), (chip_w, bar - 1), colour, -1)
    cv2.putText(img, word, ((chip_w - tw) // 2, (bar + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    # 3 significant digits: a trained model's thresholds can be 1e-4, which fixed decimals print as 0.000
    thr = f" / thr {score_text(threshold)}" if threshold is not None else ""
    fps_text = f"  {fps:.1f} FPS" if fps else ""
    room = w - chip_w - 10
    sc = score_text(score)
    for text in (f"score {sc}{thr}{fps_text}", f"score {sc}{thr}", f"{sc}{thr}", sc):
        text_scale = min(_fit_text(text, room, bar, 1), scale)
        if text_scale >= 0.33:  # smaller Hershey text is not readable
            break
    (_, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, text_scale, 1)
    cv2.putText(img, text, (chip_w + 5, (bar + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, text_scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_overlay(frame_bgr: np.ndarray, anomaly_map: np.ndarray, defect_mask: np.ndarray, score: float,
                 is_anomalous: bool | None, fps: float | None = None, alpha: float = 0.5,
                 threshold: float | None = None, pixel_threshold: float | None = None) -> np.ndarray:
    """A BGR frame (any size) with the defect region (``defect_mask``: map >= pixel threshold) filled
    with a translucent heat colour (regions large enough to have an inside also outlined), and a banner with the decision, score, image
    ``threshold`` and FPS. Pixels outside the region and below the banner are unchanged.
    ``pixel_threshold`` sets where the colour scale starts (default: the lowest map value in the region)."""
    h, w = frame_bgr.shape[:2]
    out = frame_bgr.copy()
    amap = cv2.resize(np.asarray(anomaly_map, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(np.asarray(defect_mask, np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    if mask.any():
        lo = float(pixel_threshold) if pixel_threshold is not None else float(amap[mask].min())
        level = np.clip((amap - lo) / max(1.0 - lo, 1e-6), 0, 1)  # 0 at the threshold, 1 at a certain defect
        # OpenCV's JET from its green (0.4) to its red (1.0) end: "just above the threshold" to "certain".
        heat = cv2.applyColorMap((255 * (0.4 + 0.6 * level)).astype(np.uint8), cv2.COLORMAP_JET)
        blended = cv2.addWeighted(frame_bgr, 1 - alpha, heat, alpha, 0)
        out[mask] = blended[mask]
        width = max(1, min(h, w) // 150)
        # Outline only regions big enough to have an inside: specks (a weak model's map) keep just the
        # translucent colour instead of turning into white noise.
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        big = np.zeros(n, bool)
        big[1:] = stats[1:, cv2.CC_STAT_AREA] >= max(36, (6 * width) ** 2, h * w // 400)
        outlined = big[labels]
        inner = cv2.erode(outlined.astype(np.uint8), np.ones((2 * width + 1, 2 * width + 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).astype(bool)
        out[outlined & ~inner] = OUTLINE  # the outline lies inside the region: nothing outside it changes
    draw_banner(out, is_anomalous, score, threshold, fps)
    return out
