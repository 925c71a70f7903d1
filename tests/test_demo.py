"""The demo's line verdict: caught defects, missed defects and false alarms, each by frame."""

import json

from diffusionad_edge.demo import score_decisions


def test_decisions_are_split_into_caught_missed_and_false_alarms(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps({"decision": d}) for d in ["NG", "OK", "NG", "OK", "NG"]) + "\n")
    v = score_decisions(events, [True, True, False, False, False], {"image": 0.5, "source": "held-out"})
    assert (v.caught, v.missed, v.false_alarms, v.good_ok) == ([0], [1], [2, 4], 1)
    assert str(v).startswith("caught 1 of 2 defective frames, missed 1; false alarms on 2 of 3 good frames")


def test_training_note_agrees_with_the_test_metrics_beside_it():
    """The report once opened with 'under-trained ... 0.833 (< 0.9)' above a table of image AUROC 1.000."""
    from diffusionad_edge.demo import training_note

    assert training_note(0.95, 0.5, 200) is None and training_note(None, 0.5, 200) is None
    low_check = training_note(0.833, 1.0, 200)
    assert "under-trained" not in low_check.lower() and "0.833" in low_check and "1.000" in low_check
    both_low = training_note(0.833, 0.61, 200)
    assert both_low.startswith("**Under-trained model:**") and "0.833" in both_low and "0.610" in both_low
    assert training_note(0.8, float("nan"), 60).startswith("**Under-trained model:**")
