"""``dae info``: parameters and GFLOP per image of a checkpoint or preset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..config import PRESETS, preset as get_preset
from ..errors import ConfigError
from .common import out


def info(
    checkpoint: Optional[Path] = typer.Argument(None, metavar="CHECKPOINT", help="A checkpoint (.pt) written by `dae train`."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=f"A preset instead: {', '.join(PRESETS)}."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print parameters and GFLOP per image (one-step: 2 denoiser passes + segmentation)."""
    import torch

    from ..models.checkpoint_io import load_model
    from ..models.complexity import measure_complexity
    from ..models.detector import DiffusionAD

    if (checkpoint is None) == (preset is None):
        raise ConfigError("give either a CHECKPOINT or --preset NAME")
    extra = {}
    if checkpoint is not None:
        model, payload = load_model(checkpoint)
        extra = {"checkpoint": str(checkpoint), "step": payload.get("step")}
        if payload.get("preprocessing"):
            extra["preprocessing"] = {k: v for k, v in payload["preprocessing"].items() if k != "resize"}
    else:
        with torch.device("meta"):
            model = DiffusionAD(get_preset(preset))  # shapes only: nothing is allocated
    c = measure_complexity(model)
    cfg = model.config
    row = {
        "preset": cfg.preset,
        "image_size": cfg.image_size,
        "input_hw": list(cfg.input_hw),
        "denoiser_params": c.denoiser_params,
        "segmenter_params": c.segmenter_params,
        "total_params": c.total_params,
        "denoiser_gflop_per_pass": round(c.denoiser_gflop_per_pass, 3),
        "segmenter_gflop": round(c.segmenter_gflop, 3),
        "one_step_gflop_per_image": round(c.one_step_gflop, 3),
        "t_s": cfg.diffusion.t_s,
        "t_b": cfg.diffusion.t_b,
        "guidance_w": cfg.diffusion.guidance_w,
        **extra,
    }
    if as_json:
        out.print_json(json.dumps(row))
        return
    from rich.table import Table

    table = Table(title=f"DiffusionAD preset {cfg.preset!r} at {cfg.input_hw[0]}x{cfg.input_hw[1]}")
    table.add_column("")
    table.add_column("parameters", justify="right")
    table.add_column("GFLOP / image", justify="right")
    table.add_row("denoiser (x2 passes)", f"{c.denoiser_params / 1e6:.2f} M", f"{2 * c.denoiser_gflop_per_pass:.2f}")
    table.add_row("segmentation", f"{c.segmenter_params / 1e6:.2f} M", f"{c.segmenter_gflop:.2f}")
    table.add_row("[bold]total (one-step)", f"[bold]{c.total_params / 1e6:.2f} M", f"[bold]{c.one_step_gflop:.2f}")
    out.print(table)
    out.print(f"t_s={cfg.diffusion.t_s} t_b={cfg.diffusion.t_b} w={cfg.diffusion.guidance_w}" + (f"  step={extra['step']}" if extra else ""))
