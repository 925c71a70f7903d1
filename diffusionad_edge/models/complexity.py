"""Parameter counts and FLOPs per image, measured by running the model once.

FLOPs are counted by PyTorch's ``FlopCounterMode`` (a multiply-add counts as 2 FLOPs; only
convolutions, matmuls and attention are counted, which dominate these networks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

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
