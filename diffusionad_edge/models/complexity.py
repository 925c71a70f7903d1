"""Parameter counts and FLOPs per image, measured by running the model once (:func:`measure_complexity`),
and what ``dae info`` tells of a checkpoint or preset (:func:`describe_model`).

FLOPs are counted by PyTorch's ``FlopCounterMode`` (a multiply-add counts as 2 FLOPs; only
convolutions, matmuls and attention are counted, which dominate these networks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import preset as get_preset
from ..errors import ConfigError
from .checkpoint_io import load_model
from .detector import DiffusionAD


@dataclass
class Complexity:
    denoiser_params: int
    segmenter_params: int
    denoiser_gflop_per_pass: float
    segmenter_gflop: float

    @property
    def total_params(self) -> int:
        return self.denoiser_params + self.segmenter_params

    @property
    def one_step_gflop(self) -> float:
        """GFLOP per image for the one-step detector: two denoiser passes plus segmentation."""
        return 2 * self.denoiser_gflop_per_pass + self.segmenter_gflop


def _count(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


@torch.no_grad()
def measure_complexity(model: DiffusionAD) -> Complexity:
    """Count parameters and GFLOP for one image at the model's input size (runs on the meta device)."""
    h, w = model.config.input_hw
    # The meta device computes shapes only: counting the 160M-parameter preset costs no real compute.
    meta = DiffusionAD(model.config).to("meta") if next(model.parameters()).device.type != "meta" else model
    x = torch.zeros(1, 3, h, w, device="meta")
    t = torch.zeros(1, dtype=torch.long, device="meta")
    return Complexity(
        denoiser_params=sum(p.numel() for p in model.denoiser.parameters()),
        segmenter_params=sum(p.numel() for p in model.segmenter.parameters()),
        denoiser_gflop_per_pass=_count(lambda: meta.denoiser(x, t)),
        segmenter_gflop=_count(lambda: meta.segmenter(torch.zeros(1, 6, h, w, device="meta"))),
    )


def describe_model(checkpoint: str | Path | None = None, preset: str | None = None) -> dict[str, Any]:
    """``dae info``: the preset, input size, parameters and GFLOP per image (exact; one-step: two
    denoiser passes plus segmentation) and the timesteps of a checkpoint (with its step and
    preprocessing) or of a preset (``preset``; shapes only, nothing is allocated). Give one of the two."""
    if (checkpoint is None) == (preset is None):
        raise ConfigError("give either a CHECKPOINT or --preset NAME")
    extra: dict[str, Any] = {}
    if checkpoint is not None:
        model, payload = load_model(checkpoint)
        extra = {"checkpoint": str(checkpoint), "step": payload.get("step")}
        if payload.get("preprocessing"):
            extra["preprocessing"] = {k: v for k, v in payload["preprocessing"].items() if k != "resize"}
    else:
        with torch.device("meta"):
            model = DiffusionAD(get_preset(preset))  # shapes only: nothing is allocated
    c = measure_complexity(model)
    cfg = model.config
    return {
        "preset": cfg.preset,
        "image_size": cfg.image_size,
        "input_hw": list(cfg.input_hw),
        "denoiser_params": c.denoiser_params,
        "segmenter_params": c.segmenter_params,
        "total_params": c.total_params,
        "denoiser_gflop_per_pass": c.denoiser_gflop_per_pass,
        "segmenter_gflop": c.segmenter_gflop,
        "one_step_gflop_per_image": c.one_step_gflop,
        "t_s": cfg.diffusion.t_s,
        "t_b": cfg.diffusion.t_b,
        "guidance_w": cfg.diffusion.guidance_w,
        **extra,
    }
