"""``dae demo``: the whole chain on the built-in dataset, with nothing but the install.

Generates the synthetic dataset, trains a small model on the CPU for a few minutes, evaluates it,
exports it to ONNX Runtime and OpenVINO (FP32 and INT8), benchmarks the bundles against PyTorch and
the iterative samplers, runs `dae run` on a generated video, and writes a Markdown report (with
the chart and NG overlays) whose path it prints (:func:`~diffusionad_edge.demo.run.run_demo`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..demo.run import DEMO_STEPS, FAST_STEPS, DemoOptions, DemoReporter
from .common import bars, console, print_eval_table


class _RichReporter(DemoReporter):
    """The demo on the terminal: a rule per step, lines and bars on stderr, tables on stdout."""

    def section(self, title: str) -> None:
        console.rule(title)

    def log(self, message: str) -> None:
        console.print(message)

    def bars(self, label: str, total: int, with_info: bool = True):
        return bars(label, total, with_info)

    def evaluation(self, result: dict, title: str) -> None:
        print_eval_table(result, title)

    def export_report(self, metadata: dict) -> None:
        from .export_cmd import print_report

        print_report(metadata)


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Folder for the dataset, checkpoint and report."),
    steps: int = typer.Option(
        DEMO_STEPS, min=1,
        help=f"Training steps (fixed, so the result does not depend on machine load; {DEMO_STEPS} take about 6 minutes "
        f"for `edge` on 2 idle cores with bf16). --fast: {FAST_STEPS}.",
    ),
    preset: str = typer.Option("edge", help="Model preset to train."),
    fast: bool = typer.Option(False, "--fast", help="A much smaller setting (tiny preset, small data, seconds) for tests and smoke runs."),
    seed: int = typer.Option(0, help="Seed for data, weights and noise."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier demo's folder (only one dae wrote)."),
) -> None:
    """Generate data, train, evaluate, export (ONNX Runtime, OpenVINO; FP32, INT8), benchmark, run on a
    video, and write a report: the product end to end on the CPU."""
    from ..demo.run import run_demo
    from ..interrupts import interrupt_guard

    report_path = run_demo(DemoOptions(out=out, steps=steps, preset=preset, fast=fast, seed=seed, overwrite=overwrite),
                           _RichReporter(), guard=interrupt_guard)
    print(report_path)  # once, on stdout (a script can take it from there)
