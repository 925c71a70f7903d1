"""diffusionad_edge: train DiffusionAD on a workstation, deploy it to edge devices.

The public Python API, the calls the ``dae`` commands make (imported lazily: ``import
diffusionad_edge`` loads no PyTorch, OpenVINO or ONNX Runtime; each name loads what it needs on
first use, so a device install without PyTorch can use the runtime names)::

    from diffusionad_edge import open_bundle
    with open_bundle("exports/bottle-openvino-cpu-int8") as bundle:
        result = bundle.predict("part.png")

Runtime (device side): :func:`open_bundle`, :func:`load_bundle`, :func:`run_stream` with
:class:`RunOptions`, :func:`predict_files`. Workstation side (``[train]`` extra):
:func:`load_model`, :func:`open_dataset`, :func:`preset`, :class:`TrainConfig`, :class:`Trainer`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it (relative to this package)
_PUBLIC = {
    "open_bundle": ".runtime.bundle",
    "load_bundle": ".runtime.bundle",
    "run_stream": ".runtime.live",
    "RunOptions": ".runtime.live",
    "predict_files": ".runtime.predict",
    "load_model": ".models.checkpoint_io",
    "open_dataset": ".data.builtin",
    "preset": ".config",
    "TrainConfig": ".config",
    "Trainer": ".train.trainer",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562), so importing the package stays light."""
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
