"""``dae bench`` as one call: :func:`run_bench` checks the output folder, measures a row per bundle
(and an OpenVINO throughput row when asked) and the PyTorch reference rows of a checkpoint, adds the
relative numbers and writes ``bench.json``, ``bench.md`` and the charts. The CLI parses the options,
calls it and prints the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from ..paths import check_apart, check_results_dir, fresh_output_dir
from .benchmark import BenchConfig, Row, add_relative_numbers, bench_bundle, bench_interleaved, bench_pytorch
from .machine import describe_machine
from .report import write_outputs
from .throughput import openvino_throughput


def parse_batches(batch: str) -> list[int]:
    """``"1,4"`` -> ``[1, 4]`` (``--batch``)."""
    try:
        return [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--batch must be comma-separated integers (got {batch!r})") from None


def run_bench(bundles: Sequence[str | Path], checkpoint: str | Path | None, cfg: BenchConfig, batches: Sequence[int] | str = (1,),
              iterative: bool = True, throughput: bool = False, out_dir: str | Path = Path("bench_out"), overwrite: bool = False,
              log: Callable[[str], None] = print) -> tuple[dict[str, Any], dict[str, Path]]:
    """Benchmark ``bundles`` and, with ``checkpoint``, its PyTorch reference rows (one per batch size
    in ``batches``, a list or ``"1,4"``; the paper's iterative rows with ``iterative``); with
    ``throughput`` also a throughput row per OpenVINO bundle. ``out_dir`` is checked before any
    timing (never an input, an earlier results folder only with ``overwrite``), then holds the
    results. ``cfg.rounds`` > 1: the latency rows are timed in turns (:func:`bench_interleaved`), the
    throughput and iterative rows after them. ``log``: a line as each bundle (or the checkpoint) starts. Returns the result
    (``machine``, ``config``, ``rows``) and the paths written."""
    # a script's strings as well as the CLI's paths
    bundles, out_dir = [Path(b) for b in bundles], Path(out_dir)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if not bundles and checkpoint is None:
        raise ConfigError("give bundle folders and/or --checkpoint")
    # before minutes of timing
    check_apart(out_dir, "bench folder (--out)", [*(("the bundle", b) for b in bundles), ("the checkpoint", checkpoint),
                                                  ("the evaluation data", cfg.eval_data)])
    check_results_dir(out_dir, "bench folder (--out)", overwrite)
    batches = parse_batches(batches) if isinstance(batches, str) else list(batches)
    gflop = None
    if checkpoint is not None:
        from ..models.checkpoint_io import load_model
        from ..models.complexity import measure_complexity

        gflop = measure_complexity(load_model(checkpoint)[0]).one_step_gflop
    if cfg.rounds > 1:
        log(f"bench {len(bundles) + (len(batches) if checkpoint is not None else 0)} latency rows in turns, {cfg.rounds} rounds ...")
        bundle_rows, torch_rows = bench_interleaved(list(bundles), checkpoint, cfg, batches, gflop)
    measured: list[tuple[Row, Path]] = []  # each bundle row with its bundle's folder
    for i, b in enumerate(bundles):
        if cfg.rounds > 1:
            latency = bundle_rows[i]
        else:
            log(f"bench {b} ...")
            latency = bench_bundle(b, cfg, gflop)
        measured.append((latency, b))
        if throughput and (row := openvino_throughput(b, cfg, gflop)) is not None:
            row.accuracy = latency.accuracy  # the same model on the same data
            measured.append((row, b))
    _name_apart(measured)
    rows = [row for row, _ in measured]
    if checkpoint is not None:
        log(f"bench PyTorch reference rows for {checkpoint} ...")
        if cfg.rounds > 1:
            rows += torch_rows
        rows += bench_pytorch(checkpoint, cfg, batches, iterative, one_step=cfg.rounds <= 1)
    add_relative_numbers(rows)
    result = {"machine": describe_machine(), "config": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()},
              "rows": [r.to_dict() for r in rows]}
    return result, write_outputs(result, fresh_output_dir(out_dir, "dae bench"))


def _name_apart(measured: list[tuple[Row, Path]]) -> None:
    """Bundle rows of the same name (the same target and precision: two models, or two exports of one)
    get their bundle folder's name added, so the table tells them apart."""
    names = [row.name for row, _ in measured]
    for row, path in measured:
        if names.count(row.name) > 1:
            row.name = f"{row.name} ({path.name})"
