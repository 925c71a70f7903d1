"""``dae eval``: image/pixel AUROC, pixel AP and AUPRO per defect type."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import MODES
from ..files import to_json
from .common import bars, console, out, print_eval_table


def evaluate_cmd(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="Checkpoint written by `dae train`."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="MVTec-layout root or category folder. Default: the dataset the checkpoint was trained on."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Category folder under --data."),
    mode: str = typer.Option("one-step", help=f"Inference paradigm: {', '.join(MODES)}."),
    ddim_steps: int = typer.Option(30, help="Steps of the ddim mode."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(8, min=1, help="Images per forward pass."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate at most N test images (balanced over types), e.g. for the slow iterative mode."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results to this JSON file; `--json -`: print only JSON on stdout."),
    noise_study: int = typer.Option(0, min=0, help="Instead: compare the fixed noise with N runs of fresh per-image noise (metrics and score jitter)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file (a regular file only)."),
    map_sigma: Optional[float] = typer.Option(None, min=0.0, max=32.0, help="Gaussian blur (pixels) of the anomaly map before "
                                              "the metrics and the image score; 0: the raw map. Default: the checkpoint's own."),
) -> None:
    """Evaluate a checkpoint on the test split; prints a table, optionally writes JSON."""
    from ..evaluate.run import check_mode, evaluate_checkpoint, study_noise

    to_stdout = json_out is not None and str(json_out) == "-"
    results_file = None if to_stdout else json_out
    if noise_study:
        check_mode(mode)  # not used by the study, but still checked as without --noise-study
        study = study_noise(checkpoint, noise_study, data, category, device, limit, map_sigma, results_file, overwrite,
                            log=lambda m: console.print(m))
        out.print_json(to_json(study, indent=None))
        return
    result = evaluate_checkpoint(checkpoint, data, category, mode, ddim_steps, device, batch_size, limit, map_sigma,
                                 results_file, overwrite, log=console.print, bars=bars).to_dict()
    if to_stdout:
        print(to_json(result))
        return
    sigma = result["map_sigma"]
    name = Path(result["dataset"]).resolve().name  # the dataset's name, as MVTecCategory.name
    print_eval_table(result, f"{name}: {result['preset']} @ step {result['step']}, {mode}, "
                             f"{f'map blurred (sigma {sigma:g} px)' if sigma else 'raw map'}")
    if json_out is not None:
        console.print(f"results written to {json_out}")
