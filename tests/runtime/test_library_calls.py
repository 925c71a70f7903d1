"""``dae predict`` and ``dae run`` as library calls: :func:`predict_images` and :func:`run_on_line`
from Python, no CLI, on the tiny checkpoint (opened as a bundle) and the tiny dataset's images."""

from __future__ import annotations

import csv
import json

from diffusionad_edge import RunOptions, SourceSpec, predict_images, run_on_line


def test_predict_images_from_python(tiny_checkpoint, tiny_dataset, tmp_path):
    folder = tiny_dataset.path / "test" / "good"
    rows: list[dict] = []
    report = predict_images(tiny_checkpoint, [folder], tmp_path / "out", threshold=0.5, on_row=rows.append)
    images = sorted(folder.iterdir())
    assert [r["path"] for r in report.rows] == [str(p) for p in images] and rows == report.rows
    assert all(r["decision"] == ("NG" if r["score"] >= 0.5 else "OK") for r in rows)
    with open(tmp_path / "out" / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(images)


def test_run_on_line_from_python(tiny_checkpoint, tiny_dataset, tmp_path):
    said: list[str] = []
    events = tmp_path / "events.jsonl"
    summary = run_on_line(tiny_checkpoint, [SourceSpec("cam0", str(tiny_dataset.path / "test" / "good"))],
                          RunOptions(events=events, max_frames=3), say=said.append)
    assert summary.frames == 3 and not summary.incomplete
    assert [json.loads(line)["frame"] for line in events.read_text().splitlines()] == [0, 1, 2]
    assert said and said[0].startswith(f"running {tiny_checkpoint}")
