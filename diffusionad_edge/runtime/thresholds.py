"""The decision thresholds of a deployed model, as one value.

A bundle's ``metadata.json`` stores ``thresholds``: the image threshold (OK/NG), the pixel threshold
(defect outline), the score range the normalised score spans, and where they came from. The
normalised score is ``clip((s - image) / (max - min) + 0.5, 0, 1)``: 0.5 is the decision boundary
*of the threshold in use*, also when a user overrides it (``--threshold``).

The default rule (``normals``, :func:`normals_threshold`) places a threshold by the normal images
alone: above the highest normal score by a margin in logit space. Scores are means of sigmoid
pixels, so they live in (0, 1) and span decades (normals near 1e-4, defects 1e-2..1): a margin in
probability units would be either nothing or everything, in logits it is a ratio. The margin is
``max(k x the standard deviation of the normal logits, a floor)``: the spread of the normals says
how far the next normal may land above the highest one seen, and the floor keeps a margin when
there are too few normals (3-5) to estimate a spread. Anomalies (synthetic or labelled) never move
the threshold; they give the expected miss rate (:func:`error_rates`), a sanity check.
:func:`safe_image_threshold` is the previous rule (``best-f1``: best F1 on normals + anomalies,
never below the highest normal), and a target false-alarm rate, asked for explicitly, replaces
both. :func:`f1_optimal_threshold` is the pixel threshold of the ``best-f1`` rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..optional import require

#: pixel threshold of a model that carries none (a checkpoint): the map is a probability
DEFAULT_PIXEL_THRESHOLD = 0.5

#: the threshold rules (``dae export --threshold-rule``); the first is the default
RULES = ("normals", "best-f1")
DEFAULT_RULE = "normals"
#: ``normals`` rule: margin above the highest normal logit, in standard deviations of the normal logits
#: (chosen by measurement on Toothbrush and Magnetic Tile: README, "Thresholds")
DEFAULT_MARGIN_SD = 1.0
#: ``normals`` rule: the smallest margin, in logits (e = 2.72x the highest normal score's odds). Measured:
#: on Toothbrush (5 held-out normals) a floor of 0.5 let one of 12 good test images through as NG, 1.0 none
#: (benchmarks/decisions.py, README "Decisions at the default thresholds")
MARGIN_FLOOR_LOGIT = 1.0
#: largest accepted ``--threshold-margin``
MAX_MARGIN_SD = 10.0
_EPS = 1e-7  # scores are float32 probabilities: clip before the logit so 0 and 1 stay finite


def logit(p: np.ndarray | float) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray | float) -> np.ndarray:
    """1 / (1 + exp(-z))."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def check_rule(rule: str, margin_sd: float | None = None, false_alarm_rate: float | None = None) -> None:
    """A threshold rule and its parameters, or :class:`ConfigError` in one line (before any export work)."""
    if rule not in RULES:
        raise ConfigError(f"--threshold-rule {rule!r}: choose one of {', '.join(RULES)}")
    if margin_sd is not None:
        if rule != "normals":
            raise ConfigError(f"--threshold-margin applies to --threshold-rule normals, not {rule}")
        if not (isinstance(margin_sd, (int, float)) and np.isfinite(margin_sd) and 0.0 <= margin_sd <= MAX_MARGIN_SD):
            raise ConfigError(f"--threshold-margin {margin_sd}: must be a number of standard deviations in [0, {MAX_MARGIN_SD:g}]")
    if false_alarm_rate is not None:
        if not (np.isfinite(false_alarm_rate) and 0.0 <= false_alarm_rate < 1.0):
            raise ConfigError(f"--false-alarm-rate {false_alarm_rate}: must be in [0, 1)")
        if rule != DEFAULT_RULE or margin_sd is not None:
            raise ConfigError("--false-alarm-rate replaces the threshold rule: give it without --threshold-rule/--threshold-margin")


def normals_threshold(normal_scores: np.ndarray, margin_sd: float | None = None,
                      floor: float = MARGIN_FLOOR_LOGIT) -> tuple[float, dict[str, Any]]:
    """The ``normals`` rule: ``sigmoid(max_logit + max(margin_sd x sd(logits), floor))`` over the normal
    scores (or per-image maximum pixels); returns the threshold and the numbers that placed it. The
    standard deviation is the sample one (n - 1); with one normal it is 0 and the floor is the margin."""
    margin_sd = DEFAULT_MARGIN_SD if margin_sd is None else float(margin_sd)
    z = logit(np.asarray(normal_scores, dtype=np.float64).ravel())
    if not z.size:
        raise ValueError("the normals rule needs at least one normal score")
    sd = float(np.std(z, ddof=1)) if z.size >= 2 else 0.0
    margin = max(margin_sd * sd, floor)
    top = float(z.max())
    return float(sigmoid(top + margin)), {"name": "normals", "normals": int(z.size), "normal_max": float(sigmoid(top)),
                                          "normal_logit_max": top, "normal_logit_sd": sd, "margin_sd": margin_sd,
                                          "margin_floor_logit": floor, "margin_logit": margin}


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
            "overlap": bool(anomalous.size and normal.size and normal.max() >= anomalous.min()),
            "below_normal_max": int(np.sum(anomalous <= normal.max())) if normal.size else 0}


def score_text(value: float | None) -> str:
    """A score or threshold in words: 3 significant digits (trailing zeros kept), so that 0.00012 is not printed as 0.000."""
    return "-" if value is None else f"{value:#.3g}"


def rule_line(thresholds: dict[str, Any] | None) -> str | None:
    """How the image threshold was placed, with the numbers that placed it (None when unrecorded)."""
    thr = thresholds or {}
    params, image = thr.get("rule_params"), thr.get("image")
    if not isinstance(params, dict) or image is None:
        return None
    if params.get("name") == "normals":
        return (f"image threshold {score_text(image)}: the highest of {params['normals']} normal scores, {score_text(params['normal_max'])}, "
                f"+ a margin of {params['margin_logit']:.2f} in logit space (max({params['margin_sd']:g} x their logit spread "
                f"{params['normal_logit_sd']:.2f}, floor {params['margin_floor_logit']:g}); odds x{np.exp(params['margin_logit']):.2f})")
    if params.get("name") == "false-alarm-rate":
        return (f"image threshold {score_text(image)}: the lowest that rejects at most {params['rate']:g} of the "
                f"{params['normals']} normal images (highest normal {score_text(params['normal_max'])})")
    if params.get("name") == "set":
        side = "above" if params.get("normal_max") is None or image > params["normal_max"] else "at or below"
        return (f"image threshold {score_text(image)}: set by hand, {side} the highest of {params['normals']} normal scores "
                f"({score_text(params.get('normal_max'))})")
    if params.get("name") == "best-f1":
        return (f"image threshold {score_text(image)}: best F1 on normals + anomalies, never below the highest normal "
                f"score {score_text(params['normal_max'])}")
    return None


def expected_lines(thresholds: dict[str, Any] | None) -> list[str]:
    """A bundle's ``thresholds`` (metadata) in words: the rule that placed the image threshold with
    its numbers, the false-alarm and miss rates expected at it (measured on the set it was chosen on),
    and one warning line when some anomalies of that set score no higher than its highest normal.
    Empty when the bundle records no rates."""
    exp = (thresholds or {}).get("expected")
    if not exp:
        return []
    lines = [line] if (line := rule_line(thresholds)) else []
    lines.append(f"expected at this threshold (on that set): false alarms {100 * exp['false_alarm_rate']:.1f} % "
                 f"({exp['false_alarms']}/{exp['normals']} good parts), missed defects {100 * exp['miss_rate']:.1f} % "
                 f"({exp['misses']}/{exp['anomalies']})")
    if exp.get("overlap"):
        hidden = exp.get("below_normal_max")
        count = f"{hidden} of {exp['anomalies']} anomalies" if isinstance(hidden, int) else "some anomalies"
        lines.append(f"warning: {count} score no higher than the highest normal ({score_text(thresholds.get('normal_score_max'))}): "
                     "no threshold catches them without rejecting good parts: train longer, or use --threshold-data")
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
                             false_alarm_rate: float | None = None, rule: str = DEFAULT_RULE,
                             margin_sd: float | None = None, extra: dict[str, Any] | None = None) -> "Thresholds":
        """The image threshold of a rule on labelled image scores: ``normals`` (default,
        :func:`normals_threshold`: the normals alone place it, the anomalies only give the expected miss
        rate), ``best-f1`` (:func:`safe_image_threshold`), or a target ``false_alarm_rate``. ``extra``
        records the rule in words and its numbers (``rule_params``), the highest normal score, the error
        rates on these scores (:func:`error_rates`) and the scores; ``extra`` (argument) adds keys."""
        check_rule(rule, margin_sd, false_alarm_rate)
        labels = np.asarray(labels).ravel()
        scores = np.asarray(scores, dtype=np.float64).ravel()
        normal, anomalous = scores[labels == 0], scores[labels == 1]
        if not normal.size:
            raise ValueError("thresholds need at least one normal score")
        if false_alarm_rate is not None:
            image = safe_image_threshold(normal, anomalous, false_alarm_rate)
            text = f"target false-alarm rate {false_alarm_rate:g}"
            params: dict[str, Any] = {"name": "false-alarm-rate", "rate": false_alarm_rate, "normals": int(normal.size),
                                      "normal_max": float(normal.max())}
        elif rule == "best-f1":
            image = safe_image_threshold(normal, anomalous)
            text = "best F1, never below the highest normal score"
            params = {"name": "best-f1", "normals": int(normal.size), "normal_max": float(normal.max())}
        else:
            image, params = normals_threshold(normal, margin_sd)
            text = (f"highest normal score + max({params['margin_sd']:g} x sd of the normal logits, {params['margin_floor_logit']:g}) "
                    "in logit space")
        out = (("rule", text), ("rule_params", params), ("normal_score_max", float(normal.max())),
               ("expected", error_rates(normal, anomalous, image)),
               # kept so that a threshold changed later (--set-threshold) gets its rates recomputed
               # (6 significant digits: normal scores can be 1e-5, which fixed decimals would flatten)
               ("scores", {"normal": [float(f"{v:.6g}") for v in normal], "anomalous": [float(f"{v:.6g}") for v in anomalous]}),
               *(extra or {}).items())
        lo, hi = float(scores.min()), float(scores.max())
        return cls(image=image, pixel=pixel, score_min=min(lo, image), score_max=max(hi, image), source=source, extra=out)

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
        they were measured on are recorded), and the rule's record saying the threshold was set by hand
        (so the report's rule line does not describe a rule that no longer placed it)."""
        extra = dict(self.extra)
        scores = extra.get("scores")
        params = extra.get("rule_params")
        if image is not None and isinstance(params, dict):
            placed = params.get("placed_by", params)  # the rule's own record, kept once through repeated changes
            extra["rule_params"] = {"name": "set", "normals": params.get("normals"), "normal_max": params.get("normal_max"),
                                    "placed_by": placed}
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
