"""diffusionad_edge: train DiffusionAD on a workstation, deploy it to edge devices.

The public Python API, the calls the ``dae`` commands make (imported lazily: ``import
diffusionad_edge`` loads no PyTorch, OpenVINO or ONNX Runtime; each name loads what it needs on
first use, so a device install without PyTorch can use the runtime names)::

    from diffusionad_edge import open_bundle
    with open_bundle("exports/bottle-openvino-cpu-int8") as bundle:
        result = bundle.predict("part.png")

Each ``dae`` verb is one of these calls (the verb parses its options, calls it and prints)::

    dae train     train_model(TrainOptions(...))
    dae eval      evaluate_checkpoint(...); with --noise-study: study_noise(...)
    dae info      describe_model(...)
    dae export    export_bundle(ExportOptions(...)); with --refit-threshold: refit_thresholds(...)
    dae run       run_on_line(model, [SourceSpec(...)], RunOptions(...))
    dae serve     serve_bundle(...)
    dae predict   predict_images(...)
    dae bench     run_bench(bundles, checkpoint, BenchConfig(...))
    dae demo      run_demo(DemoOptions(...))

Runtime (device side): :func:`open_bundle`, :func:`load_bundle`, :func:`run_stream` with
:class:`RunOptions`, :func:`predict_files`, :func:`predict_images`, :func:`run_on_line` with
:class:`SourceSpec`, :func:`serve_bundle`, :func:`refit_thresholds`. Workstation side (``[train]``
extra): :func:`load_model`, :func:`open_dataset`, :func:`preset`, :class:`TrainConfig`,
:class:`Trainer`, :func:`train_model` with :class:`TrainOptions`, :func:`evaluate_checkpoint`,
:func:`study_noise`, :func:`describe_model`, :func:`export_bundle` with :class:`ExportOptions`,
:func:`run_bench` with :class:`BenchConfig` (its bundle rows also run on a device),
:func:`run_demo` with :class:`DemoOptions`.
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
    "predict_images": ".runtime.predict",
    "run_on_line": ".runtime.line.run",
    "SourceSpec": ".runtime.line.multisource",
    "serve_bundle": ".runtime.line.serve",
    "refit_thresholds": ".runtime.refit",
    "load_model": ".models.checkpoint_io",
    "describe_model": ".models.complexity",
    "open_dataset": ".data.builtin",
    "preset": ".config",
    "TrainConfig": ".config",
    "Trainer": ".train.trainer",
    "train_model": ".train.job",
    "TrainOptions": ".train.job",
    "evaluate_checkpoint": ".evaluate.run",
    "study_noise": ".evaluate.run",
    "export_bundle": ".export.pipeline",
    "ExportOptions": ".export.job",
    "run_bench": ".bench.run",
    "BenchConfig": ".bench.benchmark",
    "run_demo": ".demo.run",
    "DemoOptions": ".demo.run",
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
