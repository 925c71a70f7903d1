"""The TensorRT engine-build plan stored in a bundle, and the equivalent ``trtexec`` line.

Engines are not portable, so the workstation exports a TensorRT-ready ONNX and this plan; the
device builds the engine from them. The ONNX carries its precision itself (an FP16 graph, a Q/DQ
INT8 graph for explicit quantization, or FP32), which is what lasts: TensorRT 10 (JetPack 6) also
gets the matching builder flags, TensorRT 11 has no precision flags and builds strongly typed
networks, taking every tensor's type from the ONNX.
"""

from __future__ import annotations

import shlex
from typing import Any

from .targets import TargetProfile


def build_plan(profile: TargetProfile, precision: str, onnx_name: str, batch: int, size: int | tuple[int, int]) -> dict[str, Any]:
    o = profile.options
    h, w = (size, size) if isinstance(size, int) else size
    plan: dict[str, Any] = {
        "onnx": onnx_name,
        "precision": precision,
        # Q/DQ INT8 is explicit quantization: the FP16 flag lets the non-quantized layers run in FP16.
        "builder_flags": {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}[precision],
        "explicit_quantization": precision == "int8",
        "workspace_mib": int(o.get("workspace_mib", 2048)),
        "builder_optimization_level": int(o.get("builder_optimization_level", 3)),
        "timing_cache": str(o.get("timing_cache", "timing.cache")),
        "input_shape": [batch, 3, h, w],
        "dla_core": o.get("dla_core"),
        "gpu_fallback": bool(o.get("gpu_fallback", False)) if o.get("dla_core") is not None else None,
        "cuda_graph": bool(o.get("cuda_graph", False)),
        "engine_name": "model.trt{trt_version}.{gpu}.engine",
    }
    plan["trtexec"] = trtexec_command(plan)
    plan["trtexec_strongly_typed"] = trtexec_command(plan, strongly_typed=True)
    if precision == "int8":
        plan["strongly_typed_note"] = ("strongly typed (TensorRT >= 11): the layers between Q/DQ pairs run INT8, "
                                       "the unquantized ones in FP32 as the ONNX types them")
    return plan


def trtexec_command(plan: dict[str, Any], engine: str = "model.engine", strongly_typed: bool = False) -> str:
    """The ``trtexec`` command line that builds the same engine by hand: with TensorRT 10's
    precision flags, or ``--stronglyTyped`` (TensorRT 11 has no precision flags)."""
    args = [
        "trtexec", f"--onnx={plan['onnx']}", f"--saveEngine={engine}",
        f"--memPoolSize=workspace:{plan['workspace_mib']}M",
        f"--builderOptimizationLevel={plan['builder_optimization_level']}",
        f"--timingCacheFile={plan['timing_cache']}",
    ]
    if strongly_typed:
        args.append("--stronglyTyped")
    else:
        args += ["--" + flag.lower() for flag in plan["builder_flags"]]
    if plan.get("dla_core") is not None:
        args.append(f"--useDLACore={plan['dla_core']}")
        if plan.get("gpu_fallback"):
            args.append("--allowGPUFallback")
    return " ".join(shlex.quote(a) for a in args)
