"""``dae demo``: the whole chain on the built-in dataset, with nothing but the install.

Generates the synthetic dataset, trains a small model on the CPU for a few minutes, evaluates it
on the test split and writes a Markdown report whose path it prints.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import typer

from .. import __version__
from ..config import TrainConfig, preset as get_preset
from ..data.builtin import generate_dataset
from ..data.mvtec import MVTecCategory
from ..train.atomic import atomic_write
from .common import console, progress_bar
from .eval_cmd import METRIC_NAMES, _fmt, _nan_to_none, _print_table

# A recipe for a few CPU minutes, not the paper's 3000 epochs: 64-px random patches (16x cheaper
# steps than whole 256-px images; the nets are fully convolutional and evaluate on whole images)
# and higher learning rates (the paper's 1e-5 barely moves the segmentation net in 200 steps).
QUICK_RECIPE = dict(batch_size=16, crop_size=64, lr_denoiser=5e-4, lr_segmenter=1e-3)


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Folder for the dataset, checkpoint and report."),
    minutes: float = typer.Option(4.0, min=0.05, help="Training time budget in minutes."),
    preset: str = typer.Option("edge", help="Model preset to train."),
    fast: bool = typer.Option(False, "--fast", help="A much smaller setting (tiny preset, small data, seconds) for tests and smoke runs."),
    seed: int = typer.Option(0, help="Seed for data, weights and noise."),
) -> None:
    """Generate data, train, evaluate and write a report: the product end to end on the CPU."""
    import torch

    from ..evaluate.evaluator import evaluate, torch_predict_fn
    from ..train.trainer import Trainer

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if fast:
        preset, minutes = "tiny", min(minutes, 0.5)
    model_config = get_preset(preset)
    size = model_config.image_size

    console.rule("1/3 data")
    n = dict(n_train=24, n_test_good=6, n_test_per_defect=4) if fast else dict(n_train=120, n_test_good=20, n_test_per_defect=12)
    data_root = out / "data"
    generate_dataset(data_root, category="surface", size=max(size, 64) if fast else 256, seed=seed, **n)
    dataset = MVTecCategory(data_root, "surface")
    console.print(f"built-in dataset: {len(dataset.train_images)} normal training images, {len(dataset.test_samples)} test images in {dataset.path}")

    console.rule(f"2/3 train ({preset}, {minutes:g} min)")
    recipe = dict(QUICK_RECIPE, crop_size=min(QUICK_RECIPE["crop_size"], size))
    cfg = TrainConfig(steps=10_000_000, seed=seed, checkpoint_every=0, **recipe).validate()
    ckpt = out / f"{preset}.pt"
    trainer = Trainer(model_config, cfg, dataset, ckpt, device="auto")
    with progress_bar("train", int(minutes * 60)) as bar:
        task = bar.task_ids[0]

        def report(step: int, total: int, losses: dict[str, float], elapsed: float) -> None:
            bar.update(task, completed=min(elapsed, minutes * 60), info=f"step {step} loss {losses['total']:.4f}")

        result = trainer.fit(report, time_budget_s=minutes * 60)
    console.print(f"trained {result.step} steps; checkpoint {ckpt}")

    console.rule("3/3 evaluate")
    predict = torch_predict_fn(trainer.model, "one-step", trainer.device)
    with progress_bar("eval", len(dataset.test_samples), extra=False) as bar:
        ev = evaluate(dataset, predict, size, progress=lambda d, t: bar.update(bar.task_ids[0], completed=d))
    res = _nan_to_none(ev.to_dict())
    _print_table(ev.to_dict(), f"built-in surface: {preset} after {result.step} steps")
    atomic_write(out / "eval.json", lambda tmp: Path(tmp).write_text(json.dumps(res, indent=2)))

    report_path = out / "report.md"
    lines = [
        "# diffusionad_edge demo report",
        "",
        f"- toolkit {__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, device {trainer.device}",
        f"- preset `{preset}` ({size}x{size}), trained {result.step} steps in {minutes:g} min, seed {seed}, quick recipe {recipe}",
        f"- dataset: built-in synthetic `surface` ({len(dataset.train_images)} train, {len(dataset.test_samples)} test)",
        f"- checkpoint: `{ckpt}`",
        "",
        "| defect type | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---|" * len(METRIC_NAMES),
    ]
    for defect, m in ev.per_type.items():
        lines.append(f"| {defect} | " + " | ".join(_fmt(m[k]) for k in METRIC_NAMES) + " |")
    lines.append("| **overall** | " + " | ".join(_fmt(ev.overall[k]) for k in METRIC_NAMES) + " |")
    lines += ["", f"Total demo time {time.perf_counter() - t_start:.0f} s."]
    atomic_write(report_path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    console.print(f"report: {report_path}")
    print(report_path)
