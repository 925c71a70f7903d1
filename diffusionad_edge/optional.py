"""Lazy imports of optional heavy dependencies, with one clear line when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

#: module -> how to get it
INSTALL_HINTS = {
    "onnx": "pip install 'diffusionad_edge[onnx]'",
    "onnxruntime": "pip install 'diffusionad_edge[onnx]'",
    "onnxslim": "pip install 'diffusionad_edge[onnx]'",
    "openvino": "pip install 'diffusionad_edge[openvino]'",
    "nncf": "pip install 'diffusionad_edge[openvino]'",
    "tensorrt": "use JetPack 6's TensorRT Python bindings on the device (see README, 'Jetson'), or pip install tensorrt on a CUDA workstation",
    "matplotlib": "pip install 'diffusionad_edge[charts]'",
    "pycuda": "pip install 'diffusionad_edge[jetson]' (builds against the device's CUDA)",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the install that fixes it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(module.split(".")[0], f"pip install {module.split('.')[0]}")
        raise MissingDependencyError(f"{module} is needed for this and is not importable ({exc}): {hint}") from None
