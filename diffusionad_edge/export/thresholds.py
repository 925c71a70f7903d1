"""Choosing a bundle's thresholds at export time.

By default from held-out normal images (never trained on, never the test set): the image threshold
sits above the highest held-out normal score by a margin in logit space, the pixel threshold above
the highest pixel of any held-out normal map by the same kind of margin (the ``normals`` rule,
:func:`~diffusionad_edge.runtime.thresholds.normals_threshold`). Synthetic anomalies made from those
normals with the training synthesizer do not move either threshold: they give the expected miss rate
and the share of defect pixels outlined, a sanity check. With ``dae export --threshold-data`` the
normals are the user's good images and the anomalies their defective ones. ``--threshold-rule best-f1``
keeps the previous rule (best F1 on normals + anomalies, never below the highest normal; pixel
threshold by best F1), and ``--false-alarm-rate`` asks for a target rate of good parts rejected. The
value a bundle carries and how it is applied live in :mod:`diffusionad_edge.runtime.thresholds`.

Stage 3 of ``dae export`` (:func:`choose_thresholds`) runs the artefact on those images and places the
thresholds with :func:`derive_thresholds`; :func:`held_out_thresholds` does the same for any runner of
a checkpoint (``benchmarks/decisions.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.framing import Preprocessing, predict_frames
from ..data.mvtec import load_test_arrays
from ..runtime.backends.runner import Runner, RunnerOutput, runner_predict_fn
from ..runtime.thresholds import DEFAULT_RULE, Thresholds, f1_optimal_threshold, normals_threshold
from .artefact import Artefact
from .held_out import check_set, extra_normals, tiled_frames
from .job import ExportJob


def pixel_threshold(normal_maps: np.ndarray, anomalous_maps: np.ndarray, anomalous_masks: np.ndarray, rule: str = DEFAULT_RULE,
                    margin_sd: float | None = None) -> tuple[float, dict[str, Any]]:
    """The pixel (defect outline) threshold and what it does on the set.

    ``normals`` (also with a target false-alarm rate): the ``normals`` rule over each normal map's
    highest pixel, so no pixel of those maps is outlined. ``best-f1``: best F1 over all pixels. The
    record holds the rule's numbers (``normals``: also each normal map's highest pixel, which a refit
    places the threshold again with) and, as a sanity check, the share of anomalous-mask pixels at or
    above the threshold (``defect_pixel_recall``) and of normal-map pixels (``normal_pixel_rate``)."""
    normal_maps = np.asarray(normal_maps, dtype=np.float32)
    n = len(normal_maps)
    if rule == "best-f1":
        pix_labels = np.r_[np.zeros(normal_maps.size), np.asarray(anomalous_masks).ravel()]
        pix_scores = np.r_[normal_maps.ravel(), np.asarray(anomalous_maps).ravel()]
        # Subsample pixels for the PR curve: a few hundred thousand are plenty for one threshold.
        if pix_scores.size > 400_000:
            idx = np.random.default_rng(0).choice(pix_scores.size, 400_000, replace=False)
            pix_labels, pix_scores = pix_labels[idx], pix_scores[idx]
        thr, record = f1_optimal_threshold(pix_labels, pix_scores), {"name": "best-f1"}
    else:
        maxima = normal_maps.reshape(n, -1).max(axis=1)
        thr, record = normals_threshold(maxima, margin_sd)
        record["of"] = "each normal map's highest pixel"
        # kept so that a refit (`dae export BUNDLE --refit-threshold`) places the pixel threshold again with more normals
        record["normal_map_max"] = [float(f"{v:.6g}") for v in maxima]
    masks = np.asarray(anomalous_masks) > 0.5
    anomalous_maps = np.asarray(anomalous_maps)
    record["defect_pixel_recall"] = float(np.mean(anomalous_maps[masks] >= thr)) if masks.any() else None
    record["normal_pixel_rate"] = float(np.mean(normal_maps >= thr))
    return float(thr), record


def derive_thresholds(normal_scores: np.ndarray, anomalous_scores: np.ndarray, normal_maps: np.ndarray,
                      anomalous_maps: np.ndarray, anomalous_masks: np.ndarray, source: str | None = None,
                      false_alarm_rate: float | None = None, rule: str = DEFAULT_RULE,
                      margin_sd: float | None = None) -> Thresholds:
    """A bundle's thresholds from the scores and maps of normal images and anomalies (the anomalies
    only check the ``normals`` rule and give its expected miss rate). ``rule``/``margin_sd``: see
    :func:`~diffusionad_edge.runtime.thresholds.check_rule`; ``false_alarm_rate``: the user's target
    rate of good parts rejected, instead of the rule (image threshold only)."""
    normal_scores, anomalous_scores = np.asarray(normal_scores).ravel(), np.asarray(anomalous_scores).ravel()
    labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))]
    scores = np.r_[normal_scores, anomalous_scores]
    pixel_rule = "best-f1" if rule == "best-f1" and false_alarm_rate is None else "normals"
    pixel_thr, pixel_record = pixel_threshold(normal_maps, anomalous_maps, anomalous_masks, pixel_rule, margin_sd)
    source = source or f"{len(normal_scores)} held-out normal images + {len(anomalous_scores)} synthetic anomalies made from them"
    return Thresholds.from_labelled_scores(labels, scores, pixel_thr, source, false_alarm_rate, rule, margin_sd,
                                           extra={"pixel_rule": pixel_record})


def choose_thresholds(job: ExportJob, runner: Runner, art: Artefact, check_pred: RunnerOutput) -> Thresholds:
    """Stage 3: decision thresholds chosen with the artefact itself: on the user's labelled images when
    given (``--threshold-data``), else on the held-out normals (synthetic anomalies as a sanity check)."""
    ds, prep = job.threshold_ds, job.preprocessing
    if ds is None:
        return held_out_thresholds(job.payload, prep, runner, job.opts.threshold_rule, job.opts.threshold_margin,
                                   job.opts.false_alarm_rate, check=(art.check_labels, art.check_masks, check_pred))
    if prep.is_plain:
        images, labels, masks = load_test_arrays(ds, job.hw)
        pred = runner.infer(images)
    else:
        from ..data.mvtec import read_test_sample

        loaded = [read_test_sample(s) for s in ds.test_samples]
        labels = np.array([s.is_anomalous for s in ds.test_samples], np.float64)
        pred, masks = _framed(prep, runner, [i for i, _ in loaded], [prep.region(m) for _, m in loaded])
    normal, defective = labels == 0, labels == 1
    source = f"{int(normal.sum())} good + {int(defective.sum())} defective labelled images in {ds.path}"
    return derive_thresholds(pred.score[normal], pred.score[defective], pred.anomaly_map[normal], pred.anomaly_map[defective],
                             masks[defective], source, job.opts.false_alarm_rate, job.opts.threshold_rule, job.opts.threshold_margin)


def held_out_thresholds(payload: dict[str, Any], prep: Preprocessing, runner: Runner, rule: str = DEFAULT_RULE,
                        margin_sd: float | None = None, false_alarm_rate: float | None = None,
                        check: tuple[np.ndarray, np.ndarray, RunnerOutput] | None = None) -> Thresholds:
    """The default thresholds of a checkpoint, as ``dae export`` places them, with ``runner`` (the
    artefact, or any runner of the same model: ``benchmarks/decisions.py`` uses PyTorch): the
    checkpoint's held-out normals (up to ``THRESHOLD_NORMALS``) place them, synthetic anomalies made
    from the first ``CHECK_IMAGES`` give the expected miss rate. ``check``: the check set's labels,
    masks and ``runner``'s outputs on it, when already computed (the export's parity check)."""
    if prep.tile is not None:
        # A tiled bundle scores whole frames (top-k of the blended map): its thresholds are chosen on frames.
        frames, labels, frame_masks = tiled_frames(payload, prep)
        pred, masks = _framed(prep, runner, frames, frame_masks)
        source = (f"{int((labels == 0).sum())} held-out normal frames + {int((labels == 1).sum())} with a synthetic anomaly "
                  "on one tile, scored as whole tiled frames")
    else:
        if check is None:
            images, labels, masks = check_set(payload, prep)
            pred = runner.infer(images)
        else:
            labels, masks, pred = check
        extra = extra_normals(payload, prep)
        if len(extra):  # more normals than the check set holds: they place the thresholds too
            more = runner.infer(extra)
            pred = RunnerOutput(np.concatenate([pred.anomaly_map, more.anomaly_map]), np.concatenate([pred.score, more.score]))
            labels = np.r_[labels, np.zeros(len(extra))]
            masks = np.concatenate([masks, np.zeros((len(extra), *masks.shape[1:]), masks.dtype)])
        source = (f"{int((labels == 0).sum())} held-out normal images; {int((labels == 1).sum())} synthetic anomalies made "
                  "from them as a check")
    normal, defective = labels == 0, labels == 1
    return derive_thresholds(pred.score[normal], pred.score[defective], pred.anomaly_map[normal], pred.anomaly_map[defective],
                             masks[defective], source, false_alarm_rate, rule, margin_sd)


def _framed(prep: Preprocessing, runner: Runner, frames: list[np.ndarray], masks: list[np.ndarray]) -> tuple[RunnerOutput, np.ndarray]:
    """Frames scored through the preprocessing (ROI, tiles); maps and masks flattened per frame into
    one row each when their sizes differ (the thresholds only need their pixels)."""
    maps, scores = [], []
    for f in frames:  # one frame (all its tiles) per runner call
        m, s = predict_frames(prep, runner_predict_fn(runner), [f])
        maps.append(m[0])
        scores.append(s[0])
    if len({m.shape for m in maps}) == 1 and len({m.shape for m in masks}) == 1 and maps[0].shape == masks[0].shape:
        return RunnerOutput(np.stack(maps), np.asarray(scores, np.float32)), np.stack(masks)
    from ..data.preprocess import resize_mask

    masks = [resize_mask(mk, m.shape) for mk, m in zip(masks, maps)]
    width = max(m.size for m in maps)
    pad = lambda a: np.r_[a.ravel(), np.zeros(width - a.size, np.float32)][None]  # noqa: E731
    return RunnerOutput(np.concatenate([pad(m) for m in maps]), np.asarray(scores, np.float32)), np.concatenate([pad(m) for m in masks])
