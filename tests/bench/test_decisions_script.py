"""benchmarks/decisions.py: the default thresholds placed as dae export places them, and decision
counts on the test split that agree with the scores it writes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "decisions.py"


def test_decisions_script_on_the_tiny_checkpoint(tiny_checkpoint, tiny_dataset, tmp_path):
    from diffusionad_edge.runtime.thresholds import normals_threshold

    res = subprocess.run([sys.executable, str(SCRIPT), str(tiny_checkpoint), "--data", str(tiny_dataset.path),
                          "--margins", "0,2,1:0", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    result = json.loads((tmp_path / "decisions.json").read_text())
    thr, d, test = result["thresholds"], result["decisions"], result["test"]
    # the threshold the export rule gives on the held-out normals it records
    assert thr["image"] == pytest.approx(normals_threshold(thr["scores"]["normal"])[0], rel=1e-4)
    scores, labels = np.asarray(test["scores"]), np.asarray(test["labels"])
    assert len(scores) == len(tiny_dataset.test_samples) and d["threshold"] == thr["image"]
    assert d["recall"] == pytest.approx(np.mean(scores[labels == 1] >= thr["image"]))
    assert d["false_alarms"] == int(np.sum(scores[labels == 0] >= thr["image"]))
    assert d["best_no_fa_recall"] == pytest.approx(np.mean(scores[labels == 1] > scores[labels == 0].max()))
    assert sum(v["n"] for v in d["per_type"].values()) == int(labels.sum())
    assert [r["rule"] for r in result["sweep"]] == ["normals, k=0", "normals, k=2", "normals, k=1, floor 0", "best-f1 (previous default)"]
    md = (tmp_path / "decisions.md").read_text()
    assert md.strip() == res.stdout[res.stdout.index("# Decisions"):].strip() and f"{d['caught']}/{d['defective']}" in md
