"""``dae export``: checkpoint -> checked bundle for a target profile, in stages, each one function:

1. :func:`prepare` — validate the options against the target and the table of backends, load the
   checkpoint (``models/checkpoint_io``) and resize it to the target's input size;
2. :func:`build_artefact` — export the fixed-step graph to ONNX (checked, simplified) and run the
   backend's converter (``export/converters``): ONNX (FP32 / Q/DQ INT8), OpenVINO IR (FP32 / FP16 /
   NNCF INT8), or the ONNX a TensorRT device builds from;
3. :func:`choose_thresholds` — decision thresholds chosen with the artefact itself (by the held-out
   normals, synthetic anomalies as a sanity check; or by the user's labelled images);
4. :func:`run_checks` — FP32 parity with PyTorch, the artefact against PyTorch (decisions at the
   chosen threshold), the TensorRT parser lint, accuracy deltas against FP32 on an evaluation set
   (image AUROC, pixel AUROC, pixel AP, AUPRO: each with its limit, :func:`accuracy_gate`);
5. :func:`build_metadata` — ``metadata.json``;
6. :func:`commit` — move the finished folder into place. A failed check removes everything unless
   ``keep_failed``; an interrupted export leaves only a hidden partial folder that is deleted.

The artefact is run through the runtime (:mod:`diffusionad_edge.runtime`): the exporter uses it only to
check what it built.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__, interrupts
from ..data.framing import Preprocessing, parse_input_size, predict_frames, preprocessing_of
from ..data.mvtec import MVTecCategory, load_test_arrays
from ..data.preprocess import read_image, to_chw_float
from ..data.synthesis import AnomalySynthesizer
from ..errors import ConfigError, DaeError
from ..evaluate.evaluator import evaluate
from ..files import replace_dir
from ..models.checkpoint_io import load_model
from ..models.complexity import measure_complexity
from ..models.detector import DiffusionAD
from ..paths import OutputPathError, check_apart, check_output_dir, written_by_dae
from ..quantize.calibration import CalibrationSet, from_manifest, from_training_images
from ..runtime.backends.onnxruntime import OnnxRuntimeRunner
from ..runtime.backends.runner import Runner, RunnerOutput, describe_runtime_precision, runner_predict_fn
from ..runtime.backends.table import Backend, get_backend, make_runner, package_versions
from ..runtime.backends.torch import TorchRunner
from ..runtime.bundle import FORMAT, FORMAT_VERSION, sha256, write_metadata
from ..runtime.thresholds import DEFAULT_RULE, Thresholds, check_rule
from .checks import CHECK_IMAGES, DEFAULT_MAX_DROP, DEFAULT_MAX_MAP_DROP, FP32_TOLERANCE, MAP_METRICS, MAP_OPTIONS, METRIC_LABELS, THRESHOLD_NORMALS
from .converters import ConvertInputs, converter_for
from .graph import NOISE_CONTRACT
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
    #: N, "N", "HxW" or (H, W); None: the target's size (a rectangular or tiled model: its own)
    input_size: int | str | tuple[int, int] | None = None
    calibration: Path | None = None
    calibration_count: int = 64
    eval_data: Path | None = None
    eval_category: str | None = None
    eval_limit: int | None = None
    # Labelled images (MVTec layout: test/good, test/<defect>, ground_truth) to choose the decision
    # thresholds on, instead of held-out normals + synthetic anomalies.
    threshold_data: Path | None = None
    threshold_category: str | None = None
    # Target rate of good parts rejected; None: the threshold rule places the OK/NG threshold.
    false_alarm_rate: float | None = None
    # "normals" (above the highest normal by a margin in logit space) or "best-f1" (runtime/thresholds.py)
    threshold_rule: str = DEFAULT_RULE
    # normals rule: the margin in standard deviations of the normal logits (None: the default)
    threshold_margin: float | None = None
    max_drop: float | None = None
    # Largest drop against FP32 of each map metric a reduced precision may cause (None: DEFAULT_MAX_MAP_DROP)
    max_pixel_auroc_drop: float | None = None
    max_pixel_ap_drop: float | None = None
    max_aupro_drop: float | None = None
    accuracy_aware: bool = False
    keep_failed: bool = False
    overwrite: bool = False
    noise_seed: int = 0
    #: smoothing of the map baked into the graph (pixels); None: the checkpoint's own ``map_sigma``
    map_sigma: float | None = None


@dataclass
class ExportResult:
    bundle: Path
    metadata: dict[str, Any]
    passed: bool
    failures: list[str] = field(default_factory=list)


Log = Callable[[str], None]


def _versions() -> dict[str, str | None]:
    import platform

    return {"diffusionad_edge": __version__, "python": platform.python_version(), **package_versions()}


def _resized_model(model: DiffusionAD, hw: tuple[int, int]) -> DiffusionAD:
    """The same weights at another (fixed) input size: the networks are fully convolutional."""
    if hw == model.config.input_hw:
        return model
    resized = DiffusionAD(model.config.with_input(hw).validate())
    resized.load_state_dict(model.state_dict())
    return resized.eval()


def _hw_text(hw: tuple[int, int]) -> str:
    return f"{hw[0]}" if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


def _model_at_export_size(model: DiffusionAD, input_size: int | str | tuple[int, int] | None, profile: TargetProfile, log: Log,
                          prep: Preprocessing | None = None) -> tuple[DiffusionAD, tuple[int, int]]:
    """The model at the size it will be exported at: ``--input-size``, else the target's (a rectangular
    or tiled model keeps its own: the target's square would squash it again). A model that cannot run
    at the target's size (its attention sits at fixed pixel resolutions, or the size is not a multiple
    of its divisor) is exported at its own size with a note; an explicit ``--input-size`` it cannot run
    at is refused, in one line."""
    trained = model.config.input_hw
    tiled = prep is not None and prep.tile is not None
    if input_size is not None:
        hw = tuple(input_size) if isinstance(input_size, (tuple, list)) else parse_input_size(input_size)
        if tiled and hw != trained:
            raise ConfigError(f"--input-size {_hw_text(hw)}: this model is tiled, its input is its {prep.tile}x{prep.tile} tile; omit --input-size")
    elif tiled or trained[0] != trained[1]:
        hw = trained
    else:
        hw = (profile.input_size, profile.input_size)
    if hw == trained:
        return model, hw
    try:
        resized = _resized_model(model, hw)
    except (RuntimeError, ConfigError) as exc:
        why = str(exc).splitlines()[0] if isinstance(exc, ConfigError) else "its attention layers sit at fixed resolutions in pixels"
        if input_size is not None:
            raise ConfigError(f"--input-size {_hw_text(hw)}: this {model.config.preset!r} model (trained at {_hw_text(trained)} px) cannot be "
                              f"exported at {_hw_text(hw)} px ({why}); use --input-size {_hw_text(trained)}, or omit it") from None
        log(f"note: exporting at the model's own input size {_hw_text(trained)}, not the target's {_hw_text(hw)} "
            f"(this {model.config.preset!r} model cannot run at {_hw_text(hw)} px; --input-size to choose)")
        return model, trained
    if input_size is None:
        log(f"note: exporting at the target's input size {_hw_text(hw)} (the model was trained at {_hw_text(trained)})")
    return resized, hw


def _held_out(payload: dict[str, Any], limit: int = CHECK_IMAGES) -> tuple[Path, list[str]]:
    """The checkpoint's data folder and (at most ``limit``) held-out image names; a checkpoint without
    held-out images gives its first training images (for the parity check only: they were trained on)."""
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
    return root, names[:limit]


def _check_set(payload: dict[str, Any], prep: Preprocessing | int | tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out normal images and synthetic anomalies made from them: images, labels, masks. Network
    inputs: each image through the model's preprocessing (its ROI; one random tile of a tiled model)."""
    prep = prep if isinstance(prep, Preprocessing) else Preprocessing.plain(prep)
    root, names = _held_out(payload)
    view_rng = np.random.default_rng([seed, 4243])
    normals = [prep.view(prep.training_image(read_image(root / n)), view_rng) for n in names]
    train_cfg = payload.get("train_config", {})
    synth = AnomalySynthesizer(foreground_mode=train_cfg.get("foreground", "auto"))
    rng = np.random.default_rng([seed, 4242])
    anomalous = [synth.synthesize(img, rng) for img in normals]
    images = np.stack([to_chw_float(i) for i in normals] + [to_chw_float(a) for a, _ in anomalous])
    labels = np.r_[np.zeros(len(normals)), np.ones(len(anomalous))]
    masks = np.stack([np.zeros(prep.input_hw, np.float32)] * len(normals) + [m for _, m in anomalous])
    return images.astype(np.float32), labels, masks


def _extra_normals(payload: dict[str, Any], prep: Preprocessing, seed: int = 0) -> np.ndarray:
    """Network inputs of the held-out normals beyond the check set's (up to ``THRESHOLD_NORMALS`` in
    all): more normals for the thresholds, which they alone place. Empty when there are no more."""
    root, names = _held_out(payload, THRESHOLD_NORMALS)
    view_rng = np.random.default_rng([seed, 4243])
    views = [prep.view(prep.training_image(read_image(root / n)), view_rng) for n in names]  # same draws as _check_set
    extra = views[CHECK_IMAGES:]
    return np.stack([to_chw_float(v) for v in extra]).astype(np.float32) if extra else np.zeros((0, 3, *prep.input_hw), np.float32)


def _tiled_frames(payload: dict[str, Any], prep: Preprocessing, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Whole frames for a tiled model's thresholds (its score is a frame's, not a tile's): the held-out
    normals (up to ``THRESHOLD_NORMALS``), and copies of the first ``CHECK_IMAGES`` with a synthetic
    anomaly made on one random tile of their region. Returns the frames, their labels and their masks
    over the region (the ROI, or the whole frame)."""
    root, names = _held_out(payload, THRESHOLD_NORMALS)
    normals = [read_image(root / n) for n in names]
    train_cfg = payload.get("train_config", {})
    synth = AnomalySynthesizer(foreground_mode=train_cfg.get("foreground", "auto"))
    rng = np.random.default_rng([seed, 4244])
    frames, masks = list(normals), [np.zeros(prep.region(n).shape[:2], np.float32) for n in normals]
    t = prep.tile
    for img in normals[:CHECK_IMAGES]:
        frame = img.copy()
        region = prep.region(frame)  # a view: writing into it writes into the frame
        y, x = int(rng.integers(region.shape[0] - t + 1)), int(rng.integers(region.shape[1] - t + 1))
        bad, m = synth.synthesize(np.ascontiguousarray(region[y : y + t, x : x + t]), rng)
        mask = np.zeros(region.shape[:2], np.float32)
        region[y : y + t, x : x + t], mask[y : y + t, x : x + t] = bad, m
        frames.append(frame)
        masks.append(mask)
    return frames, np.r_[np.zeros(len(normals)), np.ones(len(frames) - len(normals))], masks


def _compare(ref: RunnerOutput, got: RunnerOutput, threshold: float | None) -> dict[str, float]:
    out = {
        "map_max_abs_error": float(np.abs(ref.anomaly_map - got.anomaly_map).max()),
        "score_max_abs_error": float(np.abs(ref.score - got.score).max()),
    }
    if threshold is not None:
        out["decision_agreement"] = float(np.mean((ref.score >= threshold) == (got.score >= threshold)))
    return out


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


def _cached(cache: dict[tuple, Any], key: tuple, compute: Callable[[], Any]) -> Any:
    """``cache[key]``, computed on first use."""
    if key not in cache:
        cache[key] = compute()
    return cache[key]



@dataclass
class ExportJob:
    """Everything the stages share: the validated options, the target, the model at its export size."""

    opts: ExportOptions
    profile: TargetProfile
    backend: Backend
    precision: str
    model: DiffusionAD
    payload: dict[str, Any]
    checkpoint_sha: str
    hw: tuple[int, int]
    preprocessing: Preprocessing
    max_drop: float
    #: largest drop against FP32 of each map metric (MAP_METRICS) a reduced precision may cause
    max_map_drops: dict[str, float]
    eval_ds: MVTecCategory | None
    threshold_ds: MVTecCategory | None
    log: Log
    cache: dict[tuple, Any]

    @property
    def batch(self) -> int:
        return self.profile.batch

    @property
    def reference_key(self) -> tuple:
        return (self.checkpoint_sha, self.opts.noise_seed, self.hw, self.batch, str(self.preprocessing.to_dict()))

    def runtime_options(self) -> dict[str, Any]:
        return self.backend.runtime_options(self.profile.device, dict(self.profile.options), self.precision)


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


def prepare(opts: ExportOptions, log: Log, cache: dict[tuple, Any]) -> ExportJob:
    """Stage 1: validate everything that can be validated before minutes of work; load the model."""
    profile = load_target(opts.target)
    precision = profile.check_precision(opts.precision)
    check_rule(opts.threshold_rule, opts.threshold_margin, opts.false_alarm_rate)
    threshold_ds = MVTecCategory(opts.threshold_data, opts.threshold_category) if opts.threshold_data is not None else None
    if threshold_ds is not None:
        _check_threshold_data(threshold_ds, opts.threshold_rule)
    max_map_drops = {m: DEFAULT_MAX_MAP_DROP if v is None else float(v) for m, v in
                     zip(MAP_METRICS, (opts.max_pixel_auroc_drop, opts.max_pixel_ap_drop, opts.max_aupro_drop))}
    backend = get_backend(profile.backend)
    out_dir = Path(opts.out_dir)
    check_output_dir(out_dir, "bundle folder (--out)")
    check_apart(out_dir, "bundle folder (--out)", [("the checkpoint", opts.checkpoint), ("the calibration manifest", opts.calibration),
                                                   ("the evaluation data", opts.eval_data), ("the threshold data", opts.threshold_data)])
    if out_dir.exists() and any(out_dir.iterdir()) and not opts.overwrite:
        raise ConfigError(f"output folder {out_dir} exists and is not empty; pass --overwrite or choose another --out")
    if out_dir.exists() and any(out_dir.iterdir()) and not written_by_dae(out_dir):
        # --overwrite replaces the whole folder: never one that is not a bundle (a home folder, a dataset)
        raise OutputPathError(f"bundle folder (--out) {out_dir} is not empty and is not a bundle dae wrote; --overwrite "
                              "replaces only bundles; choose another --out")
    model, payload = load_model(opts.checkpoint)
    if opts.map_sigma is not None:
        model.set_map_sigma(opts.map_sigma)
    prep = preprocessing_of(model.config, payload)
    model, hw = _model_at_export_size(model, opts.input_size, profile, log, prep)
    prep = Preprocessing(*hw, prep.roi, prep.tile, prep.overlap, prep.blend, prep.top_k)
    eval_ds = MVTecCategory(opts.eval_data, opts.eval_category) if opts.eval_data is not None else None
    if opts.accuracy_aware and (eval_ds is None or profile.backend != "openvino" or precision != "int8"):
        raise ConfigError("--accuracy-aware needs an OpenVINO INT8 export and --eval-data")
    if opts.accuracy_aware and not prep.is_plain:
        raise ConfigError("--accuracy-aware is not available for models with a ROI or tiles (its metric runs on whole inputs)")
    return ExportJob(opts, profile, backend, precision, model, payload, sha256(opts.checkpoint), hw, prep,
                     DEFAULT_MAX_DROP if opts.max_drop is None else opts.max_drop, max_map_drops, eval_ds, threshold_ds, log, cache)


def _check_threshold_data(ds: MVTecCategory, rule: str) -> None:
    """``--threshold-data`` has what the rule needs, or one line before any export work: good images
    (they place the thresholds); defective ones too for ``best-f1``."""
    good = sum(not s.is_anomalous for s in ds.test_samples)
    if not good:
        raise ConfigError(f"--threshold-data {ds.path} has no good images (test/good): the thresholds are placed by good parts")
    if rule == "best-f1" and good == len(ds.test_samples):
        raise ConfigError(f"--threshold-data {ds.path} needs both good and defective test images for --threshold-rule best-f1")


def build_artefact(job: ExportJob, staging: Path) -> Artefact:
    """Stage 2: the FP32 ONNX (in a scratch folder) and the backend's model files (in ``staging``)."""
    opts, hw = job.opts, job.hw
    scratch = staging / ".work"
    scratch.mkdir()
    job.log(f"exporting {job.model.config.preset} at {hw[0]}x{hw[1]} (HxW) to ONNX (opset {OPSET}) ...")
    fp32_onnx = export_onnx(job.model, scratch / "fp32.onnx", batch=job.batch, noise_seed=opts.noise_seed)
    calib = _calibration(opts, job.payload, job.preprocessing) if job.precision == "int8" else None
    images, labels, masks = _check_set(job.payload, job.preprocessing)
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


def choose_thresholds(job: ExportJob, runner: Runner, art: Artefact, check_pred: RunnerOutput) -> Thresholds:
    """Stage 3: decision thresholds chosen with the artefact itself: on the user's labelled images when
    given (``--threshold-data``), else on the held-out normals (synthetic anomalies as a sanity check)."""
    ds, prep = job.threshold_ds, job.preprocessing
    if ds is None:
        return held_out_thresholds(job.payload, prep, runner, job.opts.threshold_rule, job.opts.threshold_margin,
                                   job.opts.false_alarm_rate, check=(art.check_labels, art.check_masks, check_pred))
    if prep.is_plain:
        images, labels, masks = load_test_arrays(ds, job.hw)
        pred = runner.infer(images)
    else:
        from ..data.mvtec import read_test_sample

        loaded = [read_test_sample(s) for s in ds.test_samples]
        labels = np.array([s.is_anomalous for s in ds.test_samples], np.float64)
        pred, masks = _framed(prep, runner, [i for i, _ in loaded], [prep.region(m) for _, m in loaded])
    normal, defective = labels == 0, labels == 1
    source = f"{int(normal.sum())} good + {int(defective.sum())} defective labelled images in {ds.path}"
    return derive_thresholds(pred.score[normal], pred.score[defective], pred.anomaly_map[normal], pred.anomaly_map[defective],
                             masks[defective], source, job.opts.false_alarm_rate, job.opts.threshold_rule, job.opts.threshold_margin)


def held_out_thresholds(payload: dict[str, Any], prep: Preprocessing, runner: Runner, rule: str = DEFAULT_RULE,
                        margin_sd: float | None = None, false_alarm_rate: float | None = None,
                        check: tuple[np.ndarray, np.ndarray, RunnerOutput] | None = None) -> Thresholds:
    """The default thresholds of a checkpoint, as ``dae export`` places them, with ``runner`` (the
    artefact, or any runner of the same model: ``benchmarks/decisions.py`` uses PyTorch): the
    checkpoint's held-out normals (up to ``THRESHOLD_NORMALS``) place them, synthetic anomalies made
    from the first ``CHECK_IMAGES`` give the expected miss rate. ``check``: the check set's labels,
    masks and ``runner``'s outputs on it, when already computed (the export's parity check)."""
    if prep.tile is not None:
        # A tiled bundle scores whole frames (top-k of the blended map): its thresholds are chosen on frames.
        frames, labels, frame_masks = _tiled_frames(payload, prep)
        pred, masks = _framed(prep, runner, frames, frame_masks)
        source = (f"{int((labels == 0).sum())} held-out normal frames + {int((labels == 1).sum())} with a synthetic anomaly "
                  "on one tile, scored as whole tiled frames")
    else:
        if check is None:
            images, labels, masks = _check_set(payload, prep)
            pred = runner.infer(images)
        else:
            labels, masks, pred = check
        extra = _extra_normals(payload, prep)
        if len(extra):  # more normals than the check set holds: they place the thresholds too
            more = runner.infer(extra)
            pred = RunnerOutput(np.concatenate([pred.anomaly_map, more.anomaly_map]), np.concatenate([pred.score, more.score]))
            labels = np.r_[labels, np.zeros(len(extra))]
            masks = np.concatenate([masks, np.zeros((len(extra), *masks.shape[1:]), masks.dtype)])
        source = (f"{int((labels == 0).sum())} held-out normal images; {int((labels == 1).sum())} synthetic anomalies made "
                  "from them as a check")
    normal, defective = labels == 0, labels == 1
    return derive_thresholds(pred.score[normal], pred.score[defective], pred.anomaly_map[normal], pred.anomaly_map[defective],
                             masks[defective], source, false_alarm_rate, rule, margin_sd)


def _framed(prep: Preprocessing, runner: Runner, frames: list[np.ndarray], masks: list[np.ndarray]) -> tuple[RunnerOutput, np.ndarray]:
    """Frames scored through the preprocessing (ROI, tiles); maps and masks flattened per frame into
    one row each when their sizes differ (the thresholds only need their pixels)."""
    maps, scores = [], []
    for f in frames:  # one frame (all its tiles) per runner call
        m, s = predict_frames(prep, runner_predict_fn(runner), [f])
        maps.append(m[0])
        scores.append(s[0])
    if len({m.shape for m in maps}) == 1 and len({m.shape for m in masks}) == 1 and maps[0].shape == masks[0].shape:
        return RunnerOutput(np.stack(maps), np.asarray(scores, np.float32)), np.stack(masks)
    from ..data.preprocess import resize_mask

    masks = [resize_mask(mk, m.shape) for mk, m in zip(masks, maps)]
    width = max(m.size for m in maps)
    pad = lambda a: np.r_[a.ravel(), np.zeros(width - a.size, np.float32)][None]  # noqa: E731
    return RunnerOutput(np.concatenate([pad(m) for m in maps]), np.asarray(scores, np.float32)), np.concatenate([pad(m) for m in masks])


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


def build_metadata(job: ExportJob, art: Artefact, thresholds: Thresholds, checks: dict[str, Any]) -> dict[str, Any]:
    """Stage 5: ``metadata.json``: what the bundle is, how to run it, and what was checked."""
    opts, model, (h, w), batch = job.opts, job.model, job.hw, job.batch
    complexity = measure_complexity(model)
    d = model.config.diffusion
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "checkpoint": {"path": str(opts.checkpoint), "sha256": job.checkpoint_sha, "step": job.payload.get("step")},
        "preset": model.config.preset, "model_config": model.config.to_dict(),
        # At the exported input size, for GFLOP/s in `dae bench` without the checkpoint.
        "complexity": {"gflop_per_image": complexity.one_step_gflop,
                       "params_m": (complexity.denoiser_params + complexity.segmenter_params) / 1e6},
        "inference": {"t_s": d.t_s, "t_b": d.t_b, "guidance_w": d.guidance_w, "top_k": d.top_k,
                      "noise": NOISE_CONTRACT, "noise_seed": opts.noise_seed},
        # "size" is the height (and the side of a square input); "width" the width.
        "input": {"name": "image", "size": h, "width": w, "batch": batch, "layout": "NCHW", "dtype": "float32",
                  "color": "RGB", "scale": "pixel / 255", "mean": None, "std": None,
                  "resize": ("square resize" if h == w else f"resize to {h}x{w} (HxW), aspect not kept")
                            + ", area when shrinking, bilinear when enlarging"},
        # ROI and tiles: how a frame becomes the graph's inputs and its maps one map (data/framing.py).
        "preprocessing": job.preprocessing.to_dict(),
        "outputs": {"anomaly_map": f"({batch}, 1, {h}, {w}) probabilities", "score": f"({batch},) mean of top-{d.top_k} map pixels"},
        "target": job.profile.to_dict(), "backend": job.backend.name, "precision": job.precision,
        "entry": art.entry, "runtime_options": job.runtime_options(),
        "files": {f.name: sha256(f) for f in art.files},
        "calibration": art.calibration.summary() if art.calibration else None,
        "thresholds": thresholds.to_dict(),
        "checks": checks,
    }
    if job.backend.name == "tensorrt":
        from .tensorrt_plan import build_plan

        meta["tensorrt"] = build_plan(job.profile, job.precision, art.entry, batch, (h, w))
    return meta


def commit(job: ExportJob, art: Artefact, meta: dict[str, Any]) -> ExportResult:
    """Stage 6: write ``metadata.json`` and move the bundle into place (or refuse a failed one)."""
    failures = meta["checks"]["failures"]
    shutil.rmtree(art.staging / ".work", ignore_errors=True)
    meta = write_metadata(art.staging, meta)
    if failures and not job.opts.keep_failed:
        raise ExportCheckFailed("export checks failed (nothing written; --keep-failed keeps the bundle): " + "; ".join(failures))
    out_dir = Path(job.opts.out_dir)
    with interrupts.critical():  # Ctrl-C never leaves half a swap
        replace_dir(art.staging, out_dir)
        interrupts.set_message(f"interrupted after the bundle was written: {out_dir}")
    return ExportResult(out_dir, meta, not failures, failures)


def export_bundle(opts: ExportOptions, log: Log = print, reference_cache: dict[tuple, Any] | None = None) -> ExportResult:
    """Run the whole export; raises :class:`ExportCheckFailed` when a check fails (after writing
    the bundle only if ``keep_failed``).

    ``reference_cache``: pass the same dict to several exports of one checkpoint (``dae demo``) and
    the FP32 references (PyTorch outputs, FP32 ONNX outputs and metrics) are computed once. They
    are keyed by the checkpoint's hash, noise seed, input size, batch and evaluation set.
    """
    job = prepare(opts, log, reference_cache if reference_cache is not None else {})
    interrupts.check()
    out_dir = Path(opts.out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir, log)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-{os.getpid()}-", dir=out_dir.parent))
    try:
        with interrupts.cleanup_on_interrupt(lambda: shutil.rmtree(staging, ignore_errors=True)):
            art = build_artefact(job, staging)
            interrupts.check()
            checks: dict[str, Any] = {"tolerance_fp32": FP32_TOLERANCE, "max_drop": job.max_drop, "max_map_drops": job.max_map_drops,
                                      "check_images": int(len(art.check_images))}
            with artefact_runner(job, art, checks) as runner:
                art_pred = runner.infer(art.check_images)
                thresholds = choose_thresholds(job, runner, art, art_pred)
                interrupts.check()
                failures = run_checks(job, art, runner, art_pred, thresholds, checks)
            checks["passed"] = not failures
            checks["failures"] = failures
            meta = build_metadata(job, art, thresholds, checks)
            interrupts.check()
            return commit(job, art, meta)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


_STAGING = re.compile(r"\.partial-(\d+)-[^/]*$|\.partial-[^/-]*$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(out_dir: Path, log: Log = print) -> list[Path]:
    """Remove hidden staging folders (``.<name>.partial-<pid>-*``) that a killed export to ``out_dir``
    left behind: those whose process is gone (and those of older versions, which carry no process id).
    A concurrent export's folder (its process alive) is left alone."""
    removed = []
    for p in Path(out_dir).parent.glob(f".{glob.escape(Path(out_dir).name)}.partial-*"):
        m = _STAGING.search(p.name)
        if not p.is_dir() or m is None or (m.group(1) and _alive(int(m.group(1)))):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    if removed:
        log(f"removed {len(removed)} stale staging folder(s) of an interrupted export: {', '.join(p.name for p in removed)}")
    return removed
