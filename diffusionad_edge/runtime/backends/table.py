"""The table of backends: everything the toolkit knows about each one, in one place.

Per backend: the precisions the exporter can produce, the converter that builds its model files
(a ``module:function`` the exporter resolves; the runtime never imports the exporter), the runner
class that runs a bundle (``module:Class``, imported lazily: importing this table needs no backend),
the runtime options written into a bundle's metadata, the ``pip install`` hint when it is missing, and
the packages whose versions a bundle records.

Adding a backend (ONNX Runtime's CUDA or TensorRT execution provider, OpenVINO on an ARM CPU, ...)
is one row here, one runner (a :class:`~.runner.Runner` in ``runtime/backends/<name>.py``, or a
sub-package such as ``tensorrt/`` when it brings more, with a ``from_bundle(folder, meta, **options)``
constructor) and, when it needs its own model files, one converter function in ``export/converters/``.
A target profile (``targets/*.toml``) then names it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable

from ...errors import ConfigError, DaeError
from ...optional import INSTALL_HINTS


def _onnxruntime_options(device: str, options: dict[str, Any], precision: str) -> dict[str, Any]:
    return dict(options)


def _openvino_options(device: str, options: dict[str, Any], precision: str) -> dict[str, Any]:
    config = {k: v for k, v in options.items() if k.isupper()}
    if precision == "fp32" and device == "CPU":
        # Without this hint OpenVINO runs an "FP32" model in bf16 on CPUs with AMX/AVX-512-BF16.
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return {"config": config}


@dataclass(frozen=True)
class Backend:
    name: str
    label: str
    precisions: tuple[str, ...]
    runner: str  # "module:Class" with a from_bundle(folder, meta, **options) classmethod
    converter: str  # "module:function" (see export/converters/)
    install_hint: str
    version_packages: tuple[str, ...]
    runtime_options: Callable[[str, dict[str, Any], str], dict[str, Any]] = _onnxruntime_options
    #: runner options (``make_runner(..., **options)``) this backend accepts beyond the metadata
    runner_options: tuple[str, ...] = field(default=())

    def runner_class(self) -> type:
        module, _, name = self.runner.partition(":")
        return getattr(importlib.import_module(module), name)


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("onnxruntime", "ONNX Runtime", ("fp32", "int8"), "diffusionad_edge.runtime.backends.onnxruntime:OnnxRuntimeRunner",
            "diffusionad_edge.export.converters:build_onnxruntime", INSTALL_HINTS["onnxruntime"],
            ("onnxruntime",), _onnxruntime_options),
    Backend("openvino", "OpenVINO", ("fp32", "fp16", "int8"), "diffusionad_edge.runtime.backends.openvino:OpenVINORunner",
            "diffusionad_edge.export.converters:build_openvino", INSTALL_HINTS["openvino"],
            ("openvino", "nncf"), _openvino_options, runner_options=("requests", "performance_hint")),
    Backend("tensorrt", "TensorRT", ("fp32", "fp16", "int8"), "diffusionad_edge.runtime.backends.tensorrt.runner:TensorRTRunner",
            "diffusionad_edge.export.converters:build_tensorrt", INSTALL_HINTS["tensorrt"],
            ("tensorrt",), _onnxruntime_options),
)}

#: packages every export records besides the backends' own
CORE_VERSION_PACKAGES = ("torch", "onnx", "onnxslim")


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"backend {name!r} is not supported by this toolkit; known: {', '.join(BACKENDS)}") from None


def package_versions(packages: tuple[str, ...] | None = None) -> dict[str, str | None]:
    """Installed versions (None when absent) of ``packages``; default: the core and every backend's."""
    if packages is None:
        packages = CORE_VERSION_PACKAGES + tuple(p for b in BACKENDS.values() for p in b.version_packages if p != "tensorrt")
    out: dict[str, str | None] = {}
    for pkg in packages:
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def make_runner(folder: Path, meta: dict[str, Any], backend: str | None = None, **options: Any):
    """The runner for a bundle's entry file, from its metadata (``backend`` may override; ``options``
    are runner options such as OpenVINO's ``requests``)."""
    spec = get_backend(backend or meta["backend"])
    unknown = [k for k, v in options.items() if v is not None and k not in spec.runner_options]
    if unknown:
        raise DaeError(f"{spec.label} runners take no {', '.join(unknown)} option (only {', '.join(spec.runner_options) or 'none'})")
    return spec.runner_class().from_bundle(Path(folder), meta, **{k: v for k, v in options.items() if v is not None})
