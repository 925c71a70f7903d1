"""Decision thresholds: best F1, with the margin in the middle of the gap."""

import numpy as np
import pytest

from diffusionad_edge.runtime.thresholds import f1_optimal_threshold


def test_separable_scores_get_the_middle_of_the_gap():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.4, 0.8, 0.9])
    assert f1_optimal_threshold(labels, scores) == pytest.approx(0.6)  # not 0.8: the weakest defect is not on the edge


def test_overlapping_scores_keep_the_best_f1_decisions():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(200), np.ones(50)].astype(int)
    scores = np.r_[rng.normal(0, 1, 200), rng.normal(2, 1, 50)]
    thr = f1_optimal_threshold(labels, scores)

    def f1(t):
        pred = scores >= t
        tp = np.sum(pred & (labels == 1))
        return 2 * tp / (pred.sum() + (labels == 1).sum())

    assert f1(thr) == max(f1(t) for t in scores)  # the best F1 any cut achieves
    assert thr not in scores  # strictly between two scores


def test_one_class_only_is_just_above_the_highest_score():
    assert f1_optimal_threshold(np.zeros(3), np.array([0.1, 0.5, 0.3])) > 0.5
