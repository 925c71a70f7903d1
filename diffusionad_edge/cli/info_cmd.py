"""``dae info``: parameters and GFLOP per image of a checkpoint or preset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..config import PRESETS
from .common import out


def info(
    checkpoint: Optional[Path] = typer.Argument(None, metavar="CHECKPOINT", help="A checkpoint (.pt) written by `dae train`."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=f"A preset instead: {', '.join(PRESETS)}."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print parameters and GFLOP per image (one-step: 2 denoiser passes + segmentation)."""
    from ..models.complexity import describe_model

    row = describe_model(checkpoint, preset)
    if as_json:
        # GFLOP to 3 decimals: a number a person reads (the library returns them exact)
        out.print_json(json.dumps({k: round(v, 3) if k in _GFLOP_KEYS else v for k, v in row.items()}))
        return
    from rich.table import Table

    h, w = row["input_hw"]
    table = Table(title=f"DiffusionAD preset {row['preset']!r} at {h}x{w}")
    table.add_column("")
    table.add_column("parameters", justify="right")
    table.add_column("GFLOP / image", justify="right")
    table.add_row("denoiser (x2 passes)", f"{row['denoiser_params'] / 1e6:.2f} M", f"{2 * row['denoiser_gflop_per_pass']:.2f}")
    table.add_row("segmentation", f"{row['segmenter_params'] / 1e6:.2f} M", f"{row['segmenter_gflop']:.2f}")
    table.add_row("[bold]total (one-step)", f"[bold]{row['total_params'] / 1e6:.2f} M", f"[bold]{row['one_step_gflop_per_image']:.2f}")
    out.print(table)
    out.print(f"t_s={row['t_s']} t_b={row['t_b']} w={row['guidance_w']}" + (f"  step={row['step']}" if "checkpoint" in row else ""))


_GFLOP_KEYS = ("denoiser_gflop_per_pass", "segmenter_gflop", "one_step_gflop_per_image")
