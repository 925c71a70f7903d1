"""Real exports of the tiny model: real ONNX Runtime and OpenVINO sessions, real files."""

import json
import shutil

import numpy as np
import onnx
import pytest

from diffusionad_edge.data.preprocess import read_image
from diffusionad_edge.export.pipeline import ExportCheckFailed, ExportOptions, export_bundle
from diffusionad_edge.runtime.bundle import BundleError, load_bundle
from diffusionad_edge.runtime.runners import TorchRunner
from diffusionad_edge.train.checkpoint import load_model


def _export(ckpt, out, target, precision, **kw):
    return export_bundle(ExportOptions(checkpoint=ckpt, target=target, out_dir=out, precision=precision, input_size=64,
                                       calibration_count=8, **kw), log=lambda m: None)


@pytest.fixture(scope="module")
def ort_fp32(tiny_checkpoint, tmp_path_factory):
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("b") / "ort32", "onnxruntime-cpu", "fp32")


@pytest.fixture(scope="module")
def ort_int8(tiny_checkpoint, tiny_dataset, tmp_path_factory):
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("b") / "ort8", "onnxruntime-cpu", "int8",
                   eval_data=tiny_dataset.path, max_drop=1.0)


def test_fp32_bundle_metadata_and_parity(ort_fp32, tiny_checkpoint, tiny_dataset):
    meta = json.loads((ort_fp32.bundle / "metadata.json").read_text())
    for key in ("versions", "preset", "model_config", "inference", "input", "target", "precision", "files", "thresholds", "checks"):
        assert key in meta
    assert meta["inference"]["t_s"] == 200 and meta["inference"]["t_b"] == 400
    assert meta["checks"]["passed"] and meta["checks"]["fp32_onnx_vs_pytorch"]["map_max_abs_error"] < 1e-4
    assert set(meta["files"]) == {"model.onnx"}
    assert not list(ort_fp32.bundle.parent.glob(".*partial*"))
    # the Python API: same scores as PyTorch on real test images
    model, _ = load_model(tiny_checkpoint)
    paths = [s.image_path for s in tiny_dataset.test_samples[:4]]
    with load_bundle(ort_fp32.bundle) as art:
        results = [art.predict(p) for p in paths]
        batch = np.stack([art.preprocess(p) for p in paths])
    torch_scores = TorchRunner(model).infer(batch).score
    assert np.allclose([r.score for r in results], torch_scores, atol=1e-4)
    r = results[0]
    assert r.anomaly_map.shape == (64, 64) and r.defect_mask.dtype == bool
    assert r.is_anomalous == (r.score >= meta["thresholds"]["image"])
    # BGR frames from a camera go through the same path
    with load_bundle(ort_fp32.bundle) as art:
        rgb = read_image(paths[0])
        assert art.predict(rgb[..., ::-1].copy(), bgr=True).score == pytest.approx(results[0].score, abs=1e-6)


def test_int8_qdq_graph_tracks_fp32(ort_int8, ort_fp32, tiny_dataset):
    proto = onnx.load(str(ort_int8.bundle / "model.onnx"))
    producers = {o: n for n in proto.graph.node for o in n.output}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:  # activation and weight of every conv come through DequantizeLinear
        assert producers[conv.input[0]].op_type == "DequantizeLinear"
        assert producers[conv.input[1]].op_type == "DequantizeLinear"
    checks = ort_int8.metadata["checks"]
    assert checks["accuracy"]["delta"].keys() == {"image_auroc", "pixel_auroc", "pixel_ap", "aupro"}
    assert ort_int8.metadata["calibration"]["count"] == 8
    # Stated tolerance on the tiny preset: scores within 0.02, maps within 0.1 of FP32.
    paths = [s.image_path for s in tiny_dataset.test_samples]
    with load_bundle(ort_fp32.bundle) as a32, load_bundle(ort_int8.bundle) as a8:
        batch = np.stack([a32.preprocess(p) for p in paths])
        p32, p8 = a32.runner.infer(batch), a8.runner.infer(batch)
    assert np.abs(p32.score - p8.score).max() < 0.02
    assert np.abs(p32.anomaly_map - p8.anomaly_map).max() < 0.1


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_openvino_precisions(tiny_checkpoint, tmp_path, precision):
    res = _export(tiny_checkpoint, tmp_path / precision, "openvino-cpu", precision)
    assert {"model.xml", "model.bin"} == set(res.metadata["files"])
    runs_as = res.metadata["checks"]["runtime_precision"]
    if precision == "int8":  # the float precision of the unquantized ops is named too
        assert runs_as in ("int8 (float ops fp32)", "int8 (float ops bf16)", "int8 (float ops fp16)")
    else:
        assert runs_as in ("fp32", "bf16", "fp16")
    if precision == "fp32":
        assert res.metadata["runtime_options"]["config"]["INFERENCE_PRECISION_HINT"] == "f32"
        assert res.metadata["checks"]["artifact_vs_pytorch"]["map_max_abs_error"] < 1e-3
    with load_bundle(res.bundle) as art:
        assert 0.0 <= art.predict(np.zeros((50, 70, 3), np.uint8)).score <= 1.0


def test_openvino_accuracy_aware_int8(tiny_checkpoint, tiny_dataset, tmp_path):
    res = _export(tiny_checkpoint, tmp_path / "aa", "openvino-cpu", "int8", eval_data=tiny_dataset.path,
                  accuracy_aware=True, max_drop=0.05)
    acc = res.metadata["checks"]["accuracy"]
    assert -acc["delta"]["image_auroc"] <= 0.05 and res.passed
    assert res.metadata["checks"]["runtime_precision"].startswith("int8")


def test_tampered_or_incomplete_bundle_refused(ort_fp32, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ort_fp32.bundle, copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(BundleError, match="bundle file missing"):
        load_bundle(copy)
    meta = json.loads((ort_fp32.bundle / "metadata.json").read_text())
    meta["versions"]["diffusionad_edge"] = "9.0.0"
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="major versions differ"):
        load_bundle(copy)
    (copy / "metadata.json").write_text("{")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="bundle folder not found"):
        load_bundle(tmp_path / "nothing")


def test_failed_check_leaves_nothing_unless_kept(tiny_checkpoint, tiny_dataset, tmp_path):
    # An impossible accuracy bound (-1) must fail the INT8 export.
    opts = dict(eval_data=tiny_dataset.path, max_drop=-1.0)
    with pytest.raises(ExportCheckFailed, match="image AUROC drop"):
        _export(tiny_checkpoint, tmp_path / "fail", "onnxruntime-cpu", "int8", **opts)
    assert not (tmp_path / "fail").exists() and not list(tmp_path.glob(".*"))
    kept = _export(tiny_checkpoint, tmp_path / "kept", "onnxruntime-cpu", "int8", keep_failed=True, **opts)
    assert not kept.passed and not kept.metadata["checks"]["passed"]
    assert (tmp_path / "kept" / "metadata.json").is_file()


_NO_TORCH = """
import builtins, sys
real = builtins.__import__
def guard(name, *a, **k):
    if name == "torch" or name.startswith("torch."):
        raise ImportError("torch is blocked in this test")
    return real(name, *a, **k)
builtins.__import__ = guard
from diffusionad_edge.runtime.bundle import load_bundle
import numpy as np
with load_bundle(sys.argv[1]) as art:
    print(art.predict(np.zeros((40, 40, 3), np.uint8)).score)
"""


def test_bundle_inference_needs_no_torch(ort_fp32):
    # On a device, a bundle runs with its backend only: no PyTorch import on the inference path.
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _NO_TORCH, str(ort_fp32.bundle)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert 0.0 <= float(res.stdout.strip()) <= 1.0


def test_shared_reference_cache_gives_the_same_checks(ort_int8, tiny_checkpoint, tiny_dataset, tmp_path):
    # dae demo shares the FP32 references across its exports: computed once, the same numbers.
    cache: dict = {}
    first = ort_int8  # exported alone, without a cache
    a = export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="onnxruntime-cpu", out_dir=tmp_path / "c1", precision="int8",
                                    input_size=64, calibration_count=8, eval_data=tiny_dataset.path, max_drop=1.0),
                      log=lambda m: None, reference_cache=cache)
    assert {k[0] for k in cache} == {"torch", "fp32", "metrics"}
    entries = dict(cache)
    b = export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="openvino-cpu", out_dir=tmp_path / "c2", precision="fp32",
                                    input_size=64, eval_data=tiny_dataset.path), log=lambda m: None, reference_cache=cache)
    assert all(cache[k] is v for k, v in entries.items()) and len(cache) == len(entries)  # reused, not recomputed
    for res in (a, b):
        checks = res.metadata["checks"]
        assert checks["accuracy"]["fp32"] == first.metadata["checks"]["accuracy"]["fp32"]
        for key in ("map_max_abs_error", "score_max_abs_error"):  # (decision agreement uses each artifact's own threshold)
            assert checks["fp32_onnx_vs_pytorch"][key] == pytest.approx(first.metadata["checks"]["fp32_onnx_vs_pytorch"][key])
    # Every bundle says what it costs per image, at its own input size.
    assert a.metadata["complexity"]["gflop_per_image"] > 0


def test_thresholds_from_labelled_images_of_the_line(tiny_checkpoint, tiny_dataset, tmp_path):
    from diffusionad_edge.data.mvtec import load_test_arrays
    from diffusionad_edge.runtime.thresholds import f1_optimal_threshold

    res = _export(tiny_checkpoint, tmp_path / "t", "onnxruntime-cpu", "fp32", threshold_data=tiny_dataset.path)
    thr = res.metadata["thresholds"]
    assert "labelled images" in thr["source"] and str(tiny_dataset.path) in thr["source"]
    # The image threshold is the F1-optimal one on the bundle's own scores of those images.
    images, labels, _ = load_test_arrays(tiny_dataset, 64)
    with load_bundle(res.bundle) as art:
        scores = art.runner.infer(images).score
    assert thr["image"] == pytest.approx(f1_optimal_threshold(labels, scores), abs=1e-6)


def test_threshold_data_needs_both_classes(tiny_checkpoint, tiny_dataset, tmp_path):
    from diffusionad_edge.errors import ConfigError

    only_good = tmp_path / "good_only" / "surface"
    shutil.copytree(tiny_dataset.path / "train", only_good / "train")
    shutil.copytree(tiny_dataset.path / "test" / "good", only_good / "test" / "good")
    with pytest.raises(ConfigError, match="both good and defective"):
        _export(tiny_checkpoint, tmp_path / "x", "onnxruntime-cpu", "fp32", threshold_data=only_good)
