"""Writing result files: atomically (readers never see a half-written file), JSON without NaN, CSV,
and NaN-aware number formatting for tables and reports. Written once here, used everywhere."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def to_json(value: Any, indent: int | None = 2) -> str:
    """Strict JSON (NaN as null; numpy scalars and paths converted)."""
    return json.dumps(nan_to_none(value), indent=indent, default=_json_default)


def write_json(path: str | Path, value: Any) -> None:
    write_text(path, to_json(value) + "\n")


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]], fields: list[str]) -> None:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def replace_dir(staging: Path, target: Path) -> None:
    """Move a finished folder into place, replacing ``target``: the old one is renamed aside first and
    deleted only once the new one is in place, so at no point is neither there."""
    if not target.exists():
        staging.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / target.name)
    try:
        staging.rename(target)
    except BaseException:
        os.replace(old / target.name, target)  # put the previous one back
        raise
    finally:
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)


def generate_dir(target: Path, make: Callable[[Path], Path]) -> Path:
    """``make(tmp)`` builds a folder beside ``target`` and returns it; it is renamed onto ``target``,
    so an interrupted run leaves no half-made folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".generating-") as tmp:
        os.replace(make(Path(tmp)), target)
    return target


def nan_to_none(value: Any) -> Any:
    """Strict JSON has no NaN (a metric is NaN when a class is absent): use null instead, recursively."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def fmt(value: Any, spec: str = ".3f", missing: str = "n/a") -> str:
    """A number for a table: ``missing`` for None and NaN. ``spec="auto"``: 4 decimals, or
    scientific below 0.01 (errors and deltas)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if spec == "auto":
        return f"{value:.2e}" if abs(value) < 1e-2 and value != 0 else f"{value:.4f}"
    return format(value, spec)
