"""``dae bench``: latency/FPS/accuracy table across bundles and the PyTorch reference."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import console, out, print_table


def bench(
    bundles: Optional[list[Path]] = typer.Argument(None, metavar="BUNDLE", help="Bundle folders to benchmark."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Add PyTorch reference rows for this checkpoint."),
    iterations: int = typer.Option(30, min=1, help="Timed iterations per row (after warm-up)."),
    seconds: Optional[float] = typer.Option(None, min=0.1, help="Or stop a row after this many seconds."),
    warmup: int = typer.Option(3, min=0, help="Untimed warm-up iterations."),
    rounds: int = typer.Option(1, min=1, help="Time the latency rows (bundles, PyTorch one-step) in turns: N rounds of "
                               "iterations/N each, the order rotating, so a change in machine load falls on every row alike "
                               "(ratios between rows from one run). 1: one row after another."),
    batch: str = typer.Option("1", help="Batch sizes for the PyTorch rows, e.g. 1,4 (bundles use their fixed batch)."),
    iterative: bool = typer.Option(True, help="Add the paper's iterative rows (DDPM from t_b, DDIM 30) for the checkpoint."),
    iterative_iterations: int = typer.Option(1, min=1, help="Timed runs of each iterative row (they are slow)."),
    iterative_eval_limit: int = typer.Option(12, min=0,
                                             help="Images for the iterative rows' accuracy (0: timing only; they make hundreds of network calls per image)."),
    iterative_start: Optional[int] = typer.Option(None, min=1, help="Start the iterative rows at this t (default: the model's t_b=400, the paper's setting)."),
    throughput: bool = typer.Option(False, help="Add a throughput row per OpenVINO bundle: several requests in flight "
                                    "with the THROUGHPUT hint, as OpenVINO's benchmark_app measures by default."),
    eval_data: Optional[Path] = typer.Option(None, help="MVTec-layout folder: accuracy beside speed."),
    eval_category: Optional[str] = typer.Option(None, help="Category under --eval-data."),
    eval_limit: Optional[int] = typer.Option(None, min=1, help="Evaluate at most N test images per row."),
    out_dir: Path = typer.Option(Path("bench_out"), "--out", "-o", help="Folder for bench.json, bench.md and the charts."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout instead of the table."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier run's results in --out (only a folder dae wrote)."),
) -> None:
    """Benchmark bundles and the PyTorch model: p50/p90/p99 per stage, FPS, GFLOP/s, memory, size, accuracy."""
    from ..bench.benchmark import BenchConfig
    from ..bench.report import COLUMNS, COMPACT_COLUMNS, row_cells
    from ..bench.run import run_bench

    cfg = BenchConfig(warmup=warmup, iterations=iterations, seconds=seconds, iterative_iterations=iterative_iterations, rounds=rounds,
                      iterative_start=iterative_start, iterative_eval_limit=iterative_eval_limit,
                      eval_data=eval_data, eval_category=eval_category, eval_limit=eval_limit)
    result, paths = run_bench(bundles or [], checkpoint, cfg, batch, iterative, throughput, out_dir, overwrite, log=console.print)
    if as_json:
        from ..files import to_json

        print(to_json(result))
        console.print("written: " + ", ".join(str(p) for p in paths.values()))
        return
    # All columns where the terminal is wide enough, else the essentials (bench.md has them all).
    columns = COLUMNS if out.width >= 200 else COMPACT_COLUMNS
    table = Table(title="dae bench" if columns is COLUMNS else "dae bench (essential columns; all in bench.md)")
    for c in columns:
        table.add_column(c, justify="left" if c in ("row", "runs as", "speed-up vs iterative") else "right")
    for r in result["rows"]:
        cells = dict(zip(COLUMNS, row_cells(r)))
        table.add_row(*(cells[c] for c in columns))
    print_table(table)
    console.print("written: " + ", ".join(str(p) for p in paths.values())
                  + ("" if "chart" in paths else " (no charts: pip install 'diffusionad_edge[charts]')"))
