"""dae bench on tiny bundles: every field for every row, a real PNG, speed-ups from measured times."""

import json
import subprocess
import sys

import cv2
import pytest

from diffusionad_edge.bench.benchmark import Row, add_relative_numbers
from diffusionad_edge.export.pipeline import ExportOptions, export_bundle

FIELDS = {"name", "backend", "precision", "runtime_precision", "batch", "gflop_per_image", "size_mib", "latency_ms", "fps",
          "gflops_achieved", "peak_rss_mib", "iterations", "accuracy", "accuracy_delta_vs_fp32", "speedup_vs"}


@pytest.fixture(scope="module")
def bench_result(tiny_checkpoint, tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    bundles = [export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target=t, precision=p, out_dir=root / f"{t}-{p}", input_size=64,
                                           calibration_count=8), log=lambda m: None).bundle
               for t, p in (("onnxruntime-cpu", "int8"), ("openvino-cpu", "fp32"))]
    # keep the iterative rows short: a checkpoint whose t_b is small
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "bench", *map(str, bundles), "--checkpoint", str(tiny_checkpoint),
                          "--iterations", "3", "--warmup", "1", "--iterative-start", "20", "--batch", "1,2", "--eval-data", str(tiny_dataset.path), "--eval-limit", "6",
                          "--out", str(root / "out")], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    return root / "out"


def test_every_row_has_every_field_and_outputs_exist(bench_result):
    result = json.loads((bench_result / "bench.json").read_text())
    names = [r["name"] for r in result["rows"]]
    assert any("DDPM from t=20" in n for n in names) and any("DDIM" in n for n in names) and any("pytorch eager" in n for n in names)
    assert [r["batch"] for r in result["rows"] if "eager" in r["name"]] == [1, 2]
    for r in result["rows"]:
        assert FIELDS <= set(r), FIELDS - set(r)
        for stage in ("preprocess", "inference", "postprocess", "total"):
            assert {"p50", "p90", "p99"} <= set(r["latency_ms"][stage])
        assert r["fps"] > 0
        if "(b2)" not in r["name"]:  # accuracy is measured once per model, at the first batch size
            assert set(r["accuracy"]) == {"image_auroc", "pixel_auroc", "pixel_ap", "aupro"}
    assert result["machine"]["logical_cores"] >= 1 and "versions" in result["machine"]
    img = cv2.imread(str(bench_result / "bench.png"))
    assert img is not None and img.shape[0] > 100 and img.std() > 0
    assert "| row |" in (bench_result / "bench.md").read_text()


def test_speedups_come_from_measured_times():
    def row(name, ms, batch=1):
        r = Row(name, "pytorch", "fp32", "fp32", batch, 1.0, 1.0)
        r.latency_ms = {"inference": {"mean": ms}}
        return r

    rows = [row("pytorch eager one-step (b1)", 10.0), row("pytorch DDPM from t=400", 4000.0), row("x b4", 20.0, batch=4)]
    add_relative_numbers(rows)
    assert rows[0].speedup_vs["pytorch DDPM from t=400"] == pytest.approx(400.0)
    assert rows[2].speedup_vs["pytorch DDPM from t=400"] == pytest.approx(800.0)  # per image: 5 ms
    rows[1].latency_ms["inference"]["mean"] = 8000.0
    add_relative_numbers(rows)
    assert rows[0].speedup_vs["pytorch DDPM from t=400"] == pytest.approx(800.0)
