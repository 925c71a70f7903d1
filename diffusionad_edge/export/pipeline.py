"""``dae export``: checkpoint -> checked bundle for a target profile, in stages, each one function in
a module of its own; this module runs them in order in a staging folder and commits the bundle:

1. :func:`~.job.prepare` (``job.py``) — validate the options against the target and the table of
   backends, load the checkpoint (``models/checkpoint_io``) and resize it to the target's input size;
2. :func:`~.artefact.build_artefact` (``artefact.py``) — export the fixed-step graph to ONNX (checked,
   simplified) and run the backend's converter (``export/converters``): ONNX (FP32 / Q/DQ INT8),
   OpenVINO IR (FP32 / FP16 / NNCF INT8), or the ONNX a TensorRT device builds from;
3. :func:`~.thresholds.choose_thresholds` (``thresholds.py``) — decision thresholds chosen with the
   artefact itself (by the held-out normals of ``held_out.py``, synthetic anomalies as a sanity check;
   or by the user's labelled images);
4. :func:`~.acceptance.run_checks` (``acceptance.py``) — FP32 parity with PyTorch, the artefact against
   PyTorch (decisions at the chosen threshold), the TensorRT parser lint, accuracy deltas against FP32
   on an evaluation set (image AUROC, pixel AUROC, pixel AP, AUPRO: each with its limit,
   :func:`~.acceptance.accuracy_gate`; the bars are in ``checks.py``);
5. :func:`~.metadata.build_metadata` (``metadata.py``) — ``metadata.json``;
6. :func:`commit` (here) — move the finished folder into place. A failed check removes everything unless
   ``keep_failed``; an interrupted export leaves only a hidden partial folder that is deleted.

The artefact is run through the runtime (:mod:`diffusionad_edge.runtime`): the exporter uses it only to
check what it built.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import interrupts
from ..errors import DaeError
from ..files import replace_dir
from ..runtime.bundle import write_metadata
from .acceptance import run_checks
from .artefact import Artefact, artefact_runner, build_artefact
from .checks import FP32_TOLERANCE
from .job import ExportJob, ExportOptions, Log, prepare
from .metadata import build_metadata
from .thresholds import choose_thresholds

__all__ = ["ExportCheckFailed", "ExportOptions", "ExportResult", "export_bundle", "remove_stale_staging"]


class ExportCheckFailed(DaeError):
    exit_code = 3


@dataclass
class ExportResult:
    bundle: Path
    metadata: dict[str, Any]
    passed: bool
    failures: list[str] = field(default_factory=list)


def commit(job: ExportJob, art: Artefact, meta: dict[str, Any]) -> ExportResult:
    """Stage 6: write ``metadata.json`` and move the bundle into place (or refuse a failed one)."""
    failures = meta["checks"]["failures"]
    shutil.rmtree(art.staging / ".work", ignore_errors=True)
    meta = write_metadata(art.staging, meta)
    if failures and not job.opts.keep_failed:
        raise ExportCheckFailed("export checks failed (nothing written; --keep-failed keeps the bundle): " + "; ".join(failures))
    out_dir = Path(job.opts.out_dir)
    with interrupts.critical():  # Ctrl-C never leaves half a swap
        replace_dir(art.staging, out_dir)
        interrupts.set_message(f"interrupted after the bundle was written: {out_dir}")
    return ExportResult(out_dir, meta, not failures, failures)


def export_bundle(opts: ExportOptions, log: Log = print, reference_cache: dict[tuple, Any] | None = None) -> ExportResult:
    """Run the whole export; raises :class:`ExportCheckFailed` when a check fails (after writing
    the bundle only if ``keep_failed``).

    ``reference_cache``: pass the same dict to several exports of one checkpoint (``dae demo``) and
    the FP32 references (PyTorch outputs, FP32 ONNX outputs and metrics) are computed once. They
    are keyed by the checkpoint's hash, noise seed, input size, batch and evaluation set.
    """
    job = prepare(opts, log, reference_cache if reference_cache is not None else {})
    interrupts.check()
    out_dir = Path(opts.out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir, log)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-{os.getpid()}-", dir=out_dir.parent))
    try:
        with interrupts.cleanup_on_interrupt(lambda: shutil.rmtree(staging, ignore_errors=True)):
            art = build_artefact(job, staging)
            interrupts.check()
            checks: dict[str, Any] = {"tolerance_fp32": FP32_TOLERANCE, "max_drop": job.max_drop, "max_map_drops": job.max_map_drops,
                                      "check_images": int(len(art.check_images))}
            with artefact_runner(job, art, checks) as runner:
                art_pred = runner.infer(art.check_images)
                thresholds = choose_thresholds(job, runner, art, art_pred)
                interrupts.check()
                failures = run_checks(job, art, runner, art_pred, thresholds, checks)
            checks["passed"] = not failures
            checks["failures"] = failures
            meta = build_metadata(job, art, thresholds, checks)
            interrupts.check()
            return commit(job, art, meta)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


_STAGING = re.compile(r"\.partial-(\d+)-[^/]*$|\.partial-[^/-]*$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(out_dir: Path, log: Log = print) -> list[Path]:
    """Remove hidden staging folders (``.<name>.partial-<pid>-*``) that a killed export to ``out_dir``
    left behind: those whose process is gone (and those of older versions, which carry no process id).
    A concurrent export's folder (its process alive) is left alone."""
    removed = []
    for p in Path(out_dir).parent.glob(f".{glob.escape(Path(out_dir).name)}.partial-*"):
        m = _STAGING.search(p.name)
        if not p.is_dir() or m is None or (m.group(1) and _alive(int(m.group(1)))):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    if removed:
        log(f"removed {len(removed)} stale staging folder(s) of an interrupted export: {', '.join(p.name for p in removed)}")
    return removed
