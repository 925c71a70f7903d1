"""Stage 2 of ``dae export``: the artefact. The fixed-step graph exported to ONNX (checked, simplified)
and the backend's converter run on it (``export/converters``: ONNX FP32 / Q/DQ INT8, OpenVINO IR
FP32 / FP16 / NNCF INT8, or the ONNX a TensorRT device builds from), into the staging folder; and the
runtime's runner for what was built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.framing import Preprocessing
from ..data.mvtec import load_test_arrays
from ..quantize.calibration import CalibrationSet, from_manifest, from_training_images
from ..runtime.backends.onnxruntime import OnnxRuntimeRunner
from ..runtime.backends.runner import Runner
from ..runtime.backends.table import make_runner
from .converters import ConvertInputs, converter_for
from .held_out import check_set
from .job import ExportJob, ExportOptions
from .onnx_export import OPSET, export_onnx


@dataclass
class Artefact:
    """What :func:`build_artefact` wrote into the staging folder."""

    staging: Path
    fp32_onnx: Path
    files: list[Path]
    entry: str
    calibration: CalibrationSet | None
    check_images: np.ndarray
    check_labels: np.ndarray
    check_masks: np.ndarray


def _calibration(opts: ExportOptions, payload: dict[str, Any], prep: Preprocessing) -> CalibrationSet:
    if opts.calibration is not None:
        return from_manifest(opts.calibration, prep)
    data = payload.get("data", {})
    return from_training_images(data.get("root", ""), data.get("train_images", []), prep, opts.calibration_count)


def _auroc_validation(images: np.ndarray, labels: np.ndarray, batch: int):
    """(items, validation_fn) for NNCF's accuracy control: image AUROC of a compiled model."""
    from ..evaluate.metrics import image_auroc

    items = [(images[i : i + batch], labels[i : i + batch]) for i in range(0, len(images) - batch + 1, batch)]

    def validation_fn(compiled_model, data) -> float:
        scores, labs = [], []
        for x, y in data:
            scores.append(np.asarray(compiled_model(x)["score"]).ravel())
            labs.append(np.asarray(y).ravel())
        return float(image_auroc(np.concatenate(labs), np.concatenate(scores)))

    return items, validation_fn


def build_artefact(job: ExportJob, staging: Path) -> Artefact:
    """Stage 2: the FP32 ONNX (in a scratch folder) and the backend's model files (in ``staging``)."""
    opts, hw = job.opts, job.hw
    scratch = staging / ".work"
    scratch.mkdir()
    job.log(f"exporting {job.model.config.preset} at {hw[0]}x{hw[1]} (HxW) to ONNX (opset {OPSET}) ...")
    fp32_onnx = export_onnx(job.model, scratch / "fp32.onnx", batch=job.batch, noise_seed=opts.noise_seed)
    calib = _calibration(opts, job.payload, job.preprocessing) if job.precision == "int8" else None
    images, labels, masks = check_set(job.payload, job.preprocessing)
    validation = None
    if opts.accuracy_aware and job.eval_ds is not None:
        ev_imgs, ev_labels, _ = load_test_arrays(job.eval_ds, hw, opts.eval_limit)
        validation = _auroc_validation(ev_imgs, ev_labels, job.batch)
    inputs = ConvertInputs(fp32_onnx, staging, job.precision, job.batch, calib.images if calib else None, validation,
                           job.max_drop if opts.accuracy_aware else None, job.log)
    files, entry = converter_for(job.backend)(inputs)
    return Artefact(staging, fp32_onnx, files, entry, calib, images, labels, masks)


def artefact_runner(job: ExportJob, art: Artefact, checks: dict[str, Any]) -> Runner:
    """The runtime's runner for what was built (for TensorRT: the ONNX the device builds from, in
    ONNX Runtime; the engine itself is built and checked on the device)."""
    if job.backend.name == "tensorrt":
        fp16_note = (" (FP16 tensors, rounded at every op boundary; ops without a CPU FP16 kernel compute "
                     "in FP32 between casts)") if job.precision == "fp16" else ""
        checks["artifact_runs_as"] = (f"onnxruntime-cpu on the very ONNX the device builds from{fp16_note}; "
                                      "the TensorRT engine itself is built and checked on the device")
        return OnnxRuntimeRunner(art.files[0], fixed_batch=job.batch)
    meta_stub = {"backend": job.backend.name, "entry": art.entry, "input": {"batch": job.batch, "size": job.hw[0], "width": job.hw[1]},
                 "runtime_options": job.runtime_options(), "target": job.profile.to_dict()}
    return make_runner(art.staging, meta_stub)
