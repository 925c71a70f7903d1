"""Data-parallel training across processes (PyTorch DistributedDataParallel, launched by torchrun).

The contract: ``--batch-size`` is the *global* batch. Step ``s`` uses the same samples
``s*B .. s*B+B-1`` (and the same noises) whatever the number of processes; each of the ``W``
processes ("ranks") draws and trains on its own share of them, ``B/(2W)`` clean and ``B/(2W)``
synthetic-anomaly samples. Every term of the loss is a mean over equal-sized shares, DDP averages
the gradients, and the BatchNorm statistics are those of the whole global batch (:class:`GlobalBatchNorm`),
so a step on W processes equals, up to float rounding, the same step in one process. That is what
lets ``--resume`` continue a checkpoint on another number of processes, and keeps the learning
rates of the single-process recipe valid (the global batch does not grow with W).

The process group has a timeout: a rank that stops answering makes the others fail after at
most that long instead of waiting forever (a rank that dies is noticed at once: its sockets close
and torchrun stops the job).
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, DaeError

#: Default seconds a rank waits in a collective operation before the job is declared stuck.
DEFAULT_TIMEOUT_S = 600.0


class DistributedFailure(DaeError):
    """Another training process died or stopped answering; this one stops too."""

    exit_code = 1


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a training job. ``world_size == 1``: plain one-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, validates and reports progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun (or ``dae train --nproc``) started."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_from_env(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Join the process group torchrun set up (env:// rendezvous). Backend ``nccl`` for CUDA,
    ``gloo`` otherwise. A world of one process initialises nothing."""
    if not launched_by_torchrun():
        return SINGLE
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world == 1:
        return DistContext(0, 1, local_rank, "")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"multi-process training runs on CPU (gloo) or CUDA (nccl), not {device.type}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs = {}
        if device.type == "cuda":
            torch.cuda.set_device(device)
            kwargs["device_id"] = device
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return DistContext(rank, world, local_rank, backend)


def rank_device(name: str, local_rank: int) -> str:
    """The device of one rank: ``cuda`` (or ``auto`` on a CUDA machine) becomes ``cuda:<local rank>``,
    one GPU per process; an explicit ``cuda:N`` or ``cpu`` is kept."""
    if name in ("cuda", "auto") and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return name


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_batch(batch_size: int, world_size: int) -> None:
    """The global batch must split into equal halves of clean and synthetic samples per rank."""
    if batch_size % (2 * world_size):
        raise ConfigError(
            f"--batch-size {batch_size} (the global batch) must be a multiple of 2 x {world_size} processes: "
            f"each process trains on the same number of clean and synthetic samples"
        )


def share_rows(batch_size: int, world_size: int, rank: int) -> list[int]:
    """Positions, within the global batch, of the samples rank ``rank`` trains on: its slice of the
    clean first half, then the same slice of the synthetic second half (one rank: all, in order)."""
    half = batch_size // 2
    h = half // world_size
    own = list(range(rank * h, (rank + 1) * h))
    return own + [half + i for i in own]


# -- BatchNorm over the global batch -------------------------------------------------------------
class _SumOverRanks(torch.autograd.Function):
    """Sum of a tensor over all ranks. Its gradient is the sum of the ranks' gradients: each rank's
    loss depends on every rank's input through the shared statistics."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks together).

    PyTorch's ``SyncBatchNorm`` does this on GPUs only; this one works with any backend (gloo on
    CPU), in plain autograd: two all-reduces forward (sum, then the centred sum of squares, so the
    variance is computed like BatchNorm's own) and two backward. Its parameters and buffers are
    BatchNorm2d's, so checkpoints do not change. In eval mode, or without a process group, it is
    BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        xf = x.float()
        count = torch.full((1,), float(x.numel() // x.shape[1]), device=x.device)
        sums = _SumOverRanks.apply(torch.cat([xf.sum(dims), count]))  # one all-reduce for both
        n = sums[-1].detach()
        mean = sums[:-1] / n
        centred = xf - mean[None, :, None, None]
        var = _SumOverRanks.apply(centred.pow(2).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d of ``module`` normalised over the global batch: PyTorch's SyncBatchNorm on
    CUDA (its fused kernels), :class:`GlobalBatchNorm` elsewhere. Same parameters and buffers."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        bn = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        bn.load_state_dict(module.state_dict())
        bn.train(module.training)
        return bn.to(next(iter(module.state_dict().values())).device)
    for name, child in module.named_children():
        new = _convert(child)
        if new is not child:
            setattr(module, name, new)
    return module


def is_distributed_failure(exc: BaseException) -> bool:
    """True for the errors a collective raises when a peer died, hung past the timeout or the
    connection broke (as opposed to a bug or a user error)."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("connection closed", "connection reset", "timed out", "gloo", "nccl", "broken pipe")
    )


def describe_failure(exc: BaseException, ctx: DistContext) -> str:
    """One line for the user: which rank noticed, and the first line of the cause."""
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]  # without gloo's "[source:line]" and advice
    if len(first) > 120:
        first = first[:117] + "..."
    return (
        f"rank {ctx.rank} of {ctx.world_size}: another training process died or stopped answering, "
        f"so this one stops too ({first})"
    )
