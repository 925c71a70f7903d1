"""``dae export``: checkpoint -> checked artifact bundle for a target profile.

1. rebuild the model, export the fixed-step graph to ONNX (checked, simplified);
2. produce the target's artifact: ONNX (FP32 / Q/DQ INT8), OpenVINO IR (FP32 / FP16 / NNCF INT8),
   or a TensorRT-ready ONNX plus build plan;
3. check it: FP32 parity with PyTorch, the artifact against PyTorch, thresholds from held-out
   normals, and accuracy deltas against FP32 on an evaluation set when one is given;
4. write ``metadata.json`` and move the finished folder into place. A failed check removes
   everything unless ``keep_failed``; an interrupted export leaves only a hidden partial folder
   that is deleted.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..config import ModelConfig
from ..data.mvtec import MVTecCategory, load_test_arrays
from ..data.preprocess import read_image, resize_image, to_chw_float
from ..data.synthesis import AnomalySynthesizer
from ..errors import ConfigError, DaeError
from ..evaluate.evaluator import evaluate
from ..evaluate.metrics import nan_to_none
from ..models.complexity import measure_complexity
from ..models.detector import DiffusionAD
from ..quantize.calibration import CalibrationSet, from_manifest, from_training_images
from ..runtime.runners import OnnxRuntimeRunner, Runner, describe_runtime_precision, runner_predict_fn
from ..train.checkpoint import load_model
from .bundle import FORMAT, FORMAT_VERSION, METADATA, make_runner, sha256
from .checks import CHECK_IMAGES, DEFAULT_MAX_DROP, FP32_TOLERANCE
from .graph import NOISE_CONTRACT, FixedStepDetector
from .onnx_export import OPSET, export_onnx
from .targets import TargetProfile, load_target
from .thresholds import derive_thresholds



class ExportCheckFailed(DaeError):
    exit_code = 3


@dataclass
class ExportOptions:
    checkpoint: Path
    target: str
    out_dir: Path
    precision: str | None = None
    input_size: int | None = None
    calibration: Path | None = None
    calibration_count: int = 64
    eval_data: Path | None = None
    eval_category: str | None = None
    eval_limit: int | None = None
    # Labelled images (MVTec layout: test/good, test/<defect>, ground_truth) to choose the decision
    # thresholds on, instead of held-out normals + synthetic anomalies.
    threshold_data: Path | None = None
    threshold_category: str | None = None
    max_drop: float | None = None
    accuracy_aware: bool = False
    keep_failed: bool = False
    overwrite: bool = False
    noise_seed: int = 0


@dataclass
class ExportResult:
    bundle: Path
    metadata: dict[str, Any]
    passed: bool
    failures: list[str] = field(default_factory=list)


Log = Callable[[str], None]


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"diffusionad_edge": __version__, "python": platform.python_version()}
    for pkg in ("torch", "onnx", "onnxruntime", "onnxslim", "openvino", "nncf"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _resized_model(model: DiffusionAD, size: int) -> DiffusionAD:
    """The same weights at another (fixed) input size: the networks are fully convolutional."""
    if size == model.config.image_size:
        return model
    cfg = ModelConfig.from_dict(copy.deepcopy(model.config.to_dict()))
    cfg.image_size = size
    resized = DiffusionAD(cfg.validate())
    resized.load_state_dict(model.state_dict())
    return resized.eval()


def _check_set(payload: dict[str, Any], size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out normal images and synthetic anomalies made from them: images, labels, masks."""
    data = payload.get("data", {})
    root = Path(data.get("root", ""))
    names = list(data.get("val_images") or [])
    if not names:
        names = list(data.get("train_images") or [])[:CHECK_IMAGES]
    if not names or not root.is_dir():
        raise ConfigError(
            f"the checkpoint's held-out images ({root}) are not available: thresholds and checks need them; "
            "export on the machine (or with the data folder) the model was trained with"
        )
    normals = [resize_image(read_image(root / n), size) for n in names[:CHECK_IMAGES]]
    train_cfg = payload.get("train_config", {})
    synth = AnomalySynthesizer(foreground_mode=train_cfg.get("foreground", "auto"))
    rng = np.random.default_rng([seed, 4242])
    anomalous = [synth.synthesize(img, rng) for img in normals]
    images = np.stack([to_chw_float(i) for i in normals] + [to_chw_float(a) for a, _ in anomalous])
    labels = np.r_[np.zeros(len(normals)), np.ones(len(anomalous))]
    masks = np.stack([np.zeros((size, size), np.float32)] * len(normals) + [m for _, m in anomalous])
    return images.astype(np.float32), labels, masks


def _torch_reference(graph: FixedStepDetector, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        maps, scores = [], []
        for i in range(len(images)):
            m, s = graph(torch.from_numpy(images[i : i + 1]))
            maps.append(m[:, 0].numpy())
            scores.append(s.numpy())
    return np.concatenate(maps), np.concatenate(scores)


def _compare(ref: tuple[np.ndarray, np.ndarray], got: Any, threshold: float | None) -> dict[str, float]:
    out = {
        "map_max_abs_error": float(np.abs(ref[0] - got.anomaly_map).max()),
        "score_max_abs_error": float(np.abs(ref[1] - got.score).max()),
    }
    if threshold is not None:
        out["decision_agreement"] = float(np.mean((ref[1] >= threshold) == (got.score >= threshold)))
    return out


def _calibration(opts: ExportOptions, payload: dict[str, Any], size: int) -> CalibrationSet:
    if opts.calibration is not None:
        return from_manifest(opts.calibration, size)
    data = payload.get("data", {})
    return from_training_images(data.get("root", ""), data.get("train_images", []), size, opts.calibration_count)


def _runtime_options(profile: TargetProfile, precision: str) -> dict[str, Any]:
    opts = dict(profile.options)
    if profile.backend == "openvino":
        config = {k: v for k, v in opts.items() if k.isupper()}
        if precision == "fp32" and profile.device == "CPU":
            # Without this hint OpenVINO runs an "FP32" model in bf16 on CPUs with AMX/AVX-512-BF16.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        return {"config": config}
    return opts


def _build_artifact(profile: TargetProfile, precision: str, fp32_onnx: Path, work: Path, calib: CalibrationSet | None,
                    batch: int, validation: tuple | None, max_drop: float | None, log: Log) -> tuple[list[Path], str]:
    """Write the target's model files into ``work``; returns (files, entry file name)."""
    if profile.backend in ("onnxruntime", "tensorrt"):
        target = work / "model.onnx"
        if precision == "int8":
            from ..quantize.onnxruntime_int8 import quantize_onnx_qdq

            log(f"quantizing to Q/DQ INT8 on {len(calib.images)} calibration images ...")
            quantize_onnx_qdq(fp32_onnx, target, calib.images, batch)
        elif precision == "fp16" and profile.backend == "tensorrt":
            from .onnx_fp16 import convert_onnx_fp16

            log("converting the graph to FP16 (TensorRT builds FP16 from the ONNX's own types) ...")
            convert_onnx_fp16(fp32_onnx, target)
        else:
            shutil.copyfile(fp32_onnx, target)
        return [target], target.name
    if profile.backend == "openvino":
        from ..quantize.openvino_int8 import convert_to_ir, quantize_ir_int8

        xml = work / "model.xml"
        if precision == "int8":
            if validation is not None and max_drop is not None:
                log(f"NNCF accuracy-aware INT8 (max image-AUROC drop {max_drop}) on {len(calib.images)} calibration images ...")
                quantize_ir_int8(fp32_onnx, xml, calib.images, batch, validation[0], validation[1], max_drop)
            else:
                log(f"NNCF INT8 post-training quantization on {len(calib.images)} calibration images ...")
                quantize_ir_int8(fp32_onnx, xml, calib.images, batch)
        else:
            convert_to_ir(fp32_onnx, xml, fp16=precision == "fp16")
        return [xml, xml.with_suffix(".bin")], xml.name
    raise ConfigError(f"backend {profile.backend!r} cannot be exported")


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


def export_bundle(opts: ExportOptions, log: Log = print, reference_cache: dict[tuple, Any] | None = None) -> ExportResult:
    """Run the whole export; raises :class:`ExportCheckFailed` when a check fails (after writing
    the bundle only if ``keep_failed``).

    ``reference_cache``: pass the same dict to several exports of one checkpoint (``dae demo``) and
    the FP32 references (PyTorch outputs, FP32 ONNX outputs and metrics) are computed once. They
    are keyed by the checkpoint's hash, noise seed, input size, batch and evaluation set.
    """
    profile = load_target(opts.target)
    precision = profile.check_precision(opts.precision)
    out_dir = Path(opts.out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not opts.overwrite:
        raise ConfigError(f"output folder {out_dir} exists and is not empty; pass --overwrite or choose another --out")
    max_drop = DEFAULT_MAX_DROP if opts.max_drop is None else opts.max_drop
    model, payload = load_model(opts.checkpoint)
    checkpoint_sha = sha256(opts.checkpoint)
    size = opts.input_size or profile.input_size
    if opts.input_size is None and size != model.config.image_size:
        log(f"note: exporting at the target's input size {size} (the model was trained at {model.config.image_size})")
    model = _resized_model(model, size)
    complexity = measure_complexity(model)
    batch = profile.batch
    eval_ds = MVTecCategory(opts.eval_data, opts.eval_category) if opts.eval_data is not None else None
    # Checked now, not after minutes of export work.
    threshold_ds = MVTecCategory(opts.threshold_data, opts.threshold_category) if opts.threshold_data is not None else None
    if opts.accuracy_aware and (eval_ds is None or profile.backend != "openvino" or precision != "int8"):
        raise ConfigError("--accuracy-aware needs an OpenVINO INT8 export and --eval-data")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        scratch = staging / ".work"
        scratch.mkdir()
        log(f"exporting {model.config.preset} at {size}x{size} to ONNX (opset {OPSET}) ...")
        fp32_onnx = export_onnx(model, scratch / "fp32.onnx", batch=batch, noise_seed=opts.noise_seed)
        graph = FixedStepDetector(model, opts.noise_seed).eval()

        calib = _calibration(opts, payload, size) if precision == "int8" else None
        check_images, check_labels, check_masks = _check_set(payload, size)
        validation = None
        if opts.accuracy_aware and eval_ds is not None:
            ev_imgs, ev_labels, _ = load_test_arrays(eval_ds, size, opts.eval_limit)
            validation = _auroc_validation(ev_imgs, ev_labels, batch)
        files, entry = _build_artifact(profile, precision, fp32_onnx, staging, calib, batch, validation,
                                       max_drop if opts.accuracy_aware else None, log)

        log("checking parity with PyTorch ...")
        cache = reference_cache if reference_cache is not None else {}
        ref_key = (checkpoint_sha, opts.noise_seed, size, batch)
        reference = _cached(cache, ("torch",) + ref_key, lambda: _torch_reference(graph, check_images))
        with OnnxRuntimeRunner(fp32_onnx, fixed_batch=batch) as fp32_runner:
            fp32_pred = _cached(cache, ("fp32",) + ref_key, lambda: fp32_runner.infer(check_images))
            meta_stub = {"backend": profile.backend, "entry": entry, "input": {"batch": batch, "size": size},
                         "runtime_options": _runtime_options(profile, precision), "target": profile.to_dict()}
            failures: list[str] = []
            checks: dict[str, Any] = {"tolerance_fp32": FP32_TOLERANCE, "max_drop": max_drop, "check_images": int(len(check_images))}
            if profile.backend == "tensorrt":
                from .tensorrt_lint import lint_onnx_for_tensorrt

                # What TensorRT's ONNX parser would refuse is found here, not on the device.
                lint = lint_onnx_for_tensorrt(files[0])
                checks["tensorrt_onnx_lint"] = {"against": "onnx-tensorrt operator support matrix (TensorRT 10)", "problems": lint}
                failures += [f"TensorRT ONNX lint: {problem}" for problem in lint]
                # The engine is built on the device; here the ONNX it will be built from is checked.
                artifact_runner: Runner = OnnxRuntimeRunner(files[0], fixed_batch=batch)
                fp16_note = (" (FP16 tensors, rounded at every op boundary; ops without a CPU FP16 kernel compute "
                             "in FP32 between casts)") if precision == "fp16" else ""
                checks["artifact_runs_as"] = (f"onnxruntime-cpu on the very ONNX the device builds from{fp16_note}; "
                                              "the TensorRT engine itself is built and checked on the device")
            else:
                artifact_runner = make_runner(staging, meta_stub)
            with artifact_runner:
                art_pred = artifact_runner.infer(check_images)
                thresholds = _thresholds(threshold_ds, artifact_runner, art_pred, check_labels, check_masks, size)
                checks["fp32_onnx_vs_pytorch"] = _compare(reference, fp32_pred, thresholds["image"])
                checks["artifact_vs_pytorch"] = _compare(reference, art_pred, thresholds["image"])
                float_ops = artifact_runner.runtime_precision
                # An INT8 model still runs its unquantized ops in a float precision: say which.
                checks["runtime_precision"] = describe_runtime_precision(precision, float_ops)
                for key in ("map_max_abs_error", "score_max_abs_error"):
                    if checks["fp32_onnx_vs_pytorch"][key] > FP32_TOLERANCE:
                        failures.append(f"FP32 ONNX {key} {checks['fp32_onnx_vs_pytorch'][key]:.2e} > {FP32_TOLERANCE}")
                    if precision == "fp32" and checks["artifact_vs_pytorch"][key] > FP32_TOLERANCE:
                        failures.append(f"FP32 artifact {key} {checks['artifact_vs_pytorch'][key]:.2e} > {FP32_TOLERANCE}")
                if eval_ds is not None:
                    log(f"measuring accuracy on {eval_ds.path} (FP32 reference and {precision}) ...")
                    metrics_key = ("metrics",) + ref_key + (str(eval_ds.path.resolve()), opts.eval_limit)
                    fp32_metrics = _cached(cache, metrics_key, lambda: evaluate(
                        eval_ds, runner_predict_fn(fp32_runner), size, batch_size=max(batch, 8), limit=opts.eval_limit))
                    art_metrics = evaluate(eval_ds, runner_predict_fn(artifact_runner), size, batch_size=max(batch, 8),
                                           limit=opts.eval_limit)
                    deltas = {k: art_metrics.overall[k] - fp32_metrics.overall[k] for k in fp32_metrics.overall}
                    checks["accuracy"] = {"dataset": str(eval_ds.path), "limit": opts.eval_limit, "fp32": fp32_metrics.overall,
                                          "artifact": art_metrics.overall, "delta": deltas}
                    if precision != "fp32" and -deltas["image_auroc"] > max_drop:
                        failures.append(f"{precision} image AUROC drop {-deltas['image_auroc']:.4f} > --max-drop {max_drop}")

        shutil.rmtree(scratch)
        checks["passed"] = not failures
        checks["failures"] = failures
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
            "checkpoint": {"path": str(opts.checkpoint), "sha256": checkpoint_sha, "step": payload.get("step")},
            "preset": model.config.preset, "model_config": model.config.to_dict(),
            # At the exported input size, for GFLOP/s in `dae bench` without the checkpoint.
            "complexity": {"gflop_per_image": complexity.one_step_gflop,
                           "params_m": (complexity.denoiser_params + complexity.segmenter_params) / 1e6},
            "inference": {"t_s": model.config.diffusion.t_s, "t_b": model.config.diffusion.t_b,
                          "guidance_w": model.config.diffusion.guidance_w, "top_k": model.config.diffusion.top_k,
                          "noise": NOISE_CONTRACT, "noise_seed": opts.noise_seed},
            "input": {"name": "image", "size": size, "batch": batch, "layout": "NCHW", "dtype": "float32",
                      "color": "RGB", "scale": "pixel / 255", "mean": None, "std": None,
                      "resize": "square resize, area when shrinking, bilinear when enlarging"},
            "outputs": {"anomaly_map": f"({batch}, 1, {size}, {size}) probabilities", "score": f"({batch},) mean of top-{model.config.diffusion.top_k} map pixels"},
            "target": profile.to_dict(), "backend": profile.backend, "precision": precision,
            "entry": entry, "runtime_options": _runtime_options(profile, precision),
            "files": {f.name: sha256(f) for f in files},
            "calibration": calib.summary() if calib else None,
            "thresholds": thresholds,
            "checks": checks,
        }
        if profile.backend == "tensorrt":
            from .tensorrt_plan import build_plan

            meta["tensorrt"] = build_plan(profile, precision, entry, batch, size)
        (staging / METADATA).write_text(json.dumps(nan_to_none(meta), indent=2, default=_json_default) + "\n")
        if failures and not opts.keep_failed:
            raise ExportCheckFailed("export checks failed (nothing written; --keep-failed keeps the bundle): " + "; ".join(failures))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        return ExportResult(out_dir, meta, not failures, failures)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _thresholds(ds: MVTecCategory | None, runner: Runner, check_pred: Any, check_labels: np.ndarray, check_masks: np.ndarray,
                size: int) -> dict[str, Any]:
    """Decision thresholds chosen with the artifact itself: on the user's labelled images when
    given (``ds``), else on the held-out normals and synthetic anomalies."""
    pred, labels, masks = check_pred, check_labels, check_masks
    if ds is not None:
        images, labels, masks = load_test_arrays(ds, size)
        if labels.min() == labels.max():
            raise ConfigError(f"--threshold-data {ds.path} needs both good and defective test images to choose a threshold")
        pred = runner.infer(images)
    normal, defective = labels == 0, labels == 1
    thresholds = derive_thresholds(pred.score[normal], pred.score[defective], pred.anomaly_map[normal],
                                   pred.anomaly_map[defective], masks[defective])
    if ds is not None:
        thresholds["source"] = f"{int(normal.sum())} good + {int(defective.sum())} defective labelled images in {ds.path}"
    return thresholds


def _cached(cache: dict[tuple, Any], key: tuple, compute: Callable[[], Any]) -> Any:
    """``cache[key]``, computed on first use."""
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
