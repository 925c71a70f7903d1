"""Evaluate a detector on the test split of an MVTec-layout category (``dae eval``).

Metrics are computed on raw maps, with no smoothing, at the model's input size (256x256 for the
paper preset; height x width for a rectangular input), or, for a tiled model, at the full
resolution of the image (or its ROI); ``metric_hw`` asks for one resolution for every model (maps
resized bilinearly, masks by nearest neighbour), or ``"native"`` for each image's own resolution
(datasets whose images differ in size), so that pipelines can be compared. Per defect
type, the set is that type's images plus all good test images; "overall"
uses every test image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..data.framing import Preprocessing, as_preprocessing, predict_frames
from ..data.mvtec import MVTecCategory, load_test_sample, read_test_sample
from ..data.preprocess import resize_mask
from ..errors import DataError
from ..runtime.backends.runner import Runner, runner_predict_fn
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
    image_size: int | tuple[int, int] | Preprocessing,
    batch_size: int = 8,
    progress: ProgressFn | None = None,
    limit: int | None = None,
    metric_hw: tuple[int, int] | str | None = None,
) -> EvalResult:
    """Run ``predict`` (a runner, e.g. :class:`~..runtime.backends.torch.TorchRunner`, or a batch -> (maps,
    scores) function) over the test split and compute the metrics overall and per defect type.

    ``image_size``: the model's input size (``S`` or ``(H, W)``), or its :class:`Preprocessing`
    (ROI, tiles); ``metric_hw``: the resolution the pixel metrics are computed at (see above)."""
    if isinstance(predict, Runner):
        predict = runner_predict_fn(predict)
    prep = as_preprocessing(image_size)
    samples = list(dataset.test_samples)
    if not samples:
        raise DataError(f"no test images in {dataset.path / 'test'}")
    if limit is not None:
        samples = _balanced_subset(samples, limit)
    maps, scores, masks = [], [], []
    t_model = 0.0
    # Tiled frames are one batch each; resized ones go batch_size at a time.
    step = 1 if prep.tile is not None else batch_size
    for start in range(0, len(samples), step):
        chunk = samples[start : start + step]
        if prep.is_plain and metric_hw is None:  # the classic path, unchanged
            loaded = [load_test_sample(s, prep.input_hw) for s in chunk]
            batch = np.stack([img for img, _ in loaded]).astype(np.float32)
            t0 = time.perf_counter()
            m, s = predict(batch)
            t_model += time.perf_counter() - t0
            chunk_maps, chunk_scores = np.asarray(m, np.float32), np.asarray(s, np.float64)
            chunk_masks = [mask for _, mask in loaded]
        else:
            loaded = [read_test_sample(s) for s in chunk]
            regions = [prep.region(mask) for _, mask in loaded]
            if metric_hw == "native":
                hw = None  # each image's (region's) own resolution
            else:
                hw = metric_hw or (None if prep.tile is not None else prep.input_hw)
            t0 = time.perf_counter()
            m_list, s_arr = predict_frames(prep, predict, [img for img, _ in loaded], hw)
            t_model += time.perf_counter() - t0
            chunk_maps, chunk_scores = m_list, s_arr.astype(np.float64)
            chunk_masks = [resize_mask(r, hw) if hw is not None else r for r in regions]
        maps += list(chunk_maps[:, 0] if isinstance(chunk_maps, np.ndarray) and chunk_maps.ndim == 4 else chunk_maps)
        scores.append(chunk_scores)
        masks += [mk > 0.5 for mk in chunk_masks]
        if progress is not None:
            progress(min(start + step, len(samples)), len(samples))
    scores_a = np.concatenate(scores)
    if len({m.shape for m in maps}) == 1:
        maps_a, masks_a = np.stack(maps), np.stack(masks)
    else:  # tiled images of different sizes: pixel metrics over all pixels, flattened
        maps_a = np.concatenate([m.ravel() for m in maps])[None, None]
        masks_a = np.concatenate([m.ravel() for m in masks])[None, None]
    labels = np.array([s.is_anomalous for s in samples], dtype=np.uint8)
    types = np.array([s.defect_type for s in samples], dtype=object)

    overall = all_metrics(labels, scores_a, masks_a, maps_a)
    per_type = {}
    for defect in sorted(set(types.tolist()) - {"good"}):
        sel = (types == defect) | (types == "good")
        if maps_a.shape[0] == len(samples):
            per_type[defect] = all_metrics(labels[sel], scores_a[sel], masks_a[sel], maps_a[sel])
        else:
            idx = np.flatnonzero(sel)
            per_type[defect] = all_metrics(labels[sel], scores_a[sel],
                                           np.concatenate([masks[i].ravel() for i in idx])[None, None],
                                           np.concatenate([maps[i].ravel() for i in idx])[None, None])
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
