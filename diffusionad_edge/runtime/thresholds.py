"""The decision thresholds of a deployed model, as one value.

A bundle's ``metadata.json`` stores ``thresholds``: the image threshold (OK/NG), the pixel threshold
(defect outline), the score range the normalised score spans, and where they came from. The
normalised score is ``clip((s - image) / (max - min) + 0.5, 0, 1)``: 0.5 is the decision boundary
*of the threshold in use*, also when a user overrides it (``--threshold``).

:func:`safe_image_threshold` chooses the OK/NG threshold on labelled scores; the exporter uses it to
derive a bundle's thresholds, a checkpoint's predictor to turn held-out validation scores into one.
By default it is never below the highest normal score it was chosen on: a weak model whose normal
and anomalous scores overlap then misses defects rather than failing good parts, and the export
report says how many (:func:`error_rates`). A target false-alarm rate, asked for explicitly, lowers it.
:func:`f1_optimal_threshold` chooses the pixel threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..optional import require

#: pixel threshold of a model that carries none (a checkpoint): the map is a probability
DEFAULT_PIXEL_THRESHOLD = 0.5


def f1_optimal_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold with the best F1 (a score >= threshold is anomalous), placed in the middle of
    the gap below it: every threshold in that gap makes the same decisions on these samples, and
    the middle keeps a margin on both sides (the gap's top is the weakest anomaly's score itself,
    so a slightly weaker one would pass as good)."""
    labels = np.asarray(labels).ravel().astype(np.uint8)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.min() == labels.max():  # one class only: just above the highest normal score
        return float(scores.max() + 1e-6)
    # scikit-learn is a workstation dependency (the [train] extra): choosing thresholds happens at export,
    # and a device that only runs bundles must be able to import this module without it.
    precision_recall_curve = require("sklearn.metrics").precision_recall_curve
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = float(thresholds[int(np.argmax(f1[:-1]))])
    below = scores[scores < best]
    return (best + float(below.max())) / 2 if below.size else best


def _just_above(value: float, scores: np.ndarray) -> float:
    """A threshold just above ``value``: the middle of the gap to the next higher score, for a margin
    on both sides (``value + 1e-6`` when nothing is higher)."""
    higher = scores[scores > value]
    return (value + float(higher.min())) / 2 if higher.size else value + 1e-6


def safe_image_threshold(normal_scores: np.ndarray, anomalous_scores: np.ndarray,
                         false_alarm_rate: float | None = None) -> float:
    """The OK/NG threshold (a score >= threshold is NG).

    Default (``false_alarm_rate`` None): the F1-optimal threshold, raised when needed to just above the
    highest normal score, so no normal image of the set is rejected. With ``false_alarm_rate`` r: the
    lowest threshold at which at most a fraction r of the normal scores would be rejected (most defects
    caught within that false-alarm budget)."""
    normal = np.asarray(normal_scores, dtype=np.float64).ravel()
    anomalous = np.asarray(anomalous_scores, dtype=np.float64).ravel()
    every = np.r_[normal, anomalous]
    if false_alarm_rate is not None:
        if not 0.0 <= false_alarm_rate < 1.0:
            raise ValueError(f"false_alarm_rate must be in [0, 1), got {false_alarm_rate}")
        allowed = int(np.floor(false_alarm_rate * len(normal) + 1e-9))  # normals allowed above the threshold
        kept_below = np.sort(normal)[::-1][min(allowed, len(normal) - 1)]
        return _just_above(float(kept_below), every)
    safe = _just_above(float(normal.max()), every)
    if not anomalous.size:
        return safe
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return max(f1_optimal_threshold(labels, every), safe)


def error_rates(normal_scores: np.ndarray, anomalous_scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """What a threshold does on a labelled set: false-alarm rate (normals rejected), miss rate (anomalies
    passed), their counts, and whether the two score ranges overlap (no threshold separates them)."""
    normal = np.asarray(normal_scores, dtype=np.float64).ravel()
    anomalous = np.asarray(anomalous_scores, dtype=np.float64).ravel()
    false_alarms, misses = int(np.sum(normal >= threshold)), int(np.sum(anomalous < threshold))
    return {"false_alarm_rate": false_alarms / max(len(normal), 1), "miss_rate": misses / max(len(anomalous), 1),
            "false_alarms": false_alarms, "normals": int(len(normal)), "misses": misses, "anomalies": int(len(anomalous)),
            "overlap": bool(anomalous.size and normal.size and normal.max() >= anomalous.min())}


def expected_lines(thresholds: dict[str, Any] | None) -> list[str]:
    """A bundle's ``thresholds`` (metadata) in words: the false-alarm and miss rates expected at the
    image threshold (measured on the set it was chosen on), and one warning line when that set's
    normal and anomalous scores overlap. Empty when the bundle records no rates."""
    exp = (thresholds or {}).get("expected")
    if not exp:
        return []
    lines = [f"expected at this threshold (on that set): false alarms {100 * exp['false_alarm_rate']:.1f} % "
             f"({exp['false_alarms']}/{exp['normals']} good parts), missed defects {100 * exp['miss_rate']:.1f} % "
             f"({exp['misses']}/{exp['anomalies']})"]
    if exp.get("overlap"):
        lines.append(f"warning: normal and anomalous scores overlap (highest normal {thresholds.get('normal_score_max', float('nan')):.4f}); "
                     "no threshold separates them: train longer, use --threshold-data, or set --false-alarm-rate")
    return lines


def decision(is_anomalous: bool | None) -> str | None:
    """The OK/NG string of a decision (None: no threshold, no decision)."""
    return None if is_anomalous is None else ("NG" if is_anomalous else "OK")


@dataclass(frozen=True)
class Thresholds:
    """Image and pixel thresholds plus the score range of the normalised score."""

    image: float | None = None
    pixel: float | None = None
    score_min: float | None = None
    score_max: float | None = None
    source: str = ""
    extra: tuple[tuple[str, Any], ...] = ()  # other metadata keys, kept on a round trip

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Thresholds":
        if not data:
            return cls()
        norm = data.get("normalisation") or {}
        known = {"image", "pixel", "normalisation", "source"}
        return cls(image=data.get("image"), pixel=data.get("pixel"), score_min=norm.get("min"), score_max=norm.get("max"),
                   source=str(data.get("source", "")), extra=tuple((k, v) for k, v in data.items() if k not in known))

    @classmethod
    def from_labelled_scores(cls, labels: np.ndarray, scores: np.ndarray, pixel: float | None, source: str,
                             false_alarm_rate: float | None = None) -> "Thresholds":
        """The image threshold of :func:`safe_image_threshold` on labelled image scores; ``extra`` records
        the rule, the highest normal score and the error rates on these scores (see :func:`error_rates`)."""
        labels = np.asarray(labels).ravel()
        scores = np.asarray(scores, dtype=np.float64).ravel()
        normal, anomalous = scores[labels == 0], scores[labels == 1]
        image = safe_image_threshold(normal, anomalous, false_alarm_rate)
        rule = ("best F1, never below the highest normal score" if false_alarm_rate is None
                else f"target false-alarm rate {false_alarm_rate:g}")
        extra = (("rule", rule), ("normal_score_max", float(normal.max())),
                 ("expected", error_rates(normal, anomalous, image)),
                 # kept so that a threshold changed later (--set-threshold) gets its rates recomputed
                 ("scores", {"normal": [round(float(v), 8) for v in normal], "anomalous": [round(float(v), 8) for v in anomalous]}))
        return cls(image=image, pixel=pixel, score_min=float(scores.min()), score_max=float(scores.max()), source=source,
                   extra=extra)

    def to_dict(self) -> dict[str, Any] | None:
        if self.image is None and self.pixel is None:
            return None
        out: dict[str, Any] = {"image": self.image, "pixel": self.pixel}
        if self.score_min is not None and self.score_max is not None:
            out["normalisation"] = {"threshold": self.image, "min": self.score_min, "max": self.score_max}
        if self.source:
            out["source"] = self.source
        out.update(dict(self.extra))
        return out

    def override(self, image: float | None = None, pixel: float | None = None) -> "Thresholds":
        """The same thresholds with the image and/or pixel threshold replaced (None keeps it)."""
        changed = {k: v for k, v in (("image", image), ("pixel", pixel)) if v is not None}
        if not changed:
            return self
        note = ", ".join(f"{k} threshold overridden" for k in changed)
        return replace(self, source=f"{self.source}; {note}" if self.source else note, extra=self._extra_at(changed.get("image")),
                       **changed)

    def _extra_at(self, image: float | None) -> tuple[tuple[str, Any], ...]:
        """``extra`` with the expected error rates recomputed at a new image threshold (when the scores
        they were measured on are recorded)."""
        extra = dict(self.extra)
        scores = extra.get("scores")
        if image is not None and isinstance(scores, dict) and scores.get("normal"):
            extra["expected"] = error_rates(np.asarray(scores["normal"]), np.asarray(scores.get("anomalous") or []), image)
        elif image is not None:
            extra.pop("expected", None)
        return tuple(extra.items())

    @property
    def expected(self) -> dict[str, Any] | None:
        """Error rates expected at the image threshold, measured on the set it was chosen on (None if unknown)."""
        value = dict(self.extra).get("expected")
        return value if isinstance(value, dict) else None

    @property
    def pixel_or_default(self) -> float:
        return DEFAULT_PIXEL_THRESHOLD if self.pixel is None else self.pixel

    def is_anomalous(self, score: float) -> bool | None:
        """The OK/NG decision of an image score (None without an image threshold)."""
        return None if self.image is None else bool(score >= self.image)

    def normalised(self, score: np.ndarray | float) -> np.ndarray:
        """``clip((s - image) / (max - min) + 0.5, 0, 1)``: 0.5 exactly at the image threshold in use
        (NaN without a threshold or score range)."""
        if self.image is None or self.score_min is None or self.score_max is None:
            return np.full(np.shape(score), np.nan)
        span = max(self.score_max - self.score_min, 1e-12)
        return np.clip((np.asarray(score, dtype=np.float64) - self.image) / span + 0.5, 0.0, 1.0)
