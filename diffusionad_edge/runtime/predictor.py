"""Open a predictor from an export bundle (any backend) or straight from a checkpoint (PyTorch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DaeError
from ..export.bundle import Artifact, load_artifact


def open_predictor(path: str | Path, backend: str | None = None, device: str = "cpu") -> Artifact:
    """A bundle folder -> its backend's runner; a checkpoint file -> the PyTorch model, with the
    image threshold taken from the checkpoint's held-out validation scores."""
    path = Path(path)
    if path.is_dir():
        return load_artifact(path, backend=backend)
    if not path.exists():
        raise DaeError(f"no bundle folder or checkpoint at {path}")
    if backend not in (None, "pytorch"):
        raise DaeError(f"--backend {backend} needs an export bundle; {path} is a checkpoint (PyTorch)")
    from ..export.thresholds import f1_optimal_threshold
    from ..train.checkpoint import load_model
    from .runners import TorchRunner

    model, payload = load_model(path)
    val = payload.get("validation") or {}
    normal, synthetic = val.get("normal_scores") or [], val.get("synthetic_scores") or []
    thresholds = None
    if normal and synthetic:
        labels = np.r_[np.zeros(len(normal)), np.ones(len(synthetic))]
        scores = np.r_[normal, synthetic]
        thr = f1_optimal_threshold(labels, scores)
        thresholds = {"image": thr, "pixel": 0.5,
                      "normalisation": {"threshold": thr, "min": float(scores.min()), "max": float(scores.max())}}
    meta = {"backend": "pytorch", "precision": "fp32", "input": {"size": model.config.image_size, "batch": 1},
            "thresholds": thresholds, "preset": model.config.preset}
    return Artifact(path, meta, TorchRunner(model, device))
