"""Output paths checked before any work starts: a long run must never end in a traceback because
its result cannot be written.

Each check raises :class:`OutputPathError` (one line naming the path and the reason, exit code 2).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import DaeError


class OutputPathError(DaeError):
    """An output file or folder cannot be created or written."""


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def _check_creatable_dir(folder: Path, what: str, shown: Path | None = None) -> None:
    """``folder`` exists as a writable directory or can be created as one (errors name ``shown``,
    the path the user gave, default ``folder``)."""
    shown = folder if shown is None else shown
    anc = _existing_ancestor(folder)
    if not anc.is_dir():
        raise OutputPathError(f"cannot write {what} {shown}: {anc} is a file, not a folder")
    if folder.exists():
        probe_dir = folder
    else:
        probe_dir = anc
    # os.access says nothing useful for root or on some network file systems: create a file.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dae-write-test-", dir=probe_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputPathError(f"cannot write {what} {shown}: {probe_dir} is not writable ({exc.strerror})") from None


def check_output_file(path: str | Path, what: str = "output file", overwrite: bool = True, hint: str = "") -> Path:
    """``path`` can be written as a file: not a folder, parent creatable and writable; when
    ``overwrite`` is False an existing file is refused (``hint`` says how to allow it)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {what} {path}: it is a folder, give a file name")
    if path.exists() and not overwrite:
        raise OutputPathError(f"{what} {path} already exists{'; ' + hint if hint else ''}")
    _check_creatable_dir(path.parent if str(path.parent) else Path("."), what, shown=path)
    return path


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """``path`` can be used as an output folder: not a file, creatable and writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"cannot write {what} {path}: it is a file, not a folder")
    _check_creatable_dir(path, what)
    return path
