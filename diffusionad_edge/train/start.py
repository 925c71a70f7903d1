"""Where a training run starts, and which images beside the dataset's it trains on.

- From scratch: the preset's freshly initialised weights.
- ``--resume CHECKPOINT`` (:func:`read_resume`): the same run, continued where it stopped, with its
  own recipe, input layout, optimiser state, weight average, step and added normals.
- ``--init CHECKPOINT`` (:func:`init_weights`): a new run that starts from a trained checkpoint's
  weights (its deployable, averaged ``model``) and nothing else: step 0, fresh optimisers, the
  learning-rate schedule from its warm-up, a weight average that starts at those weights. The
  checkpoint must hold the same preset at the same input size (the weights are the same tensors);
  another category's checkpoint is the point of it.
- ``--add-normals FOLDER`` (:func:`added_normals`): the images directly in FOLDER (e.g. a review
  folder's ``good/``) are trained on beside the dataset's training normals. The held-out split is
  the dataset's alone, the same as without them, so validation and the thresholds a later export
  places are measured on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig, TrainConfig, preset_with_networks, same_networks
from ..data.framing import Preprocessing, preprocessing_of
from ..data.mvtec import list_images
from ..errors import CheckpointError, ConfigError, DataError
from .checkpoint import load_model, read_checkpoint


@dataclass
class Resume:
    """A checkpoint to continue: its payload and what it fixes for the run."""

    path: Path
    payload: dict[str, Any]
    model_config: ModelConfig
    preprocessing: Preprocessing
    cfg: TrainConfig
    #: processes of the run that wrote it
    world_size: int

    @property
    def added_normals(self) -> list[Path]:
        return [Path(p) for p in (self.payload.get("data") or {}).get("added_normals") or []]


def read_resume(path: str | Path, cfg: TrainConfig) -> Resume:
    """A checkpoint to continue (it must hold optimiser state). A resumed run continues with its own
    recipe (else it would not equal the uninterrupted run): of ``cfg`` only the run length and the
    machinery (checkpoint intervals, workers, precision) are taken."""
    payload = read_checkpoint(path)
    if "optim_denoiser" not in payload:
        raise CheckpointError(f"{path} has no optimiser state: it cannot be resumed")
    model_config = ModelConfig.from_json(payload["model_config"])
    preprocessing = preprocessing_of(model_config, payload)  # a resumed run keeps its ROI and tiles
    stored = payload.get("train_config")
    if stored:
        keep = dict(steps=cfg.steps, checkpoint_every=cfg.checkpoint_every, checkpoint_minutes=cfg.checkpoint_minutes,
                    num_workers=cfg.num_workers, precision=cfg.precision, amp=cfg.amp)
        cfg = TrainConfig.from_dict({**stored, **keep}).validate()
    return Resume(Path(path), payload, model_config, preprocessing, cfg, int(payload.get("world_size", 1)))


def _layout(config: ModelConfig) -> str:
    h, w = config.input_hw
    return f"preset {config.preset!r} at {h}x{w} px"


def init_weights(path: str | Path, model_config: ModelConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The deployable (averaged) weights of a trained checkpoint, for a new run of ``model_config``,
    and a record of where they came from (kept in the new checkpoint as ``init``). A checkpoint whose
    networks or input size differ from the run's is one line naming both and the preset to give
    (:class:`CheckpointError`, exit code 2), checked before its weights are loaded."""
    payload = read_checkpoint(path)
    try:
        theirs = ModelConfig.from_json(payload["model_config"])
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"--init {path}: no readable model config ({exc})") from None
    # Networks, not names, decide: an `edge` checkpoint of an earlier version may hold the layout
    # another preset builds now (edge-v2), and is named so.
    same = same_networks(theirs, model_config)
    now = preset_with_networks(theirs)
    if not same and theirs.preset == model_config.preset:
        hint = f"its layout is preset {now!r} now: give --preset {now}" if now else "no preset of this version builds it"
        raise CheckpointError(f"--init {path} holds an earlier {theirs.preset!r} layout than this version's ({hint}), "
                              "or start from another checkpoint")
    if not same or theirs.input_hw != model_config.input_hw:
        raise CheckpointError(f"--init {path} holds {_layout(theirs)}; this run trains {_layout(model_config)}: "
                              f"give --preset {now or theirs.preset} (and --input-size {theirs.input_hw[0]}x{theirs.input_hw[1]}, "
                              "or --tile) to match it, or another checkpoint")
    model, _ = load_model(path)
    data = payload.get("data") or {}
    record = {"path": str(path), "step": payload.get("step"), "preset": theirs.preset, "category": data.get("category"),
              "data": data.get("root"), "train_seconds": payload.get("train_seconds")}
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, record


def load_init(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load :func:`init_weights`' weights into the new run's model (one line when a preset's layout
    changed between the two versions that made them)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"--init {path}: its weights do not fit this run's {model.config.preset!r} networks: {first}") from None


def added_normals(folder: str | Path) -> list[Path]:
    """The images directly inside ``folder`` (sorted by name): more normal images to train on. One
    line naming the folder when it is missing or holds none (with a hint when it is a review folder,
    whose good frames are in ``good/``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--add-normals {folder}: folder not found")
    images = list_images(folder)
    if not images:
        hint = f" (a review folder? its good frames are in {folder / 'good'})" if (folder / "good").is_dir() else ""
        raise DataError(f"--add-normals {folder} holds no images{hint}")
    return images
