"""TensorRT engines for a bundle: built on the device, keyed by TensorRT version and GPU.

Written against the TensorRT 10 Python API (JetPack 6 ships 10.3): ONNX parser, builder config
with a workspace memory-pool limit, optimisation level, FP16/INT8 flags (INT8 only for Q/DQ ONNX,
i.e. explicit quantization; no implicit calibrator), optional DLA with GPU fallback, and a timing
cache reused across builds. ``tensorrt`` is imported inside the functions that need it, so this
module imports anywhere; the fingerprint logic needs no TensorRT at all.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from ....errors import DaeError, MissingDependencyError

TRT_HINT = (
    "TensorRT is not importable: on a Jetson use JetPack 6's bindings (create the venv with "
    "--system-site-packages, see README 'Jetson'); on a CUDA workstation pip install tensorrt"
)
FINGERPRINT = "engine.json"


def require_real_tensorrt(trt: object) -> None:
    """``import tensorrt`` also succeeds on the type stubs alone (an empty namespace package):
    insist on the real bindings."""
    if not hasattr(trt, "Builder"):
        raise MissingDependencyError(TRT_HINT)


def uses_strongly_typed(trt: Any) -> bool:
    """True where the builder has no FP16/INT8 precision flags (TensorRT 11 and later): the
    network must be strongly typed and the precision is the ONNX's own."""
    return not hasattr(trt.BuilderFlag, "FP16")


class EngineMismatchError(DaeError):
    """The engine in a bundle was built for another TensorRT version or GPU."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def engine_filename(trt_version: str, gpu_name: str) -> str:
    """Engines are not portable: the name carries the TensorRT version and the GPU."""
    return f"model.trt{_slug(trt_version)}.{_slug(gpu_name)}.engine"


def find_engine(bundle: Path, trt_version: str, gpu_name: str) -> Path:
    """The engine for this TensorRT version and GPU; refuses a mismatched one with a rebuild hint."""
    wanted = bundle / engine_filename(trt_version, gpu_name)
    if wanted.is_file():
        return wanted
    fp = bundle / FINGERPRINT
    if fp.is_file():
        built = json.loads(fp.read_text())
        raise EngineMismatchError(
            f"the engine in {bundle} was built for TensorRT {built.get('tensorrt')} on {built.get('gpu')}; "
            f"this device has TensorRT {trt_version} on {gpu_name}: rebuild it with "
            f"`dae export {bundle} --build-engine`"
        )
    raise EngineMismatchError(f"no TensorRT engine in {bundle} yet: build it on the device with `dae export {bundle} --build-engine`")


def current_gpu_name() -> str:
    """Name of CUDA device 0, from pycuda or cuda-python (whichever is installed)."""
    try:
        import pycuda.driver as cuda  # type: ignore[import-not-found]

        cuda.init()
        return str(cuda.Device(0).name())
    except ImportError:
        pass
    from .cuda_memory import CUDA_HINT, cuda_check, import_cudart

    try:
        cudart = import_cudart()
    except ImportError:
        raise MissingDependencyError(CUDA_HINT) from None
    props = cuda_check(cudart, cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


def build_engine(bundle: Path, plan: dict[str, Any], log: Callable[[str], None] = print, gpu_name: str | None = None) -> Path:
    """Parse the bundle's ONNX and build, store and fingerprint the serialized engine."""
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError(TRT_HINT) from None
    require_real_tensorrt(trt)
    gpu = gpu_name or current_gpu_name()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = uses_strongly_typed(trt)
    # Explicit batch is the only mode since TensorRT 10; strongly typed takes each tensor's type
    # from the ONNX (the only mode in TensorRT 11, whose builder has no precision flags).
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0)
    parser = trt.OnnxParser(network, logger)
    onnx_path = bundle / plan["onnx"]
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DaeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan["workspace_mib"]) << 20)
    config.builder_optimization_level = int(plan["builder_optimization_level"])
    flags = [] if strongly_typed else plan["builder_flags"]
    if "FP16" in flags:
        if builder.platform_has_fast_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            log("warning: this GPU has no fast FP16; building FP32 kernels")
    if "INT8" in flags:
        # The ONNX carries Q/DQ pairs (explicit quantization): no calibrator is needed or used.
        config.set_flag(trt.BuilderFlag.INT8)
    if strongly_typed:
        log(f"TensorRT {trt.__version__} builds strongly typed: precision {plan['precision']} comes from the ONNX's types")
    if plan.get("dla_core") is not None:
        if builder.num_DLA_cores == 0:
            raise DaeError("the profile asks for DLA, but this device has no DLA cores; use a non-DLA target")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(plan["dla_core"])
        if plan.get("gpu_fallback"):
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    cache_path = bundle / plan["timing_cache"]
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    log(f"building TensorRT {trt.__version__} engine ({plan['precision']}) for {gpu}; this takes minutes ...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DaeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")

    engine = bundle / engine_filename(trt.__version__, gpu)
    _atomic_bytes(engine, bytes(serialized))
    _atomic_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    _atomic_bytes(bundle / FINGERPRINT, json.dumps({"tensorrt": trt.__version__, "gpu": gpu, "engine": engine.name,
                                                    "precision": plan["precision"], "strongly_typed": strongly_typed},
                                                   indent=2).encode())
    return engine


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
