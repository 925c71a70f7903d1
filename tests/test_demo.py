"""The demo's line verdict: caught defects, missed defects and false alarms, each by frame."""

import json

from diffusionad_edge.demo import score_decisions


def test_decisions_are_split_into_caught_missed_and_false_alarms(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps({"decision": d}) for d in ["NG", "OK", "NG", "OK", "NG"]) + "\n")
    v = score_decisions(events, [True, True, False, False, False], {"image": 0.5, "source": "held-out"})
    assert (v.caught, v.missed, v.false_alarms, v.good_ok) == ([0], [1], [2, 4], 1)
    assert str(v).startswith("caught 1 of 2 defective frames, missed 1; false alarms on 2 of 3 good frames")
