"""Refit a bundle's thresholds from reviewed frames, without re-exporting (``dae export BUNDLE
--refit-threshold REVIEW_DIR``).

The operator's "good part" frames (a review folder, :mod:`.review`) join the normals that placed the
bundle's thresholds at export, and the thresholds are placed again by the rule that placed them:

- the normals: the scores the bundle recorded at export (``thresholds.scores.normal``: its held-out
  normals, or the good images of ``--threshold-data``, scored by the exported model itself), plus
  every frame of ``REVIEW_DIR/good`` scored now by the bundle's own runner (the backend it runs on);
- the anomalies, which never move the ``normals`` rule but give the expected miss rate (and take part
  in ``best-f1``): the recorded ones (``thresholds.scores.anomalous``) plus ``REVIEW_DIR/defect``;
- the image threshold: the rule recorded in ``thresholds.rule_params`` (``normals`` with its margin,
  ``best-f1``, or a target false-alarm rate; a threshold set by hand is placed again by the rule that
  placed it before);
- the pixel threshold: the ``normals`` rule over each normal map's highest pixel, the recorded ones
  (``thresholds.pixel_rule.normal_map_max``) plus the good frames'. A bundle that records no map
  maxima (exported before refits existed, or by ``best-f1``, whose pixel threshold needs every pixel)
  keeps its pixel threshold, said in a note.

What export recorded is kept under ``thresholds.refit.base``, so a second refit starts from it again
(with the review folder as it is then), never from a previous refit's result: refitting twice from
the same folder gives the same thresholds.

The model files are not touched. ``metadata.json`` is rewritten with a new integrity record in one
atomic rename, after the previous one was copied to ``metadata.json.<time>.bak`` (never overwritten).
Everything slow (scoring the frames) happens before; Ctrl-C there (under
:func:`~diffusionad_edge.interrupts.interrupt_guard`) leaves the bundle as it was.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import interrupts
from ..errors import DaeError, DataError
from .bundle import METADATA, BundleError, load_bundle, read_metadata, verify_files, write_metadata
from .review import DEFECT, GOOD, ReviewedFrame, create_new_file, read_review, review_time
from .thresholds import Thresholds, decision, normals_threshold

Log = Callable[[str], None]


class RefitError(DaeError):
    """A refit that cannot be done (no good frames, a bundle without recorded normals): nothing written."""


@dataclass
class ScoredFrame:
    """A reviewed frame scored by the bundle: its decision before and after the refit."""

    path: Path
    verdict: str
    score: float
    map_max: float
    old: str | None
    new: str | None

    @property
    def changed(self) -> bool:
        return self.old != self.new


@dataclass
class RefitResult:
    bundle: Path
    old: dict[str, Any]
    new: dict[str, Any]
    frames: list[ScoredFrame]
    recorded_normals: int
    recorded_anomalies: int
    backup: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def good(self) -> list[ScoredFrame]:
        return [f for f in self.frames if f.verdict == GOOD]

    @property
    def defects(self) -> list[ScoredFrame]:
        return [f for f in self.frames if f.verdict == DEFECT]

    @property
    def changed(self) -> list[ScoredFrame]:
        """The reviewed frames whose decision the refit changes."""
        return [f for f in self.frames if f.changed]

    def recall(self, which: str = "new") -> float | None:
        """Share of the confirmed defects decided NG at the old or new thresholds (None without defects)."""
        defects = self.defects
        if not defects:
            return None
        return sum((f.new if which == "new" else f.old) == "NG" for f in defects) / len(defects)


def _rule(thr: dict[str, Any]) -> tuple[str, float | None, float | None]:
    """The rule that placed the image threshold: (rule, margin_sd, false_alarm_rate). A threshold
    set by hand is placed again by the rule that placed it before it was set."""
    params = thr.get("rule_params")
    if isinstance(params, dict) and params.get("name") == "set":
        params = params.get("placed_by")
    if not isinstance(params, dict):
        return "normals", None, None
    name = params.get("name")
    if name == "best-f1":
        return "best-f1", None, None
    if name == "false-alarm-rate":
        return "normals", None, float(params["rate"])
    return "normals", params.get("margin_sd"), None


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values] if isinstance(values, list) else []


def _base(thr: dict[str, Any]) -> dict[str, Any]:
    """What export recorded: the normal and anomalous scores and the normals' map maxima (kept from the
    first refit on under ``refit.base``)."""
    refit = thr.get("refit")
    if isinstance(refit, dict) and isinstance(refit.get("base"), dict):
        return refit["base"]
    scores = thr.get("scores") if isinstance(thr.get("scores"), dict) else {}
    pixel_rule = thr.get("pixel_rule") if isinstance(thr.get("pixel_rule"), dict) else {}
    return {"normal": _floats(scores.get("normal")), "anomalous": _floats(scores.get("anomalous")),
            "normal_map_max": _floats(pixel_rule.get("normal_map_max")) if pixel_rule.get("name") == "normals" else [],
            "pixel_rule": {k: v for k, v in pixel_rule.items() if k != "normal_map_max"}, "source": thr.get("source", "")}


def refit_thresholds(folder: str | Path, review_dir: str | Path, log: Log = print, backend: str | None = None,
                     on_frame: Callable[[int], None] | None = None) -> RefitResult:
    """Place a bundle's thresholds again with the reviewed frames of ``review_dir`` (see the module
    docstring) and write the bundle; returns what changed. ``on_frame(i)``: called after each frame is
    scored (progress; tests use it). :class:`RefitError` (exit code 2, the bundle untouched) when
    ``review_dir/good`` holds no frame or the bundle records no normal scores."""
    folder, review_dir = Path(folder), Path(review_dir)
    meta = read_metadata(folder)
    verify_files(folder, meta)
    original = (folder / METADATA).read_bytes()
    review = read_review(review_dir)
    if not review.good:
        raise RefitError(f"no good frames in {review_dir / GOOD}: a refit places the thresholds above reviewed good parts; "
                         "nothing written")
    old = dict(meta.get("thresholds") or {})
    base = _base(old)
    if not base["normal"]:
        raise RefitError(f"{folder} records no normal scores (thresholds.scores): re-export it with this version to refit it; "
                         "nothing written")
    notes = list(review.skipped)
    rule, margin_sd, false_alarm_rate = _rule(old)
    frames = review.good + review.defect
    log(f"scoring {len(review.good)} good and {len(review.defect)} defect frames of {review_dir} with the bundle's "
        f"runner ({meta['backend']}) ...")
    scored: list[tuple[ReviewedFrame, float, float]] = []  # frame, score, highest map pixel
    with load_bundle(folder, backend=backend, verify=False) as bundle:
        for i, f in enumerate(frames):
            interrupts.check()  # Ctrl-C: stop between two frames, nothing written
            try:
                r = bundle.predict(f.image)
            except DataError as exc:
                notes.append(f"skipped {f.image}: {exc}")
                continue
            scored.append((f, float(r.score), float(np.max(r.anomaly_map))))
            if on_frame is not None:
                on_frame(i)
            if (i + 1) % 100 == 0:
                log(f"  {i + 1}/{len(frames)} frames scored")
    interrupts.check()
    good = [(f, s, m) for f, s, m in scored if f.verdict == GOOD]
    defects = [(f, s, m) for f, s, m in scored if f.verdict == DEFECT]
    if not good:
        raise RefitError(f"none of the good frames in {review_dir / GOOD} could be read ({'; '.join(notes)}); nothing written")

    normal = np.r_[base["normal"], [s for _, s, _ in good]]
    anomalous = np.r_[base["anomalous"], [s for _, s, _ in defects]]
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    pixel, pixel_rule = old.get("pixel"), dict(old.get("pixel_rule") or {})
    if base["normal_map_max"]:
        pixel_margin = (base.get("pixel_rule") or {}).get("margin_sd")
        maxima = np.r_[base["normal_map_max"], [m for _, _, m in good]]
        pixel, pixel_rule = normals_threshold(maxima, pixel_margin)
        pixel_rule.update(of="each normal map's highest pixel", normal_map_max=[float(f"{v:.6g}") for v in maxima])
    else:
        notes.append("pixel threshold kept: this bundle records no map maxima of its normals (exported before refits, or by "
                     "best-f1); re-export it to refit the pixel threshold too")
    when = dt.datetime.now(dt.timezone.utc)
    backup_name = f"{METADATA}.{review_time(when)}.bak"
    source = (f"{len(base['normal'])} normals recorded at export ({base['source'] or 'unrecorded source'}) + {len(good)} "
              f"reviewed good frames of {review_dir}; refit on {when.isoformat(timespec='seconds')}")
    refit_record = {
        "time": when.isoformat(timespec="seconds"), "review_dir": str(review_dir), "good": len(good), "defects": len(defects),
        "previous": {"image": old.get("image"), "pixel": old.get("pixel"), "metadata": backup_name},
        "frames": [{"name": f.name, "verdict": f.verdict, "score": float(f"{s:.6g}"), "map_max": float(f"{m:.6g}")}
                   for f, s, m in scored],
        "base": base,
    }
    new = Thresholds.from_labelled_scores(labels, np.r_[normal, anomalous], pixel, source, false_alarm_rate, rule, margin_sd,
                                          extra={"pixel_rule": pixel_rule, "refit": refit_record})
    old_thr = Thresholds.from_dict(old)
    results = [ScoredFrame(f.image, f.verdict, s, m, decision(old_thr.is_anomalous(s)), decision(new.is_anomalous(s)))
               for f, s, m in scored]
    meta["thresholds"] = new.to_dict()

    interrupts.check()  # the last moment a Ctrl-C leaves the bundle as it was
    with interrupts.critical():  # never half a swap: the backup and the new metadata, or neither
        if (folder / METADATA).read_bytes() != original:
            raise BundleError(f"{folder / METADATA} changed while the frames were scored (another refit?): nothing written")
        backup = create_new_file(folder / backup_name, original)
        try:
            sealed = write_metadata(folder, meta)
        except BaseException:
            backup.unlink(missing_ok=True)
            raise
        interrupts.set_message(f"interrupted after the bundle was refit: {folder}")
    read_metadata(folder)  # it reads back and passes its own integrity check
    return RefitResult(folder, old, sealed["thresholds"], results, len(base["normal"]), len(base["anomalous"]), backup, notes)
