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


def test_default_image_threshold_is_never_below_the_highest_normal_score():
    from diffusionad_edge.runtime.thresholds import Thresholds, safe_image_threshold

    rng = np.random.default_rng(1)
    normal, anomalous = rng.normal(0.3, 0.1, 40), rng.normal(0.35, 0.1, 40)  # a weak model: heavy overlap
    labels = np.r_[np.zeros(40), np.ones(40)]
    assert f1_optimal_threshold(labels, np.r_[normal, anomalous]) < normal.max()  # what the F1 rule alone would do
    thr = safe_image_threshold(normal, anomalous)
    assert thr > normal.max()
    t = Thresholds.from_labelled_scores(labels, np.r_[normal, anomalous], 0.5, "test")
    assert t.image == thr and t.expected["false_alarm_rate"] == 0.0 and t.expected["overlap"]
    assert t.expected["miss_rate"] == pytest.approx(np.mean(anomalous < thr))


def test_separable_scores_keep_the_f1_threshold_and_report_no_overlap():
    from diffusionad_edge.runtime.thresholds import Thresholds

    t = Thresholds.from_labelled_scores(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.4, 0.8, 0.9]), 0.5, "test")
    assert t.image == pytest.approx(0.6)
    assert t.expected == {"false_alarm_rate": 0.0, "miss_rate": 0.0, "false_alarms": 0, "normals": 3, "misses": 0,
                          "anomalies": 2, "overlap": False}


def test_a_target_false_alarm_rate_lowers_the_threshold_within_that_budget():
    from diffusionad_edge.runtime.thresholds import error_rates, safe_image_threshold

    normal = np.linspace(0.0, 0.99, 100)
    anomalous = np.linspace(0.5, 1.5, 50)
    thr = safe_image_threshold(normal, anomalous, false_alarm_rate=0.05)
    rates = error_rates(normal, anomalous, thr)
    assert rates["false_alarms"] == 5 and thr < normal.max()
    assert safe_image_threshold(normal, anomalous, false_alarm_rate=0.0) > normal.max()


def test_a_changed_threshold_gets_its_expected_rates_recomputed():
    from diffusionad_edge.runtime.thresholds import Thresholds

    t = Thresholds.from_labelled_scores(np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.2, 0.9]), 0.5, "test")
    assert t.expected["misses"] == 1
    lowered = Thresholds.from_dict(t.to_dict()).override(image=0.15)
    assert lowered.expected["false_alarms"] == 1 and lowered.expected["misses"] == 0
