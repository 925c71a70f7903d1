"""Describe the machine a benchmark ran on: CPU, cores, ISA features, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

from ..hardware import cpu_flags

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd")


def describe_machine() -> dict[str, Any]:
    cpu, flags = platform.processor() or platform.machine(), cpu_flags()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    cpu = value.strip()
                    break
    except OSError:
        pass
    versions = {}
    for pkg in ("diffusionad_edge", "torch", "onnxruntime", "openvino", "nncf", "numpy", "opencv-python-headless"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu, "machine": platform.machine(), "logical_cores": os.cpu_count(),
        "isa": sorted(f for f in ISA_FLAGS if f in flags), "os": platform.platform(),
        "python": platform.python_version(), "versions": versions,
    }


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS counter (Linux >= 4.0), so each row measures its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
