"""``dae train`` as one call: :func:`train_model` trains one model, or a queue of categories, on this
process or as one rank of several (torchrun, ``dae train --nproc``).

What the options choose is settled first, before any process group or model exists
(:func:`plan_training`: the preset at the asked input size with its ROI/tiles, the preset's recipe
under the options given, the :class:`~diffusionad_edge.config.TrainConfig`, for a queue its folder and
categories); every mistake there is one error. Then the job runs: the device (this rank's under
torchrun), the process group, a :class:`~.trainer.Trainer` per category, the progress, the summary of
a queue. Rank 0 speaks for the job: the other ranks say nothing, and when the job stops for a
reason rank 0 reports (Ctrl-C, a user error) they raise :class:`RankStopped` with its exit code.

Nothing heavy is imported with this module (the CLI imports it for ``--help``); PyTorch is
imported when a job runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..config import RECOMMENDED_TRAINING, ModelConfig, TrainConfig, preset as get_preset
from ..data.builtin import open_dataset
from ..errors import ConfigError, DaeError
from ..paths import check_output_dir
from ..progress import Bars
from .queue import SUMMARY_NAME, CategoryOutcome, failure_error, is_queue, queue_categories, run_queue, write_summary

if TYPE_CHECKING:
    from ..data.framing import Preprocessing
    from .trainer import TrainResult

_DEFAULTS = TrainConfig()
#: the checkpoint of a run without ``out``
DEFAULT_OUT = Path("runs/model.pt")
#: the folder of a queue without ``out``
DEFAULT_QUEUE_OUT = Path("runs")
#: ``steps`` when only ``minutes`` limits a run: a step count no run reaches, so the minutes end it.
NO_STEP_LIMIT = 10**9

Log = Callable[[str], None]
#: called on rank 0 once a queue has ended: its outcomes and the summary file written
Summary = Callable[[list[CategoryOutcome], Path], None]


class OptionError(ConfigError):
    """A mistake in one option, named by ``option`` (``dae train`` reports it as that option's error)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class RankStopped(DaeError):
    """This process is one rank of several, and the job stopped for a reason rank 0 reports (Ctrl-C and
    where it saved, a user error, failed categories): this rank ends with the same exit code, silently."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"the training job stopped (rank 0 says why); exit code {exit_code}")
        self.exit_code = exit_code


@dataclass
class TrainOptions:
    """What ``dae train``'s options choose; ``None``: the preset's recipe (:data:`RECOMMENDED_TRAINING`),
    else the paper's. The help of each ``dae train`` option says more."""

    data: Path | None = None  # MVTec-layout root or category folder; None: the built-in dataset
    category: str | None = None  # a category under data; "all" or "a,b,c": a queue
    preset: str = "edge"
    out: Path | None = None  # the checkpoint (default DEFAULT_OUT); a queue's folder (default DEFAULT_QUEUE_OUT)
    steps: int | None = None  # None: the default, or no step limit when minutes is given
    minutes: float | None = None  # training time limit, counted across resumes
    batch_size: int | None = None
    lr_denoiser: float | None = None
    lr_segmenter: float | None = None
    seed: int = _DEFAULTS.seed
    device: str = "auto"
    amp: bool = True
    precision: str = _DEFAULTS.precision
    timesteps: str | None = None
    t_jitter: int = _DEFAULTS.t_jitter
    ema_decay: float = _DEFAULTS.ema_decay
    lr_schedule: str | None = None
    warmup_steps: int | None = None
    synthesis: str | None = None
    dice_weight: float | None = None
    crop_size: int | None = None  # 0: whole images
    anomaly_scale: str | None = None  # with crops: synthetic anomalies made on the "crop" or the whole "image"
    overwrite: bool = False
    snapshot_minutes: tuple[float, ...] = ()  # training minutes at which a copy <out>-<m>min.pt is written
    resume: Path | None = None
    init: Path | None = None
    add_normals: Path | None = None
    textures: Path | None = None
    foreground: str = _DEFAULTS.foreground
    foreground_masks: Path | None = None
    val_fraction: float = _DEFAULTS.val_fraction
    checkpoint_every: int = _DEFAULTS.checkpoint_every
    checkpoint_minutes: float = _DEFAULTS.checkpoint_minutes
    workers: int = _DEFAULTS.num_workers
    input_size: str | None = None  # "N" or "HxW"
    roi: str | None = None  # "x,y,w,h"
    tile: int | None = None
    tile_overlap: int = 32
    tile_blend: str = "mean"
    dist_timeout: float = 600.0  # several processes: seconds one waits for the others


@dataclass
class TrainPlan:
    """What a job trains, settled from :class:`TrainOptions` before anything runs."""

    opts: TrainOptions
    model_config: ModelConfig
    preprocessing: "Preprocessing"
    cfg: TrainConfig
    out: Path  # the checkpoint; for a queue its folder
    categories: list[str] | None = None  # a queue's categories; None: one run


def resolve_steps(steps: int | None, minutes: float | None) -> int:
    """The run's step target: the user's ``--steps``; without it the default, unless ``--minutes``
    is given, which is then the only limit (a time-boxed run is not silently cut at the default)."""
    if steps is not None:
        return steps
    return NO_STEP_LIMIT if minutes is not None else _DEFAULTS.steps


def describe_limits(start_step: int, steps: int, minutes: float | None) -> str:
    """Which limit ends the run, for the header: steps, minutes, or whichever comes first."""
    if minutes is None:
        return f"steps {start_step}->{steps}"
    if steps >= NO_STEP_LIMIT:
        return f"from step {start_step} for {minutes:g} min of training (no step limit; the schedule spans the minutes)"
    return (f"steps {start_step}->{steps} or {minutes:g} min of training, whichever comes first "
            f"(the schedule spans the one that ends first)")


def input_layout(model_config: ModelConfig, input_size: str | None, roi: str | None, tile: int | None,
                 overlap: int, blend: str):
    """The preset at the asked input size, and the preprocessing (ROI, tiles) stored with the model."""
    from ..data.framing import Preprocessing, parse_input_size
    from ..data.roi import parse_roi

    if input_size and tile:
        raise ConfigError("give --input-size or --tile, not both (a tiled model's input is the tile)")
    hw = (tile, tile) if tile else parse_input_size(input_size) if input_size else None
    if hw is not None:
        model_config = model_config.with_input(hw).validate()
    prep = Preprocessing(*model_config.input_hw, roi=parse_roi(roi) if roi else None, tile=tile,
                         overlap=overlap if tile else 0, blend=blend, top_k=model_config.diffusion.top_k)
    return model_config, prep


def plan_training(opts: TrainOptions) -> TrainPlan:
    """Settle what ``opts`` choose, in this order (the first mistake is the error): the input layout,
    the recipe and :class:`~diffusionad_edge.config.TrainConfig`, and for a queue its data, folder and
    categories. Nothing is trained or written."""
    model_config, prep = input_layout(get_preset(opts.preset), opts.input_size, opts.roi, opts.tile, opts.tile_overlap,
                                      opts.tile_blend)
    if opts.resume is not None and (opts.input_size or opts.roi or opts.tile):
        raise ConfigError("--input-size, --roi and --tile are fixed by the checkpoint being resumed; leave them out with --resume")
    given = dict(
        batch_size=opts.batch_size, lr_denoiser=opts.lr_denoiser, lr_segmenter=opts.lr_segmenter, timesteps=opts.timesteps,
        lr_schedule=opts.lr_schedule, warmup_steps=opts.warmup_steps, synthesis=opts.synthesis, crop_size=opts.crop_size,
        dice_weight=opts.dice_weight, anomaly_scale=opts.anomaly_scale,
    )
    recipe = {**RECOMMENDED_TRAINING.get(opts.preset, {}), **{k: v for k, v in given.items() if v is not None}}
    if recipe.get("crop_size") == 0 or (recipe.get("crop_size") or 0) >= min(model_config.input_hw):
        recipe["crop_size"] = None
    cfg = TrainConfig(
        steps=resolve_steps(opts.steps, opts.minutes), seed=opts.seed, val_fraction=opts.val_fraction, foreground=opts.foreground,
        textures=str(opts.textures) if opts.textures else None,
        foreground_masks=str(opts.foreground_masks) if opts.foreground_masks else None,
        checkpoint_every=opts.checkpoint_every, checkpoint_minutes=opts.checkpoint_minutes, num_workers=opts.workers,
        amp=opts.amp, precision=opts.precision, t_jitter=opts.t_jitter, ema_decay=opts.ema_decay, **recipe,
    ).validate()
    if not is_queue(opts.category):
        return TrainPlan(opts, model_config, prep, cfg, Path(opts.out) if opts.out is not None else DEFAULT_OUT)
    if opts.data is None:
        raise OptionError("a queue of categories needs --data ROOT (an MVTec-layout folder)", "--category")
    if opts.resume is not None:
        raise OptionError("a queue resumes each interrupted category by itself; leave --resume out", "--resume")
    if opts.init is not None or opts.add_normals is not None:
        raise OptionError("--init and --add-normals train one category at a time; give --category NAME", "--init/--add-normals")
    out_dir = Path(opts.out) if opts.out is not None else DEFAULT_QUEUE_OUT
    if out_dir.suffix == ".pt":
        raise OptionError(f"with several categories --out is a folder (each goes to <folder>/<category>.pt), not {out_dir}", "--out")
    check_output_dir(out_dir, "checkpoint folder")
    return TrainPlan(opts, model_config, prep, cfg, out_dir, queue_categories(opts.data, opts.category))


def train_model(opts: TrainOptions, log: Log = print, bars: Bars | None = None, summary: Summary | None = None):
    """Train as ``opts`` say (:func:`plan_training` first). One run returns its
    :class:`~.trainer.TrainResult`; a queue (``category`` ``all`` or ``a,b,c``) trains each category into
    ``<out>/<category>.pt`` (finished ones skipped, interrupted ones resumed), writes
    ``<out>/summary.csv``, calls ``summary(outcomes, path)`` and returns the outcomes, or raises
    :class:`~.queue.QueueFailed` when a category failed.

    Under torchrun this process is one rank of the job: rank 0 alone logs, draws ``bars`` and writes;
    another rank raises :class:`RankStopped` (the exit code) where rank 0 reports the reason. Ctrl-C:
    the step in flight is finished, the checkpoint saved, :class:`~.trainer.TrainingInterrupted`."""
    return _run(plan_training(opts), log, bars, summary)


def _run(plan: TrainPlan, log: Log, bars: Bars | None, summary: Summary | None):
    from ..hardware import resolve_device
    from . import distributed
    from .trainer import Trainer, TrainingInterrupted

    opts, cfg = plan.opts, plan.cfg
    # Under torchrun: one process of several (the environment says which); otherwise the only one.
    under_torchrun = distributed.launched_by_torchrun()
    dev = resolve_device(distributed.rank_device(opts.device, int(os.environ.get("LOCAL_RANK", 0))) if under_torchrun else opts.device)
    job = distributed.init_from_env(dev, opts.dist_timeout)
    if not job.is_main:  # rank 0 speaks for the job
        log, bars, summary = _silent, None, None
    budget = None if opts.minutes is None else opts.minutes * 60
    snapshots = tuple(float(m) * 60 for m in opts.snapshot_minutes)
    try:
        if job.active:
            log(
                f"distributed: {job.world_size} processes ({job.backend}), global batch "
                f"{cfg.batch_size} = {job.world_size} x {cfg.batch_size // job.world_size} per process, "
                f"learning rates as for one process (the global batch is --batch-size); rank 0 writes the checkpoint"
            )

        def train_one(name: str | None, path: Path, resume_from: Path | None, replace: bool) -> TrainResult:
            dataset = open_dataset(opts.data, name, log=log)
            trainer = Trainer(plan.model_config, cfg, dataset, path, device=str(dev), resume=resume_from, overwrite=replace,
                              dist=job, preprocessing=plan.preprocessing, init=opts.init, add_normals=opts.add_normals)
            _announce(trainer, dataset, cfg.steps, opts.minutes, log)
            return _fit(trainer, cfg.batch_size, budget, snapshots, bars)

        if plan.categories is None:
            result = train_one(opts.category, plan.out, opts.resume, opts.overwrite)
            val = result.validation
            if val.get("synthetic_image_auroc") is not None:
                log(f"held-out normals vs synthetic anomalies: image AUROC {val['synthetic_image_auroc']:.3f} (not the test set)")
            log(f"checkpoint: {result.checkpoint} (step {result.step})")
            return result

        def queue_one(name: str, path: Path, resume_it: bool) -> tuple[int, float, float | None]:
            result = train_one(name, path, path if resume_it else None, opts.overwrite)
            return result.step, result.train_seconds / 60, result.validation.get("synthetic_image_auroc")

        outcomes = run_queue(
            plan.categories, plan.out, queue_one, cfg.steps, opts.minutes, opts.overwrite, log=log,
            is_fatal=lambda exc: job.active and distributed.is_distributed_failure(exc),
        )
        summary_path = plan.out / SUMMARY_NAME
        if job.is_main:
            write_summary(outcomes, summary_path)
            if summary is not None:
                summary(outcomes, summary_path)
        failed = failure_error(outcomes, summary_path)
        if failed is not None:
            raise failed
        return outcomes
    except TrainingInterrupted:
        if not job.is_main:
            raise RankStopped(TrainingInterrupted.exit_code) from None  # rank 0 says where it saved
        raise
    except Exception as exc:
        if job.active and distributed.is_distributed_failure(exc):
            raise distributed.DistributedFailure(distributed.describe_failure(exc, job)) from None
        if not job.is_main and isinstance(exc, DaeError):
            raise RankStopped(exc.exit_code) from None  # the same error on rank 0 says it once
        raise
    finally:
        distributed.shutdown()


def _silent(message: str) -> None:
    return None


def _announce(trainer: Any, dataset: Any, steps: int, minutes: float | None, log: Log) -> None:
    """The run's header: what trains on what, where, until when, with which recipe."""
    mc, tc = trainer.model.config, trainer.cfg
    added = f" + {len(trainer.added_paths)} added normals" if trainer.added_paths else ""
    log(
        f"training preset {mc.preset} ({trainer.preprocessing.describe()}) on {dataset.path} "
        f"({len(trainer.train_paths)} train{added} / {len(trainer.val_paths)} held-out images) "
        f"on {trainer.device} in {trainer.precision}, {describe_limits(trainer.step, steps, minutes)}"
    )
    if trainer.init is not None and trainer.resumed_world_size is None:
        init = trainer.init
        log(f"starting from the weights of {init['path']} ({init.get('category') or 'its data'}, step {init.get('step')}): "
            "a new run, its own schedule and optimiser state")
    log(
        f"recipe: batch {tc.batch_size}, crop {tc.crop_size or 'whole image'}, lr {tc.lr_denoiser:g}/{tc.lr_segmenter:g} "
        f"({tc.lr_schedule}), timesteps {tc.timesteps}, synthesis {tc.synthesis}, EMA {tc.ema_decay:g}, "
        f"dice weight {tc.dice_weight:g}" + (f", anomalies made on the {tc.anomaly_scale}" if tc.crop_size else "")
    )
    written_by, now = trainer.resumed_world_size, trainer.dist.world_size
    if written_by is not None and written_by != now:
        log(
            f"note: the checkpoint was written by {written_by} process{'es' if written_by > 1 else ''}, this run has {now}: the global "
            f"batch and the samples of each step are the same, so training goes on where it stopped (equal to "
            f"an uninterrupted run up to float rounding; bit-exact repeats need the same number of processes)"
        )


def _fit(trainer: Any, batch_size: int, budget: float | None, snapshots: tuple[float, ...], bars: Bars | None) -> TrainResult:
    if bars is None:
        return trainer.fit(None, time_budget_s=budget, snapshots_s=snapshots)
    # Only minutes limit the run: the bar counts training seconds, the info says the step.
    by_time = budget is not None and trainer.cfg.steps >= NO_STEP_LIMIT
    label, total = ("train (s)", int(budget)) if by_time and budget is not None else ("train", trainer.cfg.steps)
    with bars(label, total) as update:
        update(trainer.train_seconds if by_time else trainer.step)
        start = trainer.step

        def report(step: int, total: int, losses: dict[str, float], elapsed: float) -> None:
            rate = (step - start) * batch_size / max(elapsed, 1e-9)
            info = (f"loss {losses['total']:.4f} (noise {losses['noise']:.4f} focal {losses['focal']:.4f} "
                    f"l1 {losses['smooth_l1']:.4f} dice {losses['dice']:.3f}) {rate:.1f} img/s")
            if by_time:
                update(min(trainer.train_seconds, total), f"step {step} {info}")
            else:
                update(step, info)

        return trainer.fit(report, time_budget_s=budget, snapshots_s=snapshots)
