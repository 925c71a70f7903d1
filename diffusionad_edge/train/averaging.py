"""The weight average (EMA) a checkpoint's deployable ``model`` holds."""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """Exponential moving average of a model's parameters and floating-point buffers (BatchNorm
    statistics included); integer buffers are copied. ``model`` holds the averaged network."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        avg = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = avg[name]
            if value.dtype.is_floating_point:
                target.lerp_(value.detach(), 1.0 - d)
            else:
                target.copy_(value)
