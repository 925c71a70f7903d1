"""Writing checkpoint files, atomically. Reading them lives in :mod:`diffusionad_edge.models.checkpoint_io`
(deployment needs it without the trainer); ``read_checkpoint`` and ``load_model`` are re-exported here
so old imports keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..files import atomic_write
from ..models.checkpoint_io import FORMAT, FORMAT_VERSION, load_model, read_checkpoint
from ..models.detector import DiffusionAD

__all__ = ["FORMAT", "FORMAT_VERSION", "atomic_write", "load_model", "read_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | Path, model: DiffusionAD, **extra: Any) -> None:
    """Save model weights, config and any extra plain values (optimiser states, step, ...)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "toolkit_version": __version__,
        "torch_version": str(torch.__version__),
        "model_config": model.config.to_json(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
