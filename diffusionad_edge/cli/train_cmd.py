"""``dae train``: joint training on an MVTec-layout category or the built-in dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import PRESETS, TrainConfig, preset as get_preset
from .common import console, open_dataset, progress_bar

_DEFAULTS = TrainConfig()


def train(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="MVTec-layout root (or category folder). Default: the built-in generated dataset."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Category folder under --data (e.g. bottle)."),
    preset: str = typer.Option("edge", "--preset", "-p", help=f"Model preset: {', '.join(PRESETS)}."),
    out: Path = typer.Option(Path("runs/model.pt"), "--out", "-o", help="Checkpoint file to write."),
    steps: int = typer.Option(_DEFAULTS.steps, help="Total optimisation steps (also the target when resuming)."),
    batch_size: int = typer.Option(_DEFAULTS.batch_size, help="Images per step: half clean, half synthetic anomalies."),
    lr_denoiser: float = typer.Option(_DEFAULTS.lr_denoiser, help="Adam learning rate of the denoising U-Net (paper: 1e-4)."),
    lr_segmenter: float = typer.Option(_DEFAULTS.lr_segmenter, help="Adam learning rate of the segmentation net (paper: 1e-5)."),
    seed: int = typer.Option(_DEFAULTS.seed, help="Seed for weights, data and noise: a CPU run is repeatable."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    amp: bool = typer.Option(True, help="Mixed precision (float16 autocast) on CUDA."),
    resume: Optional[Path] = typer.Option(None, help="Continue from this checkpoint (its preset and optimiser state)."),
    textures: Optional[Path] = typer.Option(None, help="DTD-style texture folder for anomaly synthesis (default: self-augmentation + procedural textures)."),
    foreground: str = typer.Option(_DEFAULTS.foreground, help="Where anomalies may appear: auto (estimated object), object, texture (whole image)."),
    foreground_masks: Optional[Path] = typer.Option(None, help="Folder of your own foreground masks, <image stem>.png per training image (white = object)."),
    val_fraction: float = typer.Option(_DEFAULTS.val_fraction, help="Share of train/good held out (never trained on) for validation and thresholds."),
    checkpoint_every: int = typer.Option(_DEFAULTS.checkpoint_every, help="Write the checkpoint every N steps (0: only at the end and on Ctrl-C)."),
    workers: int = typer.Option(_DEFAULTS.num_workers, help="Data-loader worker processes for anomaly synthesis."),
    crop_size: Optional[int] = typer.Option(None, help="Train on random square patches of this size (fully convolutional nets still run on whole images): much cheaper steps."),
    minutes: Optional[float] = typer.Option(None, min=0.0, help="Stop after this many minutes of training even if --steps is not reached."),
) -> None:
    """Train the reconstruction and segmentation sub-networks jointly (paper losses and optimisers)."""
    from ..train.trainer import Trainer  # torch: imported when the command runs, not for --help

    cfg = TrainConfig(
        steps=steps, batch_size=batch_size, lr_denoiser=lr_denoiser, lr_segmenter=lr_segmenter, seed=seed,
        val_fraction=val_fraction, foreground=foreground, textures=str(textures) if textures else None,
        foreground_masks=str(foreground_masks) if foreground_masks else None,
        checkpoint_every=checkpoint_every, num_workers=workers, amp=amp, crop_size=crop_size,
    ).validate()
    model_config = get_preset(preset)
    dataset = open_dataset(data, category)
    trainer = Trainer(model_config, cfg, dataset, out, device=device, resume=resume)
    mc = trainer.model.config
    console.print(
        f"training preset [bold]{mc.preset}[/] ({mc.image_size}px) on {dataset.path} "
        f"({len(trainer.train_paths)} train / {len(trainer.val_paths)} held-out images) "
        f"on {trainer.device}, steps {trainer.step}->{cfg.steps}"
    )
    with progress_bar("train", cfg.steps) as bar:
        task = bar.task_ids[0]
        bar.update(task, completed=trainer.step)
        start = trainer.step

        def report(step: int, total: int, losses: dict[str, float], elapsed: float) -> None:
            rate = (step - start) * cfg.batch_size / max(elapsed, 1e-9)
            info = (f"loss {losses['total']:.4f} (noise {losses['noise']:.4f} focal {losses['focal']:.4f} "
                    f"l1 {losses['smooth_l1']:.4f}) {rate:.1f} img/s")
            bar.update(task, completed=step, info=info)

        result = trainer.fit(report, time_budget_s=None if minutes is None else minutes * 60)
    val = result.validation
    if val.get("synthetic_image_auroc") is not None:
        console.print(f"held-out normals vs synthetic anomalies: image AUROC {val['synthetic_image_auroc']:.3f} (not the test set)")
    console.print(f"checkpoint: {result.checkpoint} (step {result.step})")
