"""Shared CLI plumbing: the console, dataset resolution and progress bars."""

from __future__ import annotations

import os
import time
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..data.builtin import generate_dataset
from ..data.mvtec import MVTecCategory

console = Console(stderr=True)
out = Console()

BUILTIN_CATEGORY = "surface"


def builtin_root() -> Path:
    """Where the built-in dataset is generated (``$DAE_CACHE`` or ``~/.cache/diffusionad_edge``)."""
    base = os.environ.get("DAE_CACHE") or Path.home() / ".cache" / "diffusionad_edge"
    return Path(base) / "builtin"


def open_dataset(data: Path | None, category: str | None) -> MVTecCategory:
    """The user's MVTec-layout folder, or the built-in generated dataset when ``data`` is None."""
    if data is not None:
        return MVTecCategory(data, category)
    root = builtin_root()
    name = category or BUILTIN_CATEGORY
    if not (root / name).is_dir():
        console.print(f"generating the built-in dataset in {root} ...")
        # Generate beside the final place and rename: an interrupted run leaves no half dataset.
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".generating-") as tmp:
            os.replace(generate_dataset(tmp, category=name), root / name)
    return MVTecCategory(root, name)


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
            self.console.print(f"{task.description}: {task.completed:g}/{task.total:g} {info}", soft_wrap=True)


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
