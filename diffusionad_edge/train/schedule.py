"""What each training step draws and the learning rate it runs at, as pure functions of the seed and
the step: a resumed run draws exactly what an uninterrupted one would have."""

from __future__ import annotations

import math

import torch


def step_noise(
    seed: int, step: int, shape: tuple[int, ...], t_split: int, T: int,
    deployed: tuple[int, int] | None = None, jitter: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Timesteps and noises of one training step, a pure function of (seed, step), drawn on CPU.

    ``deployed=(t_s, t_b)`` draws only those timesteps, each +- ``jitter`` (clipped to [0, T-1]);
    otherwise the paper's ranges U{0..t_split-1} and U{t_split..T-1}.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    b = shape[0]
    if deployed is None:
        t_s = torch.randint(0, t_split, (b,), generator=g)
        t_b = torch.randint(t_split, T, (b,), generator=g)
    else:
        t_s = (deployed[0] + torch.randint(-jitter, jitter + 1, (b,), generator=g)).clamp(0, T - 1)
        t_b = (deployed[1] + torch.randint(-jitter, jitter + 1, (b,), generator=g)).clamp(0, T - 1)
    eps_s = torch.randn(shape, generator=g)
    eps_b = torch.randn(shape, generator=g)
    return t_s, t_b, eps_s, eps_b


def lr_factor(schedule: str, step: int, total: int, warmup: int, progress: float | None = None) -> float:
    """Learning-rate multiplier at ``step``: 1 for "constant"; for "cosine" a linear warm-up over
    ``warmup`` steps, then a cosine from 1 down to 0.05 as ``progress`` (default step / total)
    goes from 0 to 1."""
    if schedule == "constant":
        return 1.0
    if warmup and step < warmup:
        return (step + 1) / warmup
    frac = (step - warmup) / max(total - warmup, 1) if progress is None else progress
    frac = min(max(frac, 0.0), 1.0)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac))
