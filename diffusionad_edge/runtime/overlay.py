"""Drawing what the detector decided: heat map, outline of the defect region, score and verdict."""

from __future__ import annotations

import cv2
import numpy as np

from .thresholds import decision

OK_COLOUR = (60, 200, 60)  # BGR
NG_COLOUR = (40, 40, 230)


def draw_overlay(frame_bgr: np.ndarray, anomaly_map: np.ndarray, defect_mask: np.ndarray, score: float,
                 is_anomalous: bool, fps: float | None = None, alpha: float = 0.45) -> np.ndarray:
    """A BGR frame (any size) with the map blended over it, the thresholded region outlined and a
    status bar (OK/NG, score, FPS)."""
    h, w = frame_bgr.shape[:2]
    heat = cv2.applyColorMap((np.clip(anomaly_map, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    out = cv2.addWeighted(frame_bgr, 1 - alpha, heat, alpha, 0)
    mask = cv2.resize(defect_mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    colour = NG_COLOUR if is_anomalous else OK_COLOUR
    cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, w // 200) + 1)
    bar_h = max(18, h // 14)
    cv2.rectangle(out, (0, 0), (w, bar_h), colour, -1)
    text = f"{decision(is_anomalous)}  score {score:.3f}" + (f"  {fps:.1f} FPS" if fps else "")
    scale = bar_h / 30
    cv2.putText(out, text, (6, int(bar_h * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(scale * 2)), cv2.LINE_AA)
    return out
