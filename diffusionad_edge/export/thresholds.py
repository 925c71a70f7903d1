"""Choosing a bundle's thresholds at export time.

By default from held-out normal images only: they (never trained on, never the test set) and
synthetic anomalies made from them with the training synthesizer give a labelled set. With
``dae export --threshold-data`` the labelled set is the user's own images instead. The image
threshold is the best-F1 one on the set's scores, but never below the highest normal score unless a
target false-alarm rate is asked for (:func:`~diffusionad_edge.runtime.thresholds.safe_image_threshold`);
the pixel threshold maximises F1 on its pixels, placed in the middle of the best gap
(:func:`~diffusionad_edge.runtime.thresholds.f1_optimal_threshold`). The
value a bundle carries and how it is applied live in :mod:`diffusionad_edge.runtime.thresholds`.
"""

from __future__ import annotations

import numpy as np

from ..runtime.thresholds import Thresholds, f1_optimal_threshold


def derive_thresholds(normal_scores: np.ndarray, anomalous_scores: np.ndarray, normal_maps: np.ndarray,
                      anomalous_maps: np.ndarray, anomalous_masks: np.ndarray, source: str | None = None,
                      false_alarm_rate: float | None = None) -> Thresholds:
    """A bundle's thresholds from the scores and maps of a labelled set (normal and anomalous images);
    ``false_alarm_rate``: the user's target rate of good parts rejected, instead of the default rule."""
    labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))]
    scores = np.r_[normal_scores, anomalous_scores]
    pix_labels = np.r_[np.zeros(normal_maps.size), anomalous_masks.ravel()]
    pix_scores = np.r_[normal_maps.ravel(), anomalous_maps.ravel()]
    # Subsample pixels for the PR curve: a few hundred thousand are plenty for one threshold.
    if pix_scores.size > 400_000:
        idx = np.random.default_rng(0).choice(pix_scores.size, 400_000, replace=False)
        pix_labels, pix_scores = pix_labels[idx], pix_scores[idx]
    pixel_thr = f1_optimal_threshold(pix_labels, pix_scores)
    source = source or f"{len(normal_scores)} held-out normal images + {len(anomalous_scores)} synthetic anomalies made from them"
    return Thresholds.from_labelled_scores(labels, scores, pixel_thr, source, false_alarm_rate)
