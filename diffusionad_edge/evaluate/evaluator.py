"""Evaluate a detector on the test split of an MVTec-layout category (``dae eval``).

Metrics are computed at the model's input size (256x256 for the paper preset) on raw maps, with
no smoothing. Per defect type, the set is that type's images plus all good test images; "overall"
uses every test image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..data.mvtec import MVTecCategory, load_test_sample
from ..errors import DataError
from ..runtime.runners import Runner, runner_predict_fn
from .metrics import all_metrics

#: Called after each batch with (images done, images total).
ProgressFn = Callable[[int, int], None]
#: Maps a batch (B, 3, H, W) float32 in [0, 1] to (anomaly maps (B, H, W), scores (B,)).
PredictFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class EvalResult:
    overall: dict[str, float]
    per_type: dict[str, dict[str, float]]
    counts: dict[str, int]
    seconds_per_image: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "per_type": self.per_type,
            "counts": self.counts,
            "seconds_per_image": self.seconds_per_image,
            **self.extra,
        }


def evaluate(
    dataset: MVTecCategory,
    predict: Runner | PredictFn,
    image_size: int,
    batch_size: int = 8,
    progress: ProgressFn | None = None,
    limit: int | None = None,
) -> EvalResult:
    """Run ``predict`` (a runner, e.g. :class:`~..runtime.runners.TorchRunner`, or a batch -> (maps,
    scores) function) over the test split and compute the metrics overall and per defect type."""
    if isinstance(predict, Runner):
        predict = runner_predict_fn(predict)
    samples = list(dataset.test_samples)
    if not samples:
        raise DataError(f"no test images in {dataset.path / 'test'}")
    if limit is not None:
        samples = _balanced_subset(samples, limit)
    maps, scores, masks = [], [], []
    t_model = 0.0
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        loaded = [load_test_sample(s, image_size) for s in chunk]
        batch = np.stack([img for img, _ in loaded]).astype(np.float32)
        t0 = time.perf_counter()
        m, s = predict(batch)
        t_model += time.perf_counter() - t0
        maps.append(m.astype(np.float32))
        scores.append(s.astype(np.float64))
        masks.append(np.stack([mask for _, mask in loaded]) > 0.5)
        if progress is not None:
            progress(min(start + batch_size, len(samples)), len(samples))
    maps_a, scores_a, masks_a = np.concatenate(maps), np.concatenate(scores), np.concatenate(masks)
    labels = np.array([s.is_anomalous for s in samples], dtype=np.uint8)
    types = np.array([s.defect_type for s in samples], dtype=object)

    overall = all_metrics(labels, scores_a, masks_a, maps_a)
    per_type = {}
    for defect in sorted(set(types.tolist()) - {"good"}):
        sel = (types == defect) | (types == "good")
        per_type[defect] = all_metrics(labels[sel], scores_a[sel], masks_a[sel], maps_a[sel])
    counts = {t: int((types == t).sum()) for t in sorted(set(types.tolist()))}
    return EvalResult(overall, per_type, counts, t_model / len(samples))


def _balanced_subset(samples: list, limit: int) -> list:
    """At most ``limit`` samples, taken round-robin over defect types so every type stays present."""
    by_type: dict[str, list] = {}
    for s in samples:
        by_type.setdefault(s.defect_type, []).append(s)
    out: list = []
    while len(out) < limit and any(by_type.values()):
        for key in sorted(by_type):
            if by_type[key] and len(out) < limit:
                out.append(by_type[key].pop(0))
    return out
