"""Reading checkpoints: a ``torch.save`` archive loaded without executing code.

A checkpoint holds tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``: no unrestricted pickle, nothing in the file can run code. The
model config is stored as JSON text and rebuilt with :meth:`ModelConfig.from_json`. The ``"model"``
key holds the deployable weights. Writing checkpoints belongs to training
(:func:`diffusionad_edge.train.checkpoint.save_checkpoint`); reading them is all deployment needs.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..errors import CheckpointError, ConfigError
from .detector import DiffusionAD

FORMAT = "diffusionad_edge.checkpoint"
FORMAT_VERSION = 1


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint's contents (weights on CPU) with the safe, weights-only unpickler."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # PyTorch's message advises weights_only=False: wrong for a corrupt or malicious file. Keep its reason only.
        raise CheckpointError(f"not a readable checkpoint (corrupt, truncated or unsafe; nothing in it was run): "
                              f"{path}: {_unpickling_reason(exc)}") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError,
            # arbitrary bytes read as a legacy pickle fail inside the unpickler itself
            KeyError, IndexError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"not a readable checkpoint (corrupt, truncated or unsafe): {path}: {_unpickling_reason(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"not a diffusionad_edge checkpoint: {path}")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format {payload['format_version']} is newer than this toolkit understands "
            f"({FORMAT_VERSION}); upgrade diffusionad_edge: {path}"
        )
    return payload


def _unpickling_reason(exc: BaseException) -> str:
    """The specific reason in a torch.load error, without PyTorch's advice to retry with
    ``weights_only=False`` (which would run whatever code the file carries)."""
    advice = ("weights_only", "weights only", "please file an issue", "check the documentation", "trusted source")
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not any(a in line.lower() for a in advice):
            return line
    return type(exc).__name__


def load_model(path: str | Path, expect_preset: str | None = None) -> tuple[DiffusionAD, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint; returns (model in eval mode, full payload)."""
    payload = read_checkpoint(path)
    try:
        config = ModelConfig.from_json(payload["model_config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if expect_preset is not None and config.preset != expect_preset:
        raise CheckpointError(f"checkpoint {path} holds preset {config.preset!r}, not {expect_preset!r}")
    model = DiffusionAD(config)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"weights in {path} do not match its {config.preset!r} config: {first}") from None
    model.eval()
    return model, payload
