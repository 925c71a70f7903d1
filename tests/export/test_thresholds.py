"""Decision thresholds: placed by the normals (a margin in logit space above the highest), or the
best-F1 rule with its margin in the middle of the gap; the report's lines agree with the numbers."""

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


def test_best_f1_rule_is_never_below_the_highest_normal_score():
    from diffusionad_edge.runtime.thresholds import Thresholds, safe_image_threshold

    rng = np.random.default_rng(1)
    normal, anomalous = rng.normal(0.3, 0.1, 40), rng.normal(0.35, 0.1, 40)  # a weak model: heavy overlap
    labels = np.r_[np.zeros(40), np.ones(40)]
    assert f1_optimal_threshold(labels, np.r_[normal, anomalous]) < normal.max()  # what the F1 rule alone would do
    thr = safe_image_threshold(normal, anomalous)
    assert thr > normal.max()
    t = Thresholds.from_labelled_scores(labels, np.r_[normal, anomalous], 0.5, "test", rule="best-f1")
    assert t.image == thr and t.expected["false_alarm_rate"] == 0.0 and t.expected["overlap"]
    assert t.expected["miss_rate"] == pytest.approx(np.mean(anomalous < thr))


def test_separable_scores_keep_the_f1_threshold_and_report_no_overlap():
    from diffusionad_edge.runtime.thresholds import Thresholds

    t = Thresholds.from_labelled_scores(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.4, 0.8, 0.9]), 0.5, "test",
                                        rule="best-f1")
    assert t.image == pytest.approx(0.6)
    assert t.expected == {"false_alarm_rate": 0.0, "miss_rate": 0.0, "false_alarms": 0, "normals": 3, "misses": 0,
                          "anomalies": 2, "overlap": False, "below_normal_max": 0}


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


def _logit(p):
    return np.log(p / (1 - p))


@pytest.mark.parametrize("n", [3, 5, 16, 64])
def test_normals_rule_sits_above_the_normals_by_the_stated_margin(n):
    """threshold = sigmoid(max logit + max(k x sd of the logits, floor)), whatever the anomalies are."""
    from diffusionad_edge.runtime.thresholds import MARGIN_FLOOR_LOGIT, Thresholds, normals_threshold

    rng = np.random.default_rng(n)
    normal = 1 / (1 + np.exp(-rng.normal(-9.0, 0.6, n)))  # scores near 1e-4, as a trained model gives
    for k in (0.0, 1.0, 3.0):
        thr, rec = normals_threshold(normal, k)
        z = _logit(normal)
        margin = max(k * np.std(z, ddof=1), MARGIN_FLOOR_LOGIT)
        assert rec["margin_logit"] == pytest.approx(margin) and rec["normals"] == n
        assert _logit(thr) == pytest.approx(z.max() + margin)
        assert thr > normal.max() and rec["normal_max"] == pytest.approx(normal.max())
    labels = np.r_[np.zeros(n), np.ones(8)]
    weak, strong = np.full(8, normal.min()), np.full(8, 0.9)  # anomalies are a check, they never move the threshold
    t_weak = Thresholds.from_labelled_scores(labels, np.r_[normal, weak], 0.5, "test")
    t_strong = Thresholds.from_labelled_scores(labels, np.r_[normal, strong], 0.5, "test")
    assert t_weak.image == t_strong.image == normals_threshold(normal)[0]
    assert t_weak.expected["misses"] == 8 and t_strong.expected["misses"] == 0
    assert t_weak.expected["false_alarms"] == t_strong.expected["false_alarms"] == 0


def test_few_or_identical_normals_keep_the_floor():
    from diffusionad_edge.runtime.thresholds import MARGIN_FLOOR_LOGIT, normals_threshold

    for normal in ([1e-4, 1e-4, 1e-4], [2e-4]):  # no spread to measure: the floor is the margin
        thr, rec = normals_threshold(np.array(normal), 3.0)
        assert rec["margin_logit"] == MARGIN_FLOOR_LOGIT and _logit(thr) == pytest.approx(_logit(max(normal)) + MARGIN_FLOOR_LOGIT)
    assert normals_threshold(np.array([0.0, 1.0]))[0] <= 1.0  # 0 and 1 stay finite in logit space


@pytest.mark.parametrize("args, message", [
    (("median",), "--threshold-rule 'median'"),
    (("normals", -0.5), "--threshold-margin -0.5"),
    (("normals", 11.0), "--threshold-margin 11.0"),
    (("normals", float("nan")), "--threshold-margin nan"),
    (("best-f1", 1.0), "applies to --threshold-rule normals"),
    (("best-f1", None, 0.01), "replaces the threshold rule"),
    (("normals", None, 1.0), "--false-alarm-rate 1.0"),
    (("normals", None, -0.1), "--false-alarm-rate -0.1"),
])
def test_a_rule_or_margin_out_of_range_is_one_config_error(args, message):
    from diffusionad_edge.errors import ConfigError
    from diffusionad_edge.runtime.thresholds import check_rule

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("-", r"\-")):
        check_rule(*args)


def test_report_lines_agree_with_the_threshold_and_the_highest_normal():
    """The old report printed 'overlap (highest normal 0.0025)' beside a threshold of 0.4966: now the
    rule line names the highest normal and the margin that gives the threshold, and the warning counts
    exactly the anomalies at or below that highest normal."""
    import re

    from diffusionad_edge.runtime.thresholds import Thresholds, expected_lines, score_text

    normal = np.array([1.0e-4, 1.3e-4, 2.5e-3])
    anomalous = np.array([1e-3, 2e-3, 0.02, 0.5, 0.9])  # two of them below the highest normal
    t = Thresholds.from_labelled_scores(np.r_[np.zeros(3), np.ones(5)], np.r_[normal, anomalous], 0.5, "test").to_dict()
    lines = expected_lines(t)
    numbers = [float(x) for x in re.findall(r"\d\.\d+(?:e-\d+)?", lines[0])]
    assert lines[0].startswith(f"image threshold {score_text(t['image'])}: the highest of 3 normal scores, {score_text(2.5e-3)}")
    assert numbers[0] > numbers[1]  # the threshold sits above the highest normal it names
    rate = lines[1]
    assert "false alarms 0.0 % (0/3 good parts)" in rate and f"missed defects {100 * 2 / 5:.1f} % (2/5)" in rate
    assert lines[2].startswith(f"warning: 2 of 5 anomalies score no higher than the highest normal ({score_text(2.5e-3)})")
    assert t["image"] > t["normal_score_max"] == 2.5e-3


def test_pixel_threshold_by_the_normal_maps():
    from diffusionad_edge.export.thresholds import derive_thresholds, pixel_threshold
    from diffusionad_edge.runtime.thresholds import normals_threshold

    rng = np.random.default_rng(0)
    normal_maps = rng.uniform(0, 0.05, (3, 16, 16)).astype(np.float32)
    anomalous_maps = rng.uniform(0, 0.05, (2, 16, 16)).astype(np.float32)
    masks = np.zeros((2, 16, 16), np.float32)
    masks[:, 4:8, 4:8] = 1
    anomalous_maps[0][masks[0] > 0] = 0.9  # one anomaly found, one not
    thr, rec = pixel_threshold(normal_maps, anomalous_maps, masks)
    assert thr == normals_threshold(normal_maps.reshape(3, -1).max(1))[0] and thr > normal_maps.max()
    assert rec["normal_pixel_rate"] == 0.0 and rec["defect_pixel_recall"] == pytest.approx(0.5)
    t = derive_thresholds(normal_maps.max((1, 2)), anomalous_maps.max((1, 2)), normal_maps, anomalous_maps, masks)
    assert t.pixel == thr and t.to_dict()["pixel_rule"]["defect_pixel_recall"] == pytest.approx(0.5)
    f1_thr, _ = pixel_threshold(normal_maps, anomalous_maps, masks, "best-f1")
    assert 0.05 < f1_thr < 0.9


def test_a_threshold_set_by_hand_is_reported_as_such():
    from diffusionad_edge.runtime.thresholds import Thresholds, expected_lines, score_text

    t = Thresholds.from_labelled_scores(np.array([0, 0, 0, 1]), np.array([1e-4, 2e-4, 3e-4, 0.5]), 0.5, "test")
    moved = Thresholds.from_dict(t.to_dict()).override(image=2.5e-4).override(image=0.1)
    d = moved.to_dict()
    assert d["rule_params"]["name"] == "set" and d["rule_params"]["placed_by"]["name"] == "normals"
    line = expected_lines(d)[0]
    assert line == f"image threshold {score_text(0.1)}: set by hand, above the highest of 3 normal scores ({score_text(3e-4)})"
    low = expected_lines(Thresholds.from_dict(t.to_dict()).override(image=2.5e-4).to_dict())
    assert "at or below the highest" in low[0] and "false alarms 33.3 % (1/3 good parts)" in low[1]
