"""The decision thresholds of a deployed model, as one value.

A bundle's ``metadata.json`` stores ``thresholds``: the image threshold (OK/NG), the pixel threshold
(defect outline), the score range the normalised score spans, and where they came from. The
normalised score is ``clip((s - image) / (max - min) + 0.5, 0, 1)``: 0.5 is the decision boundary
*of the threshold in use*, also when a user overrides it (``--threshold``).

:func:`f1_optimal_threshold` chooses a threshold on labelled scores; the exporter uses it to derive a
bundle's thresholds, a checkpoint's predictor to turn held-out validation scores into one.
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
    def from_labelled_scores(cls, labels: np.ndarray, scores: np.ndarray, pixel: float | None, source: str) -> "Thresholds":
        """The F1-optimal image threshold on labelled image scores."""
        scores = np.asarray(scores, dtype=np.float64)
        return cls(image=f1_optimal_threshold(labels, scores), pixel=pixel, score_min=float(scores.min()),
                   score_max=float(scores.max()), source=source)

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
        return replace(self, source=f"{self.source}; {note}" if self.source else note, **changed)

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
