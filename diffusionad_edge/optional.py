"""Lazy imports of optional heavy dependencies, with one clear line when one is missing."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import MissingDependencyError

#: the one-line answer when the workstation side (training, evaluation, export) is missing
TRAIN_HINT = "pip install 'diffusionad_edge[train]'"

#: module -> how to get it. A device install (the core) runs bundles; the backends are extras, and
#: everything training, evaluation and export need is the [train] extra.
INSTALL_HINTS = {
    "torch": TRAIN_HINT,
    "scipy": TRAIN_HINT,
    "sklearn": TRAIN_HINT,
    "onnx": TRAIN_HINT,
    "onnxslim": TRAIN_HINT,
    "nncf": TRAIN_HINT,
    "onnxruntime": "pip install 'diffusionad_edge[onnxruntime]'",
    "openvino": "pip install 'diffusionad_edge[openvino]'",
    "tensorrt": "use JetPack 6's TensorRT Python bindings on the device (see README, 'Jetson'), or pip install tensorrt on a CUDA workstation",
    "matplotlib": "pip install 'diffusionad_edge[charts]'",
    "pycuda": "pip install 'diffusionad_edge[jetson]' (builds against the device's CUDA)",
    "paho": "pip install 'diffusionad_edge[line]'",
}

#: modules only the [train] extra installs: a verb that meets one of them missing needs the workstation side
TRAINING_MODULES = ("torch", "scipy", "sklearn", "onnx", "onnxslim", "nncf")


def training_extra_message(verb: str, missing: str) -> str:
    """The one line a workstation verb gives on a device install, e.g. ``dae train needs the training extra ...``."""
    return f"{verb} needs the training extra ({missing} is not installed): {TRAIN_HINT}"


def missing_training_module(modules: tuple[str, ...] = ("torch", "scipy", "sklearn")) -> str | None:
    """The first of ``modules`` that is not installed (found without importing it), or None."""
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the install that fixes it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(module.split(".")[0], f"pip install {module.split('.')[0]}")
        raise MissingDependencyError(f"{module} is needed for this and is not importable ({exc}): {hint}") from None
