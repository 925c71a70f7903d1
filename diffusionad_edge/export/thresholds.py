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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..runtime.thresholds import DEFAULT_RULE, Thresholds, f1_optimal_threshold, normals_threshold


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
