"""dae bench on tiny bundles: every field for every row, a real PNG, speed-ups from measured times."""

import json
import subprocess
import sys

import cv2
import pytest

from diffusionad_edge.bench.benchmark import BenchConfig, Row, add_relative_numbers, bench_bundle
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
                          "--iterations", "3", "--warmup", "1", "--iterative-start", "20", "--batch", "1,2",
                          "--throughput", "--eval-data", str(tiny_dataset.path), "--eval-limit", "6",
                          "--out", str(root / "out")], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    (root / "out" / "stdout.txt").write_text(res.stdout)
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
    # One throughput row, for the OpenVINO bundle only, measured the benchmark_app way, and no
    # speed-up claimed from its per-request latency under load.
    (tp,) = [r for r in result["rows"] if r["mode"] == "throughput"]
    assert tp["backend"] == "openvino" and "throughput" in tp["name"] and "requests in flight" in tp["note"]
    assert tp["fps"] > 0 and tp["iterations"] >= 3 and tp["speedup_vs"] == {} and tp["runtime_precision"] == "fp32"
    # Bundles carry their own GFLOP per image, so GFLOP/s is there for every row.
    assert all(r["gflop_per_image"] and r["gflops_achieved"] for r in result["rows"])
    # Not a terminal (80 columns): the essential columns, readable; bench.md keeps all of them.
    stdout = (bench_result / "stdout.txt").read_text()
    assert "essential columns" in stdout and "pix AUROC" not in stdout and "pix AUROC" in (bench_result / "bench.md").read_text()
    # Piped: every row name in full, the speed-up over PyTorch FP32 beside each bundle row; one chart per question.
    for r in result["rows"]:
        assert r["name"] in stdout
    assert "speed-up vs PyTorch FP32" in stdout and "…" not in stdout
    assert all(r["speedup_vs_pytorch_fp32"] > 0 for r in result["rows"] if r["mode"] == "latency")
    assert (bench_result / "bench_accuracy.png").is_file()


def test_bench_json_parses(bench_result, tmp_path):
    bundle = bench_result.parent / "onnxruntime-cpu-int8"
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "bench", str(bundle), "--iterations", "2", "--warmup", "0",
                          "--json", "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert [r["name"] for r in result["rows"]] == ["onnxruntime-cpu int8"]
    assert (tmp_path / "o" / "bench.png").is_file() and not (tmp_path / "o" / "bench_accuracy.png").exists()


def test_bench_takes_accuracy_from_the_export_only_for_the_same_data(tiny_checkpoint, tiny_dataset, tmp_path):
    bundle = export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="onnxruntime-cpu", precision="fp32", out_dir=tmp_path / "b",
                                         input_size=64, eval_data=tiny_dataset.path), log=lambda m: None)
    reported = bundle.metadata["checks"]["accuracy"]["artifact"]
    same = bench_bundle(bundle.bundle, BenchConfig(warmup=0, iterations=1, eval_data=tiny_dataset.path, accuracy_from_export=True))
    assert same.accuracy == reported and "export" in same.note
    other = bench_bundle(bundle.bundle, BenchConfig(warmup=0, iterations=1, eval_data=tiny_dataset.path, eval_limit=4, accuracy_from_export=True))
    assert other.note == "" and other.accuracy is not None  # a different limit: measured here, not copied


def test_speedups_come_from_measured_times():
    def row(name, ms, batch=1):
        r = Row(name, "pytorch", "fp32", "fp32", batch, 1.0, 1.0)
        r.latency_ms = {"inference": {"mean": ms}}
        return r

    rows = [row("pytorch eager one-step (b1)", 10.0), row("pytorch DDPM from t=400", 4000.0), row("x b4", 20.0, batch=4)]
    add_relative_numbers(rows)
    assert rows[0].speedup_vs["pytorch DDPM from t=400"] == pytest.approx(400.0)
    assert rows[2].speedup_vs["pytorch DDPM from t=400"] == pytest.approx(800.0)  # per image: 5 ms
    # against PyTorch eager FP32 one-step, per image
    assert rows[0].speedup_vs_pytorch_fp32 == pytest.approx(1.0)
    assert rows[2].speedup_vs_pytorch_fp32 == pytest.approx(2.0)
    rows[1].latency_ms["inference"]["mean"] = 8000.0
    add_relative_numbers(rows)
    assert rows[0].speedup_vs["pytorch DDPM from t=400"] == pytest.approx(800.0)


def test_interleaved_rows_run_in_turns(bench_result, tiny_checkpoint, tiny_dataset, tmp_path):
    """--rounds: every latency row gets its iterations in rounds, the rows' time windows overlap (they
    ran in turns, not one after another), and the rest of the table is as without it."""
    bundles = [bench_result.parent / "onnxruntime-cpu-int8", bench_result.parent / "openvino-cpu-fp32"]
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "bench", *map(str, bundles), "--checkpoint", str(tiny_checkpoint),
                          "--iterations", "6", "--rounds", "3", "--warmup", "1", "--no-iterative", "--eval-data", str(tiny_dataset.path),
                          "--eval-limit", "4", "--json", "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    assert [r["name"] for r in rows] == ["onnxruntime-cpu int8", "openvino-cpu fp32", "pytorch eager one-step (b1)"]
    for r in rows:
        assert r["iterations"] == 6 and "interleaved: 3 rounds of 2" in r["note"] and r["peak_rss_mib"] is None
        assert set(r["accuracy"]) == {"image_auroc", "pixel_auroc", "pixel_ap", "aupro"}
    windows = [r["window_s"] for r in rows]
    # each row's first timed run comes before every other row's last one: the windows overlap
    assert all(a[0] < b[1] for a in windows for b in windows if a is not b), windows
    assert rows[0]["speedup_vs_pytorch_fp32"] > 0 and rows[2]["speedup_vs_pytorch_fp32"] == pytest.approx(1.0)


def test_rows_of_the_same_target_and_precision_are_named_apart(bench_result, tmp_path):
    import shutil

    bundle, ov = bench_result.parent / "onnxruntime-cpu-int8", bench_result.parent / "openvino-cpu-fp32"
    twin, ov_twin = tmp_path / "retrained-int8", tmp_path / "retrained-ov"
    shutil.copytree(bundle, twin)
    shutil.copytree(ov, ov_twin)
    # the throughput rows (OpenVINO bundles only) are named after their own bundle, not after the
    # bundle in the same position of the list
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "bench", str(bundle), str(twin), str(ov), str(ov_twin),
                          "--iterations", "2", "--warmup", "0", "--throughput", "--json", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    names = [r["name"] for r in json.loads(res.stdout)["rows"]]
    assert names[:3] == ["onnxruntime-cpu int8 (onnxruntime-cpu-int8)", "onnxruntime-cpu int8 (retrained-int8)",
                         "openvino-cpu fp32 (openvino-cpu-fp32)"]
    assert names[3].endswith("(openvino-cpu-fp32)") and "throughput" in names[3]
    assert names[4] == "openvino-cpu fp32 (retrained-ov)"
    assert names[5].endswith("(retrained-ov)") and "throughput" in names[5]
