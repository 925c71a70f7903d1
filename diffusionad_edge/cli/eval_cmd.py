"""``dae eval``: image/pixel AUROC, pixel AP and AUPRO per defect type."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import MODES
from ..errors import ConfigError
from ..files import to_json, write_json
from ..paths import OVERWRITE_HINT, check_apart, check_output_file
from .common import console, open_dataset, out, print_eval_table, progress_bar


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
    from ..data.framing import preprocessing_of
    from ..evaluate.evaluator import evaluate
    from ..models.checkpoint_io import load_model
    from ..runtime.backends.torch import TorchRunner
    from ..train.trainer import resolve_device

    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)} (got {mode!r})")
    to_stdout = json_out is not None and str(json_out) == "-"
    if json_out is not None and not to_stdout:
        # before the evaluation, not after it
        check_apart(json_out, "results file (--json)", [("the checkpoint", checkpoint), ("the data", data)])
        check_output_file(json_out, "results file (--json)", overwrite=overwrite, hint=OVERWRITE_HINT)
    model, payload = load_model(checkpoint)
    if map_sigma is not None:
        model.set_map_sigma(map_sigma)
    if data is None and category is None:
        trained_on = payload.get("data", {}).get("root")
        data = Path(trained_on) if trained_on else None
    dataset = open_dataset(data, category)
    if noise_study:
        from ..evaluate.noise_study import noise_study as run_study

        study = run_study(model, dataset, noise_study, resolve_device(device), limit, progress=lambda m: console.print(m))
        study.update({"checkpoint": str(checkpoint), "dataset": str(dataset.path)})
        out.print_json(to_json(study, indent=None))
        if json_out is not None and not to_stdout:
            write_json(json_out, study)
        return
    predict = TorchRunner(model, resolve_device(device), mode, ddim_steps)
    with progress_bar(f"eval {mode}", len(dataset.test_samples) if limit is None else min(limit, len(dataset.test_samples)), extra=False) as bar:
        result = evaluate(dataset, predict, preprocessing_of(model.config, payload), batch_size,
                          progress=lambda done, total: bar.update(bar.task_ids[0], completed=done), limit=limit)
    result.extra.update({"checkpoint": str(checkpoint), "dataset": str(dataset.path), "mode": mode,
                         "map_sigma": model.config.diffusion.map_sigma,
                         "preset": model.config.preset, "step": payload.get("step")})
    if to_stdout:
        print(to_json(result.to_dict()))
        return
    sigma = model.config.diffusion.map_sigma
    print_eval_table(result.to_dict(), f"{dataset.name}: {model.config.preset} @ step {payload.get('step')}, {mode}, "
                                       f"{f'map blurred (sigma {sigma:g} px)' if sigma else 'raw map'}")
    if json_out is not None:
        write_json(json_out, result.to_dict())
        console.print(f"results written to {json_out}")
