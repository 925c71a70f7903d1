"""Shared CLI plumbing: the consoles, tables and progress bars."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..files import fmt

console = Console(stderr=True)
out = Console()

def print_table(table, wrap: tuple[str, ...] = ("description", "note", "speed-up vs iterative", "error")) -> None:
    """Print a rich table without ever cutting a cell short with an ellipsis. On a terminal, only the
    columns named in ``wrap`` (free text) wrap onto more lines when it is narrow; names, paths and
    numbers keep their full width. Piped or redirected (no terminal), the table is as wide as its
    content needs, whatever the width a terminal would have."""
    from rich.measure import Measurement

    for col in table.columns:
        col.overflow = "fold"
        if str(col.header) not in wrap:
            col.no_wrap = True
            col.min_width = max([len(str(col.header))] + [len(str(c)) for c in col._cells])
        else:
            col.min_width = min(24, max([len(str(c)) for c in col._cells] + [1]))
    if out.is_terminal:
        out.print(table)
        return
    needed = Measurement.get(out, out.options.update(width=100_000), table).maximum
    Console(file=out.file, width=max(out.width, needed), color_system=None).print(table)


def rounded(value, digits: int = 3):
    """``value`` (nested dicts/lists) with every float rounded to ``digits`` decimals: JSON a person reads."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def plural(n: int, word: str) -> str:
    """``"1 image"``, ``"2 images"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


class _LoggedProgress(Progress):
    """A progress bar that, when stderr is not a terminal (CI, nohup, a log file), also prints a
    plain line every ``interval`` seconds: rich alone would print nothing until the end."""

    interval = 15.0

    def update(self, task_id, **kwargs) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        if self.console.is_terminal:
            return
        now = time.monotonic()
        task = self._tasks[task_id]
        if now - getattr(self, "_last_log", 0.0) >= self.interval or task.finished:
            self._last_log = now
            info = task.fields.get("info", "")
            # plain integers: a fractional count (a time-based bar) reads as "0.818118/240" otherwise
            total = "?" if task.total is None else int(task.total)
            self.console.print(f"{task.description}: {int(task.completed)}/{total} {info}".rstrip(), soft_wrap=True)


@contextmanager
def progress_bar(description: str, total: int, extra: bool = True) -> Iterator[Progress]:
    """A rich progress bar on stderr with an optional free-text field ``info``."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if extra:
        columns.append(TextColumn("{task.fields[info]}"))
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    with _LoggedProgress(*columns, console=console, transient=False) as progress:
        progress.add_task(description, total=total, info="")
        yield progress


@contextmanager
def bars(label: str, total: int, with_info: bool = True) -> Iterator[Callable[..., None]]:
    """:func:`progress_bar` for a library job (:class:`~diffusionad_edge.progress.Bars`): yields its
    ``update(completed, info=None)``."""
    with progress_bar(label, total, extra=with_info) as bar:
        task = bar.task_ids[0]

        def update(completed: float, info: str | None = None) -> None:
            if info is None:
                bar.update(task, completed=completed)
            else:
                bar.update(task, completed=completed, info=info)

        yield update


def print_eval_table(res: dict, title: str) -> None:
    """An evaluation result (``EvalResult.to_dict()``) as a table: per defect type and overall."""
    from rich.table import Table

    from ..evaluate.metrics import METRIC_NAMES  # scipy and scikit-learn: not at CLI import

    table = Table(title=title)
    table.add_column("defect type")
    table.add_column("images", justify="right")
    for name in METRIC_NAMES:
        table.add_column(name.replace("_", " "), justify="right")
    for defect, metrics in res["per_type"].items():
        table.add_row(defect, str(res["counts"].get(defect, "")), *(fmt(metrics[n]) for n in METRIC_NAMES))
    table.add_row("[bold]overall", str(sum(res["counts"].values())), *(f"[bold]{fmt(res['overall'][n])}" for n in METRIC_NAMES))
    out.print(table)
    out.print(f"{res['seconds_per_image'] * 1000:.1f} ms per image (model only, mean over this evaluation's batches; "
              "for latency, one request at a time, use `dae bench`)")
