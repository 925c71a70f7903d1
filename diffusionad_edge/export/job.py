"""Stage 1 of ``dae export``: the export job. :func:`prepare` validates everything that can be validated
before minutes of work (the target and its precision, the threshold rule and data, the output folder)
and loads the checkpoint at the size it will be exported at; :class:`ExportJob` is what the later
stages share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..data.framing import Preprocessing, parse_input_size, preprocessing_of
from ..data.mvtec import MVTecCategory
from ..errors import ConfigError
from ..models.checkpoint_io import load_model
from ..models.detector import DiffusionAD
from ..paths import OutputPathError, check_apart, check_output_dir, written_by_dae
from ..runtime.backends.table import Backend, get_backend
from ..runtime.bundle import sha256
from ..runtime.thresholds import DEFAULT_RULE, check_rule
from .checks import DEFAULT_MAX_DROP, DEFAULT_MAX_MAP_DROP, MAP_METRICS
from .targets import TargetProfile, load_target


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


Log = Callable[[str], None]


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
