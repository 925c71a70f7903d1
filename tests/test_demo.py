"""The demo's line verdict: caught defects, missed defects and false alarms, each by frame."""

import json

from diffusionad_edge.demo.line import score_decisions


def test_decisions_are_split_into_caught_missed_and_false_alarms(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps({"decision": d}) for d in ["NG", "OK", "NG", "OK", "NG"]) + "\n")
    v = score_decisions(events, [True, True, False, False, False], {"image": 0.5, "source": "held-out"})
    assert (v.caught, v.missed, v.false_alarms, v.good_ok) == ([0], [1], [2, 4], 1)
    assert str(v).startswith("caught 1 of 2 defective frames, missed 1; false alarms on 2 of 3 good frames")


def test_training_note_agrees_with_the_test_metrics_beside_it():
    """The report once opened with 'under-trained ... 0.833 (< 0.9)' above a table of image AUROC 1.000."""
    from diffusionad_edge.demo.report import training_note

    assert training_note(0.95, 0.5, 200) is None and training_note(None, 0.5, 200) is None
    low_check = training_note(0.833, 1.0, 200)
    assert "under-trained" not in low_check.lower() and "0.833" in low_check and "1.000" in low_check
    both_low = training_note(0.833, 0.61, 200)
    assert both_low.startswith("**Under-trained model:**") and "0.833" in both_low and "0.610" in both_low
    assert training_note(0.8, float("nan"), 60).startswith("**Under-trained model:**")


def test_run_demo_checks_its_folder_before_any_work(tmp_path):
    """``dae demo`` as a library call: run_demo refuses a folder it may not fill before anything is
    said or written. (The whole run, through the same function, is tests/cli/test_cli.py's demo test:
    a second one here would double minutes of test time.)"""
    import pytest

    from diffusionad_edge.demo.run import DemoOptions, DemoReporter, run_demo
    from diffusionad_edge.paths import MARKER, OutputPathError

    said: list[str] = []

    class Recording(DemoReporter):
        def section(self, title: str) -> None:
            said.append(title)

        def log(self, message: str) -> None:
            said.append(message)

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    for overwrite in (False, True):  # --overwrite replaces only a folder dae wrote
        with pytest.raises(OutputPathError, match="not written by dae"):
            run_demo(DemoOptions(out=mine, fast=True, overwrite=overwrite), Recording())
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / MARKER).write_text("{}")
    (earlier / "report.md").write_text("an earlier demo's report")
    with pytest.raises(OutputPathError, match="earlier run"):
        run_demo(DemoOptions(out=earlier, fast=True), Recording())
    assert said == [] and [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (earlier / "report.md").read_text() == "an earlier demo's report"
