"""Stage 4 of ``dae export``: the checks an artefact must pass before it is called good (the bars
are in ``checks.py``). FP32 parity of the ONNX with PyTorch, the artefact against PyTorch (decisions
at the chosen threshold), the TensorRT parser lint, and the accuracy gate: each metric's drop against
FP32 on an evaluation set within its limit (:func:`accuracy_gate`)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..evaluate.evaluator import evaluate
from ..runtime.backends.onnxruntime import OnnxRuntimeRunner
from ..runtime.backends.runner import Runner, RunnerOutput, describe_runtime_precision
from ..runtime.backends.torch import TorchRunner
from ..runtime.thresholds import Thresholds
from .artefact import Artefact
from .checks import FP32_TOLERANCE, MAP_OPTIONS, METRIC_LABELS
from .job import ExportJob


def _compare(ref: RunnerOutput, got: RunnerOutput, threshold: float | None) -> dict[str, float]:
    out = {
        "map_max_abs_error": float(np.abs(ref.anomaly_map - got.anomaly_map).max()),
        "score_max_abs_error": float(np.abs(ref.score - got.score).max()),
    }
    if threshold is not None:
        out["decision_agreement"] = float(np.mean((ref.score >= threshold) == (got.score >= threshold)))
    return out


def _cached(cache: dict[tuple, Any], key: tuple, compute: Callable[[], Any]) -> Any:
    """``cache[key]``, computed on first use."""
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def run_checks(job: ExportJob, art: Artefact, runner: Runner, art_pred: RunnerOutput, thresholds: Thresholds,
               checks: dict[str, Any]) -> list[str]:
    """Stage 4: parity and accuracy checks; fills ``checks`` and returns the failures."""
    failures: list[str] = []
    key = job.reference_key
    if job.backend.name == "tensorrt":
        from .tensorrt_lint import lint_onnx_for_tensorrt

        # What TensorRT's ONNX parser would refuse is found here, not on the device.
        lint = lint_onnx_for_tensorrt(art.files[0])
        checks["tensorrt_onnx_lint"] = {"against": "onnx-tensorrt operator support matrix (TensorRT 10)", "problems": lint}
        failures += [f"TensorRT ONNX lint: {problem}" for problem in lint]
    job.log("checking parity with PyTorch ...")
    with TorchRunner(job.model, noise_seed=job.opts.noise_seed, fixed_batch=1) as torch_runner:
        reference = _cached(job.cache, ("torch",) + key, lambda: torch_runner.infer(art.check_images))
    with OnnxRuntimeRunner(art.fp32_onnx, fixed_batch=job.batch) as fp32_runner:
        fp32_pred = _cached(job.cache, ("fp32",) + key, lambda: fp32_runner.infer(art.check_images))
        checks["fp32_onnx_vs_pytorch"] = _compare(reference, fp32_pred, thresholds.image)
        checks["artifact_vs_pytorch"] = _compare(reference, art_pred, thresholds.image)
        # An INT8 model still runs its unquantized ops in a float precision: say which.
        checks["runtime_precision"] = describe_runtime_precision(job.precision, runner.runtime_precision)
        for k in ("map_max_abs_error", "score_max_abs_error"):
            if checks["fp32_onnx_vs_pytorch"][k] > FP32_TOLERANCE:
                failures.append(f"FP32 ONNX {k} {checks['fp32_onnx_vs_pytorch'][k]:.2e} > {FP32_TOLERANCE}")
            if job.precision == "fp32" and checks["artifact_vs_pytorch"][k] > FP32_TOLERANCE:
                failures.append(f"FP32 artifact {k} {checks['artifact_vs_pytorch'][k]:.2e} > {FP32_TOLERANCE}")
        if job.eval_ds is not None:
            failures += _accuracy_check(job, fp32_runner, runner, checks)
    return failures


def accuracy_gate(deltas: dict[str, float], precision: str, max_drop: float, max_map_drops: dict[str, float]) -> list[str]:
    """The accuracy gate of a reduced precision: one failure per metric whose drop against FP32 exceeds
    its limit (image AUROC: ``max_drop``; pixel AUROC, pixel AP, AUPRO: ``max_map_drops``), naming the
    metric, the drop and the option that sets the limit. FP32 artefacts are held to parity instead."""
    if precision == "fp32":
        return []
    limits = {"image_auroc": (max_drop, "--max-drop"), **{m: (v, MAP_OPTIONS[m]) for m, v in max_map_drops.items()}}
    failures = []
    for metric, (limit, option) in limits.items():
        delta = deltas.get(metric)
        if delta is not None and np.isfinite(delta) and -delta > limit:
            failures.append(f"{precision} {METRIC_LABELS[metric]} drop {-delta:.4f} > {option} {limit:g}")
    return failures


def _accuracy_check(job: ExportJob, fp32_runner: Runner, runner: Runner, checks: dict[str, Any]) -> list[str]:
    ds, limit, batch = job.eval_ds, job.opts.eval_limit, max(job.batch, 8)
    job.log(f"measuring accuracy on {ds.path} (FP32 reference and {job.precision}) ...")
    metrics_key = ("metrics",) + job.reference_key + (str(ds.path.resolve()), limit)
    fp32_metrics = _cached(job.cache, metrics_key, lambda: evaluate(ds, fp32_runner, job.preprocessing, batch_size=batch, limit=limit))
    art_metrics = evaluate(ds, runner, job.preprocessing, batch_size=batch, limit=limit)
    deltas = {k: art_metrics.overall[k] - fp32_metrics.overall[k] for k in fp32_metrics.overall}
    checks["accuracy"] = {"dataset": str(ds.path), "limit": limit, "fp32": fp32_metrics.overall,
                          "artifact": art_metrics.overall, "delta": deltas,
                          "max_drops": {"image_auroc": job.max_drop, **job.max_map_drops}}
    return accuracy_gate(deltas, job.precision, job.max_drop, job.max_map_drops)
