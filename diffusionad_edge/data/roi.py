"""Region of interest: the rectangle of a camera frame the model looks at.

A ROI is ``x,y,w,h`` in pixels of the full frame (x to the right, y down, from the top-left corner).
The frame is cropped to it before anything else (resizing or tiling), and the anomaly map, computed
for the crop, is placed back into a map of the whole frame (:meth:`Roi.place`), zero outside the
rectangle. The same :class:`Roi` is stored in a checkpoint's and a bundle's preprocessing, so
training, evaluation, the export checks and the device crop alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class Roi:
    """A crop rectangle: top-left corner (x, y), width w and height h, in frame pixels."""

    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        for name in ("x", "y", "w", "h"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ConfigError(f"ROI {name} must be an integer (got {v!r})")
        if self.x < 0 or self.y < 0 or self.w < 1 or self.h < 1:
            raise ConfigError(f"ROI {self} needs x, y >= 0 and w, h >= 1")

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"

    def check(self, frame_hw: tuple[int, int], what: str = "frame") -> None:
        """:class:`DataError` (one line) unless the rectangle lies inside a frame of (height, width)."""
        fh, fw = int(frame_hw[0]), int(frame_hw[1])
        if self.x + self.w > fw or self.y + self.h > fh:
            raise DataError(f"ROI x,y,w,h = {self} does not fit the {fw}x{fh} (WxH) {what} (it reaches "
                            f"x={self.x + self.w}, y={self.y + self.h})")

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The ROI of an image (H, W[, C]) as a view; :class:`DataError` when it does not fit."""
        self.check(image.shape[:2], "image")
        return image[self.y : self.y + self.h, self.x : self.x + self.w]

    def place(self, roi_map: np.ndarray, frame_hw: tuple[int, int], fill: float = 0.0) -> np.ndarray:
        """A map of the ROI (h, w) placed into a map of the whole frame (fill outside the ROI)."""
        self.check(frame_hw)
        if roi_map.shape[:2] != (self.h, self.w):
            raise ValueError(f"map of shape {roi_map.shape[:2]} does not match the ROI's {self.h}x{self.w}")
        out = np.full((int(frame_hw[0]), int(frame_hw[1])) + roi_map.shape[2:], fill, dtype=roi_map.dtype)
        out[self.y : self.y + self.h, self.x : self.x + self.w] = roi_map
        return out

    def to_dict(self) -> dict[str, int]:
        return {"x": int(self.x), "y": int(self.y), "w": int(self.w), "h": int(self.h)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Roi":
        try:
            return cls(*(int(data[k]) for k in ("x", "y", "w", "h")))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"a ROI must be an object with integers x, y, w, h (found {data!r})") from None


def parse_roi(text: str) -> Roi:
    """``"x,y,w,h"`` (pixels of the full frame) -> :class:`Roi`; :class:`ConfigError` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ConfigError(f"--roi must be x,y,w,h in pixels, e.g. 100,40,1200,480 (got {text!r})")
    return Roi(*values)
