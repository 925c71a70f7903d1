"""What the export checks and places thresholds on: the checkpoint's held-out normal images (never
trained on) and synthetic anomalies made from them with the training synthesizer, as network inputs
(through the model's preprocessing) or, for a tiled model, as whole frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.framing import Preprocessing
from ..data.preprocess import read_image, to_chw_float
from ..data.synthesis import AnomalySynthesizer
from ..errors import ConfigError
from .checks import CHECK_IMAGES, THRESHOLD_NORMALS


def held_out_names(payload: dict[str, Any], limit: int = CHECK_IMAGES) -> tuple[Path, list[str]]:
    """The checkpoint's data folder and (at most ``limit``) held-out image names; a checkpoint without
    held-out images gives its first training images (for the parity check only: they were trained on)."""
    data = payload.get("data", {})
    root = Path(data.get("root", ""))
    names = list(data.get("val_images") or [])
    if not names:
        names = list(data.get("train_images") or [])[:CHECK_IMAGES]
    if not names or not root.is_dir():
        raise ConfigError(
            f"the checkpoint's held-out images ({root}) are not available: thresholds and checks need them; "
            "export on the machine (or with the data folder) the model was trained with"
        )
    return root, names[:limit]


def check_set(payload: dict[str, Any], prep: Preprocessing | int | tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out normal images and synthetic anomalies made from them: images, labels, masks. Network
    inputs: each image through the model's preprocessing (its ROI; one random tile of a tiled model)."""
    prep = prep if isinstance(prep, Preprocessing) else Preprocessing.plain(prep)
    root, names = held_out_names(payload)
    view_rng = np.random.default_rng([seed, 4243])
    normals = [prep.view(prep.training_image(read_image(root / n)), view_rng) for n in names]
    train_cfg = payload.get("train_config", {})
    synth = AnomalySynthesizer(foreground_mode=train_cfg.get("foreground", "auto"))
    rng = np.random.default_rng([seed, 4242])
    anomalous = [synth.synthesize(img, rng) for img in normals]
    images = np.stack([to_chw_float(i) for i in normals] + [to_chw_float(a) for a, _ in anomalous])
    labels = np.r_[np.zeros(len(normals)), np.ones(len(anomalous))]
    masks = np.stack([np.zeros(prep.input_hw, np.float32)] * len(normals) + [m for _, m in anomalous])
    return images.astype(np.float32), labels, masks


def extra_normals(payload: dict[str, Any], prep: Preprocessing, seed: int = 0) -> np.ndarray:
    """Network inputs of the held-out normals beyond the check set's (up to ``THRESHOLD_NORMALS`` in
    all): more normals for the thresholds, which they alone place. Empty when there are no more."""
    root, names = held_out_names(payload, THRESHOLD_NORMALS)
    view_rng = np.random.default_rng([seed, 4243])
    views = [prep.view(prep.training_image(read_image(root / n)), view_rng) for n in names]  # same draws as check_set
    extra = views[CHECK_IMAGES:]
    return np.stack([to_chw_float(v) for v in extra]).astype(np.float32) if extra else np.zeros((0, 3, *prep.input_hw), np.float32)


def tiled_frames(payload: dict[str, Any], prep: Preprocessing, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Whole frames for a tiled model's thresholds (its score is a frame's, not a tile's): the held-out
    normals (up to ``THRESHOLD_NORMALS``), and copies of the first ``CHECK_IMAGES`` with a synthetic
    anomaly made on one random tile of their region. Returns the frames, their labels and their masks
    over the region (the ROI, or the whole frame)."""
    root, names = held_out_names(payload, THRESHOLD_NORMALS)
    normals = [read_image(root / n) for n in names]
    train_cfg = payload.get("train_config", {})
    synth = AnomalySynthesizer(foreground_mode=train_cfg.get("foreground", "auto"))
    rng = np.random.default_rng([seed, 4244])
    frames, masks = list(normals), [np.zeros(prep.region(n).shape[:2], np.float32) for n in normals]
    t = prep.tile
    for img in normals[:CHECK_IMAGES]:
        frame = img.copy()
        region = prep.region(frame)  # a view: writing into it writes into the frame
        y, x = int(rng.integers(region.shape[0] - t + 1)), int(rng.integers(region.shape[1] - t + 1))
        bad, m = synth.synthesize(np.ascontiguousarray(region[y : y + t, x : x + t]), rng)
        mask = np.zeros(region.shape[:2], np.float32)
        region[y : y + t, x : x + t], mask[y : y + t, x : x + t] = bad, m
        frames.append(frame)
        masks.append(mask)
    return frames, np.r_[np.zeros(len(normals)), np.ones(len(frames) - len(normals))], masks
