"""The ``dae`` command: a thin Typer layer over the library.

User mistakes (:class:`~diffusionad_edge.errors.DaeError`) become one line on stderr and a
non-zero exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import warnings

import typer

from ..errors import DaeError
from ..interrupts import Interrupted
from . import bench_cmd, data_cmd, demo_cmd, eval_cmd, export_cmd, info_cmd, predict_cmd, run_cmd, train_cmd

app = typer.Typer(
    name="dae",
    help="DiffusionAD for the edge: train, evaluate, export, run and benchmark anomaly detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("train")(train_cmd.train)
app.command("eval")(eval_cmd.evaluate_cmd)
app.command("info")(info_cmd.info)
app.command("export")(export_cmd.export)
app.command("targets")(export_cmd.targets)
app.command("run")(run_cmd.run)
app.command("predict")(predict_cmd.predict)
app.command("bench")(bench_cmd.bench)
app.command("demo")(demo_cmd.demo)
app.add_typer(data_cmd.app, name="data")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main() -> None:
    # Library warnings (ours and our dependencies') as one line each, not source excerpts.
    warnings.formatwarning = _one_line_warning
    try:
        app()
    except Interrupted as exc:  # Ctrl-C: what was kept, not an error
        print(str(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except DaeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
