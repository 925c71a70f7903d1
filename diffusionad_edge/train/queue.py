"""A queue of categories: ``dae train --data ROOT --category all`` (or ``a,b,c``).

Each category trains in turn into ``<out>/<category>.pt``. A run that is started again picks up
where it was: a finished checkpoint (its steps or minutes reached) is skipped, an interrupted one is
resumed. A category that fails (bad data, a corrupt checkpoint) is reported and the queue goes on;
the summary table (steps, minutes, held-out AUROC per category) says what happened to each.

Nothing here imports torch: the training itself is the ``train_one`` callable the CLI passes in.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, DaeError
from ..files import atomic_write
from ..interrupts import EXIT_CODE as INTERRUPTED

#: Written next to the checkpoints.
SUMMARY_NAME = "summary.csv"


class QueueFailed(DaeError):
    """At least one category of the queue failed; the others were trained."""

    exit_code = 1


@dataclass
class CategoryOutcome:
    """What the queue did with one category."""

    category: str
    status: str  # trained | resumed | skipped | failed
    checkpoint: Path | None = None
    steps: int | None = None
    minutes: float | None = None
    auroc: float | None = None  # held-out normals vs synthetic anomalies (never the test set)
    error: str = ""

    def row(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "status": self.status,
            "steps": "" if self.steps is None else self.steps,
            "minutes": "" if self.minutes is None else f"{self.minutes:.2f}",
            "heldout_auroc": "" if self.auroc is None else f"{self.auroc:.3f}",
            "checkpoint": "" if self.checkpoint is None else str(self.checkpoint),
            "error": self.error,
        }


def is_queue(category: str | None) -> bool:
    """``all`` or a comma-separated list asks for a queue; one name is a plain run."""
    return category is not None and (category.strip() == "all" or "," in category)


def queue_categories(root: Path, spec: str) -> list[str]:
    """The categories ``spec`` names under ``root``: ``all`` = every sub-folder with a ``train``
    folder (sorted); otherwise the comma-separated names, in the order given (each once)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--data {root} is not a folder")
    if spec.strip() == "all":
        names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and (d / "train").is_dir())
        if not names:
            raise ConfigError(f"--category all: no category folder (with a train/ folder) under {root}")
        return names
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    if not names:
        raise ConfigError(f"--category {spec!r} names no category")
    return names


def checkpoint_progress(path: Path) -> dict[str, Any] | None:
    """``step``, ``minutes``, ``auroc`` and ``resumable`` of an existing checkpoint (None: no file).
    A corrupt file raises :class:`~diffusionad_edge.errors.CheckpointError`."""
    if not path.exists():
        return None
    from ..models.checkpoint_io import read_checkpoint

    payload = read_checkpoint(path)
    return {
        "step": int(payload.get("step", 0)),
        "minutes": float(payload.get("train_seconds", 0.0)) / 60,
        "auroc": (payload.get("validation") or {}).get("synthetic_image_auroc"),
        "resumable": "optim_denoiser" in payload,
    }


def is_finished(progress: dict[str, Any], steps: int, minutes: float | None) -> bool:
    """The run reached its target: the steps, or (time-boxed) the minutes."""
    return progress["step"] >= steps or (minutes is not None and progress["minutes"] >= minutes)


#: train_one(category, checkpoint path, resume from it?) -> (step, minutes, held-out AUROC or None)
TrainOne = Callable[[str, Path, bool], "tuple[int, float, float | None]"]


def run_queue(
    categories: list[str],
    out_dir: Path,
    train_one: TrainOne,
    steps: int,
    minutes: float | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    is_fatal: Callable[[BaseException], bool] = lambda exc: False,
) -> list[CategoryOutcome]:
    """Train each category in turn; never stops for one category's failure unless ``is_fatal``
    says the whole job is broken (a lost training process). Ctrl-C propagates (the category in
    flight saved its checkpoint; running the queue again resumes it)."""
    outcomes: list[CategoryOutcome] = []
    for i, name in enumerate(categories, 1):
        path = Path(out_dir) / f"{name}.pt"
        log(f"[{i}/{len(categories)}] {name} -> {path}")
        try:
            progress = None if overwrite else checkpoint_progress(path)
            if progress is not None and is_finished(progress, steps, minutes):
                log(f"{name}: already finished (step {progress['step']}, {progress['minutes']:.1f} min): skipped")
                outcomes.append(CategoryOutcome(name, "skipped", path, progress["step"], progress["minutes"], progress["auroc"]))
                continue
            if progress is not None and not progress["resumable"]:
                raise DaeError(f"{path} exists but holds no optimiser state, so it cannot be resumed; move it away or pass --overwrite")
            resume = progress is not None
            if resume:
                log(f"{name}: resuming from step {progress['step']}")
            step, mins, auroc = train_one(name, path, resume)
            outcomes.append(CategoryOutcome(name, "resumed" if resume else "trained", path, step, mins, auroc))
        except Exception as exc:
            if getattr(exc, "exit_code", None) == INTERRUPTED or is_fatal(exc):  # Ctrl-C: stop the queue
                raise
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not isinstance(exc, DaeError):
                message = f"{type(exc).__name__}: {message}"
            log(f"{name}: failed: {message} (going on with the next category)")
            outcomes.append(CategoryOutcome(name, "failed", error=message))
    return outcomes


def write_summary(outcomes: list[CategoryOutcome], path: Path) -> None:
    """The summary table as CSV (one row per category), written atomically."""
    buf = io.StringIO()
    fields = list(CategoryOutcome("x", "x").row())
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for o in outcomes:
        writer.writerow(o.row())
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def failure_error(outcomes: list[CategoryOutcome], summary: Path) -> QueueFailed | None:
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return None
    names = ", ".join(o.category for o in failed)
    return QueueFailed(
        f"{len(failed)} of {len(outcomes)} categories failed ({names}); the others went on: see {summary}"
    )
