"""``dae train``: joint training on an MVTec-layout category or the built-in dataset; with
``--nproc`` (or under torchrun) on several processes; with ``--category all`` a queue of categories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..config import PRESETS, RECOMMENDED_TRAINING, TrainConfig
from ..hardware import TRAIN_PRECISIONS
from ..train.job import DEFAULT_OUT, OptionError, RankStopped, TrainOptions, train_model
from ..train.queue import is_queue
from .common import bars, console, print_table

_DEFAULTS = TrainConfig()


def _recipe_help(name: str) -> str:
    parts = [f"{p}: {RECOMMENDED_TRAINING[p][name]}" for p in RECOMMENDED_TRAINING if name in RECOMMENDED_TRAINING[p]]
    paper = getattr(_DEFAULTS, name)
    return f" Default: the preset's recipe ({', '.join(parts)}; otherwise {paper})." if parts else f" Default: {paper}."


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
    anomaly_scale: Optional[str] = typer.Option(None, help="With --crop-size: make each synthetic anomaly on the patch (crop: its size shrinks with the patch) or on the whole image before the patch is cut around it (image: the sizes the nets see at inference)." + _recipe_help("anomaly_scale")),
    minutes: Optional[float] = typer.Option(None, min=0.0, help="Stop after this many minutes of training (counted across --resume). Alone, it is the only limit; with --steps, whichever comes first ends the run (and the learning-rate schedule)."),
    input_size: Optional[str] = typer.Option(None, help="Network input N or HxW (height x width), e.g. 256x640 for parts 2.5x wider than tall: long parts are not squashed. Both sides multiples of the preset's divisor (edge: 16, edge-v2: 32, tiny: 8). Default: the preset's square."),
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
    try:
        snapshots = tuple(float(m) for m in snapshot_minutes.split(",") if m.strip())
    except ValueError:
        raise typer.BadParameter(f"not a comma-separated list of minutes: {snapshot_minutes!r}", param_hint="--snapshot-minutes") from None
    opts = TrainOptions(
        data=data, category=category, preset=preset, out=out, steps=steps, minutes=minutes, batch_size=batch_size,
        lr_denoiser=lr_denoiser, lr_segmenter=lr_segmenter, seed=seed, device=device, amp=amp, precision=precision,
        timesteps=timesteps, t_jitter=t_jitter, ema_decay=ema_decay, lr_schedule=lr_schedule, warmup_steps=warmup_steps,
        synthesis=synthesis, dice_weight=dice_weight, crop_size=crop_size, anomaly_scale=anomaly_scale, overwrite=overwrite, snapshot_minutes=snapshots,
        resume=resume, init=init, add_normals=add_normals, textures=textures, foreground=foreground,
        foreground_masks=foreground_masks, val_fraction=val_fraction, checkpoint_every=checkpoint_every,
        checkpoint_minutes=checkpoint_minutes, workers=workers, input_size=input_size, roi=roi, tile=tile,
        tile_overlap=tile_overlap, tile_blend=tile_blend, dist_timeout=dist_timeout,
    )
    try:
        train_model(opts, log=console.print, bars=bars, summary=_print_summary)
    except OptionError as exc:  # settled before anything runs: the option's error, as typer reports one
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    except RankStopped as exc:
        raise typer.Exit(exc.exit_code) from None  # another rank of the job: rank 0 says why, once


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


def _print_summary(outcomes, summary: Path) -> None:
    """A queue's outcomes as a table on stdout, and where its summary file is."""
    from rich.table import Table

    table = Table(title="categories")
    for col in ("category", "status", "steps", "minutes", "held-out AUROC", "checkpoint", "error"):
        table.add_column(col)
    for o in outcomes:
        row = o.row()
        table.add_row(row["category"], row["status"], str(row["steps"]), row["minutes"], row["heldout_auroc"], row["checkpoint"], row["error"])
    print_table(table)
    console.print(f"summary: {summary}")
