"""A small generated video shared by the runtime tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_plate_video(path: Path, n: int) -> Path:
    """``n`` 96x80 frames of a gray plate, a dark hole drawn on every third frame (mp4v)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 80))
    for i in range(n):
        f = np.full((80, 96, 3), 150, np.uint8)
        if i % 3 == 0:
            cv2.circle(f, (40, 40), 8, (20, 20, 20), -1)
        w.write(f)
    w.release()
    return path


def write_noise_video(path: Path, n: int, size: int = 64, seed: int = 0) -> Path:
    """``n`` frames of seeded random noise, ``size`` x ``size`` (MJPG; for tests of paths, not of detection)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    rng = np.random.default_rng(seed)
    for _ in range(n):
        w.write(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    w.release()
    return path
