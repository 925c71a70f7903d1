"""Output paths checked before any work starts: a long run must never end in a traceback because
its result cannot be written, and nothing the user has is ever lost to an output.

Each check raises :class:`OutputPathError` (one line naming the path and the reason, exit code 2).

The rules (every verb that writes files follows them):

- an output is never an input: not the same file, not the same folder, not inside an input folder,
  and no input inside an output folder (:func:`check_apart`);
- an existing output file is replaced only with ``overwrite`` (``--overwrite``), and then only when it
  is a regular file: a device node, pipe or socket is never replaced (:func:`check_output_file`);
- an output *folder* (results, bench, demo, NG frames) is used when it is new or empty; one that
  holds files is replaced only with ``overwrite`` and only when this toolkit wrote it
  (:func:`written_by_dae`: the marker file :data:`MARKER` that every such folder gets, or a bundle's
  ``metadata.json``) (:func:`check_results_dir`, :func:`fresh_output_dir`).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

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
    ``overwrite`` is False an existing file is refused (``hint`` says how to allow it). Something
    that exists but is not a regular file (a device such as ``/dev/full``, a pipe, a socket) is
    refused even with ``overwrite``: writing atomically would replace it by a regular file."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {what} {path}: it is a folder, give a file name")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"cannot write {what} {path}: it exists and is not a regular file (a device, pipe or socket); "
                              "dae only replaces regular files")
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


#: The file every output folder this toolkit fills (dae predict --out, dae bench --out, dae demo
#: --out, dae run --save-frames) carries: with it, ``--overwrite`` may replace the folder.
MARKER = ".dae-output"
#: ``--overwrite`` in the hint of a refusal
OVERWRITE_HINT = "pass --overwrite to replace it"


def written_by_dae(folder: str | Path) -> bool:
    """True when ``folder`` is one this toolkit wrote: it carries :data:`MARKER`, or it is a bundle
    (a ``metadata.json`` of the bundle format). Only such folders are ever replaced by ``--overwrite``."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return True
    try:
        meta = json.loads((folder / "metadata.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == "diffusionad_edge.bundle"


def check_results_dir(path: str | Path, what: str, overwrite: bool) -> Path:
    """``path`` can be used as an output folder that a run fills: creatable and writable, and new or
    empty, or written by this toolkit and ``overwrite`` given (see the module docstring)."""
    path = check_output_dir(path, what)
    if path.is_dir() and any(path.iterdir()):
        if not written_by_dae(path):
            raise OutputPathError(f"{what} {path} is not empty and was not written by dae; choose a new or empty folder "
                                  "(--overwrite replaces only folders dae wrote)")
        if not overwrite:
            raise OutputPathError(f"{what} {path} holds the results of an earlier run; {OVERWRITE_HINT}")
    return path


def fresh_output_dir(path: str | Path, verb: str) -> Path:
    """Create the output folder ``path`` (checked by :func:`check_results_dir`) empty, with
    :data:`MARKER`: an earlier run's files (checked to be dae's and ``--overwrite`` given) are removed
    first, so no stale overlay or chart of that run is mixed with this one's."""
    path = Path(path)
    if path.is_dir() and any(path.iterdir()):
        if not written_by_dae(path):  # checked before the work started; never delete a user's folder
            raise OutputPathError(f"{path} is not empty and was not written by dae; not replaced")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text(json.dumps({"written_by": verb}) + "\n")
    return path


def glob_root(pattern: str) -> Path:
    """The folder a glob pattern searches (the part before its first wildcard)."""
    parts = Path(pattern).parts
    static = []
    for part in parts:
        if glob.has_magic(part):
            break
        static.append(part)
    return Path(*static) if static else Path(".")


def input_paths(sources: Iterable[str | Path]) -> list[Path]:
    """The files and folders behind a list of sources as the user gave them: a file, a folder, or a
    glob (its folder). Camera indices, URLs and GStreamer pipelines have none."""
    found: list[Path] = []
    for source in sources:
        text = str(source)
        if text.isdigit() or "://" in text or "!" in text:
            continue
        found.append(glob_root(text) if glob.has_magic(text) and not Path(text).exists() else Path(text))
    return found


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def check_apart(output: str | Path, what: str, inputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """``output`` (a file or folder about to be written) is none of ``inputs`` (``(description, path)``
    pairs; None is skipped): not the same file or folder, not inside an input folder, and no input
    inside it. Raises :class:`OutputPathError` otherwise (an output must never clobber or be read back
    as an input)."""
    out = Path(output)
    out_r = out.resolve()
    for desc, given in inputs:
        if given is None:
            continue
        inp = Path(given)
        inp_r = inp.resolve()
        if _same(out, inp):
            kind = "folder" if inp.is_dir() else "file"
            relation = f"is the same {kind} as"
        elif inp.is_dir() and _inside(out_r, inp_r):
            relation = "is inside"
        elif _inside(inp_r, out_r):
            relation = "contains"
        else:
            continue
        raise OutputPathError(f"{what} {out} {relation} {desc} {inp}: an output never overwrites or mixes with an input; "
                              "choose another path")

