"""What the machine this process runs on can do, read at run time (machines here differ: AVX2 only,
AVX-512 with VNNI/BF16, AMX; a CUDA GPU or not), the device a run trains or evaluates on, and the
training precision that follows from them."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

#: Precisions ``dae train --precision`` accepts.
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags |= set(value.split())
    except OSError:
        pass
    return frozenset(flags)


def cpu_has_native_bf16(flags: frozenset[str] | set[str] | None = None) -> bool:
    """True where the CPU computes bfloat16 dot products natively (AVX-512 BF16 or AMX). Elsewhere
    PyTorch emulates bf16 and autocast makes training slower, not faster."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def resolve_train_precision(
    requested: str, device_type: str, amp: bool = True, flags: frozenset[str] | set[str] | None = None
) -> str:
    """The precision a training run really uses: ``fp32``, ``bf16`` (autocast) or ``fp16`` (CUDA autocast).

    ``auto``: fp16 on CUDA (unless ``amp`` is off), bf16 on a CPU with native bf16, else fp32.
    Asking for a precision the device cannot run is one clear error.
    """
    if requested not in TRAIN_PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(TRAIN_PRECISIONS)} (got {requested!r})")
    if requested == "auto":
        if device_type == "cuda":
            return "fp16" if amp else "fp32"
        if device_type == "cpu" and cpu_has_native_bf16(flags):
            return "bf16"
        return "fp32"
    if requested == "fp16" and device_type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA device; on a CPU use bf16 (where supported) or fp32")
    if requested == "bf16" and device_type == "cpu" and not cpu_has_native_bf16(flags):
        raise ConfigError(
            "--precision bf16 asked for, but this CPU has no native bfloat16 (no avx512_bf16 / amx_bf16 "
            "flag): it would be emulated and slower; use --precision fp32"
        )
    return requested


def resolve_device(name: str = "auto") -> "torch.device":
    """The PyTorch device a run trains or evaluates on: ``auto`` picks CUDA, then Apple MPS, then CPU.
    (Training and evaluation both ask, so it lives here rather than under either.)"""
    import torch  # when a run starts, not when this module is imported

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but this PyTorch build sees no CUDA GPU")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps asked for, but MPS is not available here")
    return device
