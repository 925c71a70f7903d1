"""benchmarks/refit_false_alarms.py: each round's refit is the bundle's rule over its recorded normals and
the reviewed frames, and the counts agree with the scores it writes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "refit_false_alarms.py"


def test_refit_script_on_a_tiny_bundle(tiny_checkpoint, tiny_dataset, tmp_path):
    from diffusionad_edge.export.pipeline import ExportOptions, export_bundle
    from diffusionad_edge.runtime.bundle import read_metadata
    from diffusionad_edge.runtime.thresholds import normals_threshold

    bundle = export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="onnxruntime-cpu", out_dir=tmp_path / "b",
                                         precision="fp32", input_size=64), log=lambda m: None).bundle
    before = (bundle / "metadata.json").read_bytes()
    res = subprocess.run([sys.executable, str(SCRIPT), str(bundle), "--data", str(tiny_dataset.path), "--shift", "none,brighter",
                          "--reviewed", "2", "--rounds", "2", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert (bundle / "metadata.json").read_bytes() == before  # the bundle itself is never refit: copies are
    result = json.loads((tmp_path / "out" / "refit.json").read_text())
    thr = read_metadata(bundle)["thresholds"]
    recorded = thr["scores"]["normal"]
    for shift in ("none", "brighter"):
        s = result["shifts"][shift]
        good, bad = np.asarray(s["good_scores"]), np.asarray(s["defect_scores"])
        assert len(good) + len(bad) == len(tiny_dataset.test_samples)
        for r in s["rounds"]:
            picked = [s["good"].index(name) for name in r["reviewed"]]
            held = [i for i in range(len(good)) if i not in picked]
            expected, _ = normals_threshold(np.r_[recorded, good[picked]], thr["rule_params"]["margin_sd"])
            assert r["image_threshold"] == pytest.approx(expected, rel=1e-5)
            assert r["false_alarms_before"] == int(np.sum(good[held] >= thr["image"]))
            assert r["false_alarms_after"] == int(np.sum(good[held] >= r["image_threshold"]))
            assert r["defects_caught_after"] == int(np.sum(bad >= r["image_threshold"]))
    md = (tmp_path / "out" / "refit.md").read_text()
    assert "| none |" in md and "| brighter |" in md and md.strip() in res.stdout
