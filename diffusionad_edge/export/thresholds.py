"""Decision thresholds and score normalisation.

By default from held-out normal images only: they (never trained on, never the test set) and
synthetic anomalies made from them with the training synthesizer give a labelled set. With
``dae export --threshold-data`` the labelled set is the user's own images instead. The image
threshold maximises F1 on the set's scores, the pixel threshold on its pixels, each placed in the
middle of the best gap. Normalised score: clip((s - thr) / (max - min) + 0.5, 0, 1), so 0.5 is
the decision boundary whatever the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve


def f1_optimal_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold with the best F1 (a score >= threshold is anomalous), placed in the middle of
    the gap below it: every threshold in that gap makes the same decisions on these samples, and
    the middle keeps a margin on both sides (the gap's top is the weakest anomaly's score itself,
    so a slightly weaker one would pass as good)."""
    labels = np.asarray(labels).ravel().astype(np.uint8)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.min() == labels.max():  # one class only: just above the highest normal score
        return float(scores.max() + 1e-6)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = float(thresholds[int(np.argmax(f1[:-1]))])
    below = scores[scores < best]
    return (best + float(below.max())) / 2 if below.size else best


def derive_thresholds(normal_scores: np.ndarray, anomalous_scores: np.ndarray, normal_maps: np.ndarray, anomalous_maps: np.ndarray, anomalous_masks: np.ndarray) -> dict[str, Any]:
    labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))]
    scores = np.r_[normal_scores, anomalous_scores]
    image_thr = f1_optimal_threshold(labels, scores)
    pix_labels = np.r_[np.zeros(normal_maps.size), anomalous_masks.ravel()]
    pix_scores = np.r_[normal_maps.ravel(), anomalous_maps.ravel()]
    # Subsample pixels for the PR curve: a few hundred thousand are plenty for one threshold.
    if pix_scores.size > 400_000:
        idx = np.random.default_rng(0).choice(pix_scores.size, 400_000, replace=False)
        pix_labels, pix_scores = pix_labels[idx], pix_scores[idx]
    pixel_thr = f1_optimal_threshold(pix_labels, pix_scores)
    return {
        "image": image_thr,
        "pixel": pixel_thr,
        "normalisation": {"threshold": image_thr, "min": float(scores.min()), "max": float(scores.max())},
        "source": f"{len(normal_scores)} held-out normal images + {len(anomalous_scores)} synthetic anomalies made from them",
        "normal_score_max": float(np.max(normal_scores)),
    }


def normalise_score(score: np.ndarray | float, norm: dict[str, float]) -> np.ndarray:
    span = max(norm["max"] - norm["min"], 1e-12)
    return np.clip((np.asarray(score) - norm["threshold"]) / span + 0.5, 0.0, 1.0)
