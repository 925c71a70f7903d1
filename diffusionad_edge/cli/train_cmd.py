"""``dae train``: joint training on an MVTec-layout category or the built-in dataset; with
``--nproc`` (or under torchrun) on several processes; with ``--category all`` a queue of categories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..config import PRESETS, RECOMMENDED_TRAINING, ModelConfig, TrainConfig, preset as get_preset
from ..errors import ConfigError, DaeError
from ..hardware import TRAIN_PRECISIONS
from ..paths import check_output_dir
from ..train.queue import SUMMARY_NAME, failure_error, is_queue, queue_categories, run_queue, write_summary
from .common import console, open_dataset, print_table, progress_bar

_DEFAULTS = TrainConfig()


def _recipe_help(name: str) -> str:
    parts = [f"{p}: {RECOMMENDED_TRAINING[p][name]}" for p in RECOMMENDED_TRAINING if name in RECOMMENDED_TRAINING[p]]
    paper = getattr(_DEFAULTS, name)
    return f" Default: the preset's recipe ({', '.join(parts)}; otherwise {paper})." if parts else ""


def train(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="MVTec-layout root (or category folder). Default: the built-in generated dataset."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Category folder under --data (e.g. bottle). 'all' or a comma-separated list: a queue, each category into <out folder>/<category>.pt (finished ones skipped, interrupted ones resumed) and a summary table."),
    preset: str = typer.Option("edge", "--preset", "-p", help=f"Model preset: {', '.join(PRESETS)}."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Checkpoint file to write (default runs/model.pt); with a queue of categories, the folder (default runs)."),
    steps: Optional[int] = typer.Option(None, min=1, help=f"Total optimisation steps (also the target when resuming). Default: {_DEFAULTS.steps}, or no step limit when --minutes is given (the minutes then end the run)."),
    batch_size: Optional[int] = typer.Option(None, help="Images per step (even): half clean, half synthetic anomalies." + _recipe_help("batch_size")),
    lr_denoiser: Optional[float] = typer.Option(None, help="Peak Adam learning rate of the denoising U-Net (paper: 1e-4)." + _recipe_help("lr_denoiser")),
    lr_segmenter: Optional[float] = typer.Option(None, help="Peak Adam learning rate of the segmentation net (paper: 1e-5)." + _recipe_help("lr_segmenter")),
    seed: int = typer.Option(_DEFAULTS.seed, help="Seed for weights, data and noise: a CPU run is repeatable."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    amp: bool = typer.Option(True, help="Mixed precision (float16 autocast) on CUDA when --precision is auto."),
    precision: str = typer.Option(_DEFAULTS.precision, help=f"{'|'.join(TRAIN_PRECISIONS)}: auto = fp16 autocast on CUDA, bf16 on a CPU with native bf16 (AVX-512 BF16/AMX), else fp32."),
    timesteps: Optional[str] = typer.Option(None, help="uniform (paper: t_s in [0, t_split), t_b in [t_split, T)) or deployed (only the exported graph's t_s/t_b +- --t-jitter)." + _recipe_help("timesteps")),
    t_jitter: int = typer.Option(_DEFAULTS.t_jitter, help="With --timesteps deployed: draw t_s and t_b within +- this many steps."),
    ema_decay: float = typer.Option(_DEFAULTS.ema_decay, help="Weight averaging (EMA) decay; eval and export use the averaged weights. 0: off."),
    lr_schedule: Optional[str] = typer.Option(None, help="constant (paper) or cosine (warm-up, then decay over --steps or --minutes, whichever ends first)." + _recipe_help("lr_schedule")),
    warmup_steps: Optional[int] = typer.Option(None, help="Linear learning-rate warm-up steps (cosine schedule)." + _recipe_help("warmup_steps")),
    synthesis: Optional[str] = typer.Option(None, help="Anomaly synthesis: paper (Perlin blobs of foreign texture) or mixed (plus cut-paste, cracks, intensity/colour shifts)." + _recipe_help("synthesis")),
    dice_weight: Optional[float] = typer.Option(None, min=0.0, help="Weight of a soft Dice term added to the paper's mask losses (0: the paper's objective)." + _recipe_help("dice_weight")),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out (otherwise refused, unless --resume continues it)."),
    snapshot_minutes: str = typer.Option("", help="Comma-separated training minutes at which a copy <out>-<m>min.pt is also written (learning curves)."),
    resume: Optional[Path] = typer.Option(None, help="Continue from this checkpoint (its preset, recipe, optimiser state and weight average)."),
    init: Optional[Path] = typer.Option(None, "--init", metavar="CHECKPOINT", help="Start a new run from this trained checkpoint's weights "
                                        "(its averaged weights only: step 0, fresh optimisers, a new learning-rate schedule). Same preset "
                                        "and input size as this run; another category's checkpoint is fine."),
    add_normals: Optional[Path] = typer.Option(None, "--add-normals", metavar="DIR", help="Also train on the images directly in DIR "
                                               "(e.g. a review folder's good/), beside the dataset's normals; the held-out split "
                                               "stays the dataset's."),
    textures: Optional[Path] = typer.Option(None, help="DTD-style texture folder for anomaly synthesis (default: self-augmentation + procedural textures)."),
    foreground: str = typer.Option(_DEFAULTS.foreground, help="Where anomalies may appear: auto (estimated object), object, texture (whole image)."),
    foreground_masks: Optional[Path] = typer.Option(None, help="Folder of your own foreground masks, <image stem>.png per training image (white = object)."),
    val_fraction: float = typer.Option(_DEFAULTS.val_fraction, help="Share of train/good held out (never trained on) for validation and thresholds."),
    checkpoint_every: int = typer.Option(_DEFAULTS.checkpoint_every, help="Write the checkpoint every N steps (0: only at the end and on Ctrl-C)."),
    checkpoint_minutes: float = typer.Option(_DEFAULTS.checkpoint_minutes, help="Also write it whenever this many minutes have passed since the last write (0: off), so a power cut or kill -9 costs minutes, not the run."),
    workers: int = typer.Option(_DEFAULTS.num_workers, help="Data-loader worker processes for anomaly synthesis."),
    crop_size: Optional[int] = typer.Option(None, help="Train on random square patches of this size (fully convolutional nets still run on whole images): much cheaper steps. 0: whole images." + _recipe_help("crop_size")),
    minutes: Optional[float] = typer.Option(None, min=0.0, help="Stop after this many minutes of training (counted across --resume). Alone, it is the only limit; with --steps, whichever comes first ends the run (and the learning-rate schedule)."),
    input_size: Optional[str] = typer.Option(None, help="Network input N or HxW (height x width), e.g. 256x640 for parts 2.5x wider than tall: long parts are not squashed. Both sides multiples of the preset's divisor (edge: 32). Default: the preset's square."),
    roi: Optional[str] = typer.Option(None, help="Region of interest x,y,w,h in pixels of the full image: only it is trained on and inspected (the map is placed back at frame size); stored in the model."),
    tile: Optional[int] = typer.Option(None, min=1, help="Train and infer on square tiles of this size cut from the full-resolution image (or ROI) instead of resizing it: for defects a few pixels wide on large images."),
    tile_overlap: int = typer.Option(32, min=0, help="With --tile: pixels by which neighbouring tiles overlap."),
    tile_blend: str = typer.Option("mean", help="With --tile: how overlapping tile maps are combined, mean or max."),
    nproc: int = typer.Option(1, min=1, help="Training processes on this machine (PyTorch DistributedDataParallel, as torchrun starts them): one per GPU (nccl), or CPU processes (gloo). --batch-size is the global batch, split between them."),
    dist_timeout: float = typer.Option(600.0, min=1.0, help="Several processes: seconds one waits for the others before the job is declared stuck and ends."),
) -> None:
    """Train the reconstruction and segmentation sub-networks jointly (paper losses and optimisers).

    Options left unset take the preset's recommended recipe (see RECOMMENDED_TRAINING; `paper`
    keeps the paper's), so `dae train --preset edge` trains the way the README's learning curve did.
    """
    if nproc > 1:
        if "WORLD_SIZE" in os.environ:
            raise typer.BadParameter("this process was started by torchrun already; leave --nproc out", param_hint="--nproc")
        _check_global_batch(batch_size, preset, nproc)
        from ..train.launch import launch  # torch: imported when the command runs, not for --help

        hint = "" if is_queue(category) else f"{out or DEFAULT_OUT} (continue with --resume)"
        launch(nproc, _forwarded_args(ctx, skip={"nproc"}), checkpoint_hint=hint)
        return
    from ..train import distributed
    from ..train.trainer import Trainer, TrainingInterrupted, resolve_device

    try:
        snapshots = tuple(float(m) * 60 for m in snapshot_minutes.split(",") if m.strip())
    except ValueError:
        raise typer.BadParameter(f"not a comma-separated list of minutes: {snapshot_minutes!r}", param_hint="--snapshot-minutes") from None
    model_config, prep = _input_layout(get_preset(preset), input_size, roi, tile, tile_overlap, tile_blend)
    if resume is not None and (input_size or roi or tile):
        raise ConfigError("--input-size, --roi and --tile are fixed by the checkpoint being resumed; leave them out with --resume")
    given = dict(
        batch_size=batch_size, lr_denoiser=lr_denoiser, lr_segmenter=lr_segmenter, timesteps=timesteps,
        lr_schedule=lr_schedule, warmup_steps=warmup_steps, synthesis=synthesis, crop_size=crop_size,
        dice_weight=dice_weight,
    )
    recipe = {**RECOMMENDED_TRAINING.get(preset, {}), **{k: v for k, v in given.items() if v is not None}}
    if recipe.get("crop_size") == 0 or (recipe.get("crop_size") or 0) >= min(model_config.input_hw):
        recipe["crop_size"] = None
    cfg = TrainConfig(
        steps=resolve_steps(steps, minutes), seed=seed, val_fraction=val_fraction, foreground=foreground,
        textures=str(textures) if textures else None,
        foreground_masks=str(foreground_masks) if foreground_masks else None,
        checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes, num_workers=workers, amp=amp, precision=precision,
        t_jitter=t_jitter, ema_decay=ema_decay, **recipe,
    ).validate()
    budget = None if minutes is None else minutes * 60
    queue = is_queue(category)
    if queue:
        if data is None:
            raise typer.BadParameter("a queue of categories needs --data ROOT (an MVTec-layout folder)", param_hint="--category")
        if resume is not None:
            raise typer.BadParameter("a queue resumes each interrupted category by itself; leave --resume out", param_hint="--resume")
        if init is not None or add_normals is not None:
            raise typer.BadParameter("--init and --add-normals train one category at a time; give --category NAME",
                                     param_hint="--init/--add-normals")
        out_dir = out if out is not None else Path("runs")
        if out_dir.suffix == ".pt":
            raise typer.BadParameter(f"with several categories --out is a folder (each goes to <folder>/<category>.pt), not {out_dir}", param_hint="--out")
        check_output_dir(out_dir, "checkpoint folder")
        names = queue_categories(data, category)

    # Under torchrun: one process of several (the environment says which); otherwise the only one.
    under_torchrun = distributed.launched_by_torchrun()
    dev = resolve_device(distributed.rank_device(device, int(os.environ.get("LOCAL_RANK", 0))) if under_torchrun else device)
    job = distributed.init_from_env(dev, dist_timeout)
    if not job.is_main:
        console.quiet = True  # rank 0 speaks for the job
    try:
        if job.active:
            console.print(
                f"distributed: {job.world_size} processes ({job.backend}), global batch "
                f"{cfg.batch_size} = {job.world_size} x {cfg.batch_size // job.world_size} per process, "
                f"learning rates as for one process (the global batch is --batch-size); rank 0 writes the checkpoint"
            )

        def train_one(name: str | None, path: Path, resume_from: Path | None, replace: bool):
            dataset = open_dataset(data, name)
            trainer = Trainer(model_config, cfg, dataset, path, device=str(dev), resume=resume_from, overwrite=replace, dist=job,
                              preprocessing=prep, init=init, add_normals=add_normals)
            _announce(trainer, dataset, cfg.steps, minutes)
            return _fit(trainer, cfg.batch_size, budget, snapshots)

        if not queue:
            result = train_one(category, out or DEFAULT_OUT, resume, overwrite)
            val = result.validation
            if val.get("synthetic_image_auroc") is not None:
                console.print(f"held-out normals vs synthetic anomalies: image AUROC {val['synthetic_image_auroc']:.3f} (not the test set)")
            console.print(f"checkpoint: {result.checkpoint} (step {result.step})")
            return

        def queue_one(name: str, path: Path, resume_it: bool):
            result = train_one(name, path, path if resume_it else None, overwrite)
            return result.step, result.train_seconds / 60, result.validation.get("synthetic_image_auroc")

        outcomes = run_queue(
            names, out_dir, queue_one, cfg.steps, minutes, overwrite, log=console.print,
            is_fatal=lambda exc: job.active and distributed.is_distributed_failure(exc),
        )
        summary = out_dir / SUMMARY_NAME
        if job.is_main:
            write_summary(outcomes, summary)
            _print_summary(outcomes)
            console.print(f"summary: {summary}")
        failed = failure_error(outcomes, summary)
        if failed is not None:
            raise failed
    except TrainingInterrupted:
        if not job.is_main:
            raise typer.Exit(TrainingInterrupted.exit_code) from None  # rank 0 says where it saved
        raise
    except Exception as exc:
        if job.active and distributed.is_distributed_failure(exc):
            raise distributed.DistributedFailure(distributed.describe_failure(exc, job)) from None
        if not job.is_main and isinstance(exc, DaeError):
            raise typer.Exit(exc.exit_code) from None  # the same error on rank 0 says it once
        raise
    finally:
        distributed.shutdown()


DEFAULT_OUT = Path("runs/model.pt")

#: ``--steps`` when only ``--minutes`` limits a run: a step count no run reaches, so the minutes end it.
NO_STEP_LIMIT = 10**9


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


def _check_global_batch(batch_size: int | None, preset: str, nproc: int) -> None:
    """Before any process starts: the global batch must split evenly (half clean, half synthetic)."""
    batch = batch_size or RECOMMENDED_TRAINING.get(preset, {}).get("batch_size") or _DEFAULTS.batch_size
    if batch % (2 * nproc):
        raise typer.BadParameter(
            f"{batch} (the global batch) must be a multiple of 2 x {nproc} processes: each trains on as many "
            f"clean as synthetic samples",
            param_hint="--batch-size",
        )


def _forwarded_args(ctx: typer.Context, skip: set[str]) -> list[str]:
    """This command's options as the user gave them (minus ``skip``), for the training processes."""
    args: list[str] = []
    for param in ctx.command.params:
        if param.param_type_name != "option" or param.name in skip:
            continue
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        value = ctx.params[param.name]
        if param.is_flag:
            if value:
                args.append(param.opts[0])
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
        elif value is not None:
            args += [param.opts[0], str(value)]
    return args


def _announce(trainer, dataset, steps: int, minutes: float | None) -> None:
    mc, tc = trainer.model.config, trainer.cfg
    added = f" + {len(trainer.added_paths)} added normals" if trainer.added_paths else ""
    console.print(
        f"training preset [bold]{mc.preset}[/] ({trainer.preprocessing.describe()}) on {dataset.path} "
        f"({len(trainer.train_paths)} train{added} / {len(trainer.val_paths)} held-out images) "
        f"on {trainer.device} in {trainer.precision}, {describe_limits(trainer.step, steps, minutes)}"
    )
    if trainer.init is not None and trainer.resumed_world_size is None:
        init = trainer.init
        console.print(f"starting from the weights of {init['path']} ({init.get('category') or 'its data'}, step {init.get('step')}): "
                      "a new run, its own schedule and optimiser state")
    console.print(
        f"recipe: batch {tc.batch_size}, crop {tc.crop_size or 'whole image'}, lr {tc.lr_denoiser:g}/{tc.lr_segmenter:g} "
        f"({tc.lr_schedule}), timesteps {tc.timesteps}, synthesis {tc.synthesis}, EMA {tc.ema_decay:g}, "
        f"dice weight {tc.dice_weight:g}"
    )
    written_by, now = trainer.resumed_world_size, trainer.dist.world_size
    if written_by is not None and written_by != now:
        console.print(
            f"note: the checkpoint was written by {written_by} process{'es' if written_by > 1 else ''}, this run has {now}: the global "
            f"batch and the samples of each step are the same, so training goes on where it stopped (equal to "
            f"an uninterrupted run up to float rounding; bit-exact repeats need the same number of processes)"
        )


def _fit(trainer, batch_size: int, budget: float | None, snapshots: tuple[float, ...]):
    # Only minutes limit the run: the bar counts training seconds, the info says the step.
    by_time = budget is not None and trainer.cfg.steps >= NO_STEP_LIMIT
    label, total = ("train (s)", int(budget)) if by_time and budget is not None else ("train", trainer.cfg.steps)
    with progress_bar(label, total) as bar:
        task = bar.task_ids[0]
        bar.update(task, completed=trainer.train_seconds if by_time else trainer.step)
        start = trainer.step

        def report(step: int, total: int, losses: dict[str, float], elapsed: float) -> None:
            rate = (step - start) * batch_size / max(elapsed, 1e-9)
            info = (f"loss {losses['total']:.4f} (noise {losses['noise']:.4f} focal {losses['focal']:.4f} "
                    f"l1 {losses['smooth_l1']:.4f} dice {losses['dice']:.3f}) {rate:.1f} img/s")
            if by_time:
                bar.update(task, completed=min(trainer.train_seconds, total), info=f"step {step} {info}")
            else:
                bar.update(task, completed=step, info=info)

        return trainer.fit(report, time_budget_s=budget, snapshots_s=snapshots)


def _print_summary(outcomes) -> None:
    from rich.table import Table

    table = Table(title="categories")
    for col in ("category", "status", "steps", "minutes", "held-out AUROC", "checkpoint", "error"):
        table.add_column(col)
    for o in outcomes:
        row = o.row()
        table.add_row(row["category"], row["status"], str(row["steps"]), row["minutes"], row["heldout_auroc"], row["checkpoint"], row["error"])
    print_table(table)


def _input_layout(model_config: ModelConfig, input_size: str | None, roi: str | None, tile: int | None,
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
