"""Real exports of the tiny model: real ONNX Runtime and OpenVINO sessions, real files."""

import copy
import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from diffusionad_edge.data.preprocess import read_image
from diffusionad_edge.export.pipeline import ExportCheckFailed, ExportOptions, export_bundle
from diffusionad_edge.runtime.backends.torch import TorchRunner
from diffusionad_edge.runtime.bundle import BundleError, load_bundle
from diffusionad_edge.train.checkpoint import load_model

#: accuracy limits no tiny model fails: for tests about something else than the gate
LOOSE = dict(max_drop=1.0, max_pixel_auroc_drop=1.0, max_pixel_ap_drop=1.0, max_aupro_drop=1.0)


def _export(ckpt, out, target, precision, **kw):
    return export_bundle(ExportOptions(checkpoint=ckpt, target=target, out_dir=out, precision=precision, input_size=64,
                                       calibration_count=8, **kw), log=lambda m: None)


@pytest.fixture(scope="module")
def ort_fp32(tiny_checkpoint, tmp_path_factory):
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("b") / "ort32", "onnxruntime-cpu", "fp32")


@pytest.fixture(scope="module")
def ort_int8(tiny_checkpoint, tiny_dataset, tmp_path_factory):
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("b") / "ort8", "onnxruntime-cpu", "int8",
                   eval_data=tiny_dataset.path, **LOOSE)


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
    kept_float = [n for n in convs if n.name.startswith(("/segmenter/decoders", "/segmenter/head"))]
    assert convs and kept_float
    for conv in convs:  # activation and weight of every conv come through DequantizeLinear ...
        quantized = conv not in kept_float  # ... but the map's decoder and head (FLOAT_SCOPES)
        for tensor in conv.input[:2]:  # (a float weight is an initializer: no producer)
            assert (getattr(producers.get(tensor), "op_type", None) == "DequantizeLinear") == quantized, conv.name
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
    # The bundle computes what the PyTorch model computes (within the precision's tolerance), and its
    # score is the mean of the top-k pixels of its own map.
    images = _test_images(64)
    reference = TorchRunner(load_model(tiny_checkpoint)[0]).infer(images)
    with load_bundle(res.bundle) as art:
        got = art.runner.infer(images)
    tolerance = {"fp32": 1e-3, "fp16": 0.02, "int8": 0.05}[precision]
    assert np.abs(got.score - reference.score).max() < tolerance
    assert np.abs(got.anomaly_map - reference.anomaly_map).max() < 10 * tolerance
    top_k = res.metadata["inference"]["top_k"]
    own = np.sort(got.anomaly_map.reshape(len(images), -1), axis=1)[:, -top_k:].mean(axis=1)
    assert np.allclose(got.score, own, atol=2e-3 if precision == "fp16" else 1e-5)


def _test_images(size, n=6):
    """A few real test images of the tiny dataset, good and defective, preprocessed."""
    from diffusionad_edge.data.builtin import generate_dataset
    from diffusionad_edge.data.mvtec import MVTecCategory
    from diffusionad_edge.data.preprocess import preprocess

    global _IMAGES
    if _IMAGES is None:
        import tempfile

        root = tempfile.mkdtemp()
        generate_dataset(root, n_train=2, n_test_good=3, n_test_per_defect=1, size=size, seed=1)
        ds = MVTecCategory(root, "surface")
        _IMAGES = np.stack([preprocess(read_image(s.image_path), size) for s in ds.test_samples[:n]])
    return _IMAGES


_IMAGES = None


def test_openvino_accuracy_aware_int8(tiny_checkpoint, tiny_dataset, tmp_path):
    res = _export(tiny_checkpoint, tmp_path / "aa", "openvino-cpu", "int8", eval_data=tiny_dataset.path,
                  accuracy_aware=True, **{**LOOSE, "max_drop": 0.05})
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
    res = subprocess.run([sys.executable, "-c", _NO_TORCH, str(ort_fp32.bundle)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    with load_bundle(ort_fp32.bundle) as art:  # the same score as the full toolkit gives
        assert float(res.stdout.strip()) == pytest.approx(art.predict(np.zeros((40, 40, 3), np.uint8)).score, abs=1e-6)


def test_shared_reference_cache_gives_the_same_checks(ort_int8, tiny_checkpoint, tiny_dataset, tmp_path):
    # dae demo shares the FP32 references across its exports: computed once, the same numbers.
    cache: dict = {}
    first = ort_int8  # exported alone, without a cache
    a = export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="onnxruntime-cpu", out_dir=tmp_path / "c1", precision="int8",
                                    input_size=64, calibration_count=8, eval_data=tiny_dataset.path, **LOOSE),
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
    from diffusionad_edge.runtime.thresholds import error_rates, normals_threshold, safe_image_threshold

    res = _export(tiny_checkpoint, tmp_path / "t", "onnxruntime-cpu", "fp32", threshold_data=tiny_dataset.path)
    thr = res.metadata["thresholds"]
    assert "labelled images" in thr["source"] and str(tiny_dataset.path) in thr["source"]
    # The image threshold is placed by the bundle's own scores of the good images, above every one of them;
    # the defective ones give the expected miss rate.
    images, labels, _ = load_test_arrays(tiny_dataset, 64)
    with load_bundle(res.bundle) as art:
        out = art.runner.infer(images)
    scores = out.score
    assert thr["image"] == pytest.approx(normals_threshold(scores[labels == 0])[0], rel=1e-5)
    assert thr["image"] > scores[labels == 0].max()
    assert thr["expected"] == error_rates(np.asarray(thr["scores"]["normal"]), np.asarray(thr["scores"]["anomalous"]), thr["image"])
    assert thr["pixel"] > out.anomaly_map[labels == 0].max()  # no pixel of a good image is outlined
    # --threshold-rule best-f1: the previous rule, on the same images
    f1 = _export(tiny_checkpoint, tmp_path / "f1", "onnxruntime-cpu", "fp32", threshold_data=tiny_dataset.path,
                 threshold_rule="best-f1").metadata["thresholds"]
    assert f1["image"] == pytest.approx(safe_image_threshold(scores[labels == 0], scores[labels == 1]), abs=1e-6)
    assert f1["rule_params"]["name"] == "best-f1" and f1["pixel_rule"]["name"] == "best-f1"


def test_default_threshold_sits_above_the_held_out_normals_by_the_rule(ort_fp32, tiny_checkpoint):
    """The default rule: the held-out normals alone place the threshold (sigmoid(max logit + margin)),
    the synthetic anomalies give the expected miss rate; the report's lines agree with the numbers."""
    from diffusionad_edge.cli.export_cmd import threshold_lines
    from diffusionad_edge.runtime.thresholds import normals_threshold, score_text

    _, payload = load_model(tiny_checkpoint)
    thr = ort_fp32.metadata["thresholds"]
    normal = np.asarray(thr["scores"]["normal"])
    assert len(normal) == len(payload["data"]["val_images"]) == thr["rule_params"]["normals"]
    assert thr["image"] == pytest.approx(normals_threshold(normal)[0], rel=1e-4)
    assert thr["image"] > thr["normal_score_max"] == pytest.approx(normal.max(), rel=1e-5)
    assert thr["expected"]["false_alarm_rate"] == 0.0
    lines = threshold_lines(thr)
    assert lines[0].startswith(f"image threshold {score_text(thr['image'])}: the highest of {len(normal)} normal scores, "
                               f"{score_text(thr['normal_score_max'])}")
    assert "false alarms 0.0 %" in lines[1] and "missed defects" in lines[1]
    assert (len(lines) == 3 and "no higher than the highest normal" in lines[2]) == thr["expected"]["overlap"]


def test_a_target_false_alarm_rate_is_honoured(tiny_checkpoint, tmp_path):
    res = _export(tiny_checkpoint, tmp_path / "far", "onnxruntime-cpu", "fp32", false_alarm_rate=0.25)
    thr = res.metadata["thresholds"]
    assert thr["rule"] == "target false-alarm rate 0.25" and thr["expected"]["false_alarm_rate"] <= 0.25


def test_threshold_data_needs_good_images(tiny_checkpoint, tiny_dataset, tmp_path):
    """The good images place the thresholds: a folder without them is refused before any export work;
    good images alone are enough for the normals rule, not for best-f1."""
    from diffusionad_edge.errors import ConfigError

    no_good = tmp_path / "no_good" / "surface"
    shutil.copytree(tiny_dataset.path, no_good)
    shutil.rmtree(no_good / "test" / "good")
    with pytest.raises(ConfigError, match="has no good images"):
        _export(tiny_checkpoint, tmp_path / "x", "onnxruntime-cpu", "fp32", threshold_data=no_good)
    only_good = tmp_path / "good_only" / "surface"
    shutil.copytree(tiny_dataset.path / "train", only_good / "train")
    shutil.copytree(tiny_dataset.path / "test" / "good", only_good / "test" / "good")
    with pytest.raises(ConfigError, match="both good and defective"):
        _export(tiny_checkpoint, tmp_path / "x", "onnxruntime-cpu", "fp32", threshold_data=only_good, threshold_rule="best-f1")
    assert not (tmp_path / "x").exists()
    thr = _export(tiny_checkpoint, tmp_path / "g", "onnxruntime-cpu", "fp32", threshold_data=only_good).metadata["thresholds"]
    assert thr["expected"]["anomalies"] == 0 and thr["image"] > max(thr["scores"]["normal"])


@pytest.mark.parametrize("args, message", [
    (["--threshold-rule", "median"], "--threshold-rule 'median': choose one of normals, best-f1"),
    (["--threshold-margin", "-1"], "--threshold-margin -1.0: must be a number of standard deviations in [0, 10]"),
    (["--threshold-margin", "50"], "--threshold-margin 50.0: must be a number of standard deviations in [0, 10]"),
    (["--false-alarm-rate", "1.5"], "--false-alarm-rate 1.5: must be in [0, 1)"),
    (["--threshold-data", "GOODLESS"], "has no good images (test/good)"),
])
def test_bad_threshold_options_are_one_line_and_exit_2(tiny_checkpoint, tiny_dataset, tmp_path, args, message):
    if "GOODLESS" in args:
        goodless = tmp_path / "goodless" / "surface"
        shutil.copytree(tiny_dataset.path, goodless)
        shutil.rmtree(goodless / "test" / "good")
        args = [str(goodless) if a == "GOODLESS" else a for a in args]
    out = tmp_path / "never"
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "export", str(tiny_checkpoint), "--target",
                          "onnxruntime-cpu", "--input-size", "64", "--out", str(out), *args], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in " ".join(lines[0].split()), res.stderr
    assert "Traceback" not in res.stderr and "exporting" not in res.stdout and not out.exists()


def test_export_gate_covers_the_map(ort_int8):
    """A reduced precision fails when any of pixel AUROC, pixel AP, AUPRO drops more than its limit
    against FP32, naming the metric and the drop; the pure gate first, then a real INT8 bundle."""
    from diffusionad_edge.export.acceptance import accuracy_gate

    limits = {"pixel_auroc": 0.01, "pixel_ap": 0.01, "aupro": 0.01}
    deltas = {"image_auroc": 0.0, "pixel_auroc": -0.005, "pixel_ap": -0.038, "aupro": 0.002}
    assert accuracy_gate(deltas, "int8", 0.02, limits) == ["int8 pixel AP drop 0.0380 > --max-pixel-ap-drop 0.01"]
    assert accuracy_gate(deltas, "fp32", 0.02, limits) == []  # FP32 is held to parity instead
    assert accuracy_gate({**deltas, "pixel_ap": -0.009}, "int8", 0.02, limits) == []
    acc = ort_int8.metadata["checks"]["accuracy"]
    assert acc["max_drops"] == {"image_auroc": 1.0, "pixel_auroc": 1.0, "pixel_ap": 1.0, "aupro": 1.0}


def _masks_from_the_fp32_map(tiny_checkpoint, tiny_dataset, root):
    """A copy of the tiny dataset's defective test images whose defect masks are the top 1 % pixels (over
    all of them) of the FP32 model's own maps: the FP32 map separates them perfectly (pixel AP 1), so a
    map that quantization reorders loses pixel AP. Real files and a real model; only the labels are
    chosen. (The 3-step model's map is nearly the same for every image: good images would be false
    positives of FP32 as much as of INT8, so the copy has none.)"""
    import cv2

    from diffusionad_edge.data.mvtec import MVTecCategory, load_test_arrays

    copy_root = root / "surface"
    shutil.copytree(tiny_dataset.path, copy_root)
    shutil.rmtree(copy_root / "test" / "good")
    ds = MVTecCategory(copy_root)
    images, _, _ = load_test_arrays(ds, 64)
    maps = TorchRunner(load_model(tiny_checkpoint)[0]).infer(images).anomaly_map
    cut = np.quantile(maps, 0.99)
    for sample, amap in zip(ds.test_samples, maps):
        h, w = read_image(sample.image_path).shape[:2]
        mask = (amap >= cut).astype(np.uint8) * 255
        cv2.imwrite(str(sample.mask_path), cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST))
    return copy_root


def test_int8_bundle_whose_pixel_ap_drops_fails_the_gate_naming_it(tiny_checkpoint, tiny_dataset, tmp_path, monkeypatch):
    """A real INT8 bundle whose map loses pixel AP against FP32 fails the gate, the failure naming the
    metric, the drop and the option; nothing is written. A limit above the drop passes."""
    from diffusionad_edge.export.converters import onnxruntime_int8

    # The segmentation decoder quantized too, as INT8 exports did before it was kept in float: the
    # map then moves enough to be the case the gate is for.
    monkeypatch.setattr(onnxruntime_int8, "FLOAT_SCOPES", ("map_smoothing",))
    data = _masks_from_the_fp32_map(tiny_checkpoint, tiny_dataset, tmp_path / "data")
    kept = _export(tiny_checkpoint, tmp_path / "kept", "onnxruntime-cpu", "int8", eval_data=data, keep_failed=True,
                   **{**LOOSE, "max_pixel_ap_drop": 0.0})
    acc = kept.metadata["checks"]["accuracy"]
    drop = -acc["delta"]["pixel_ap"]
    assert acc["fp32"]["pixel_ap"] > 0.99 and drop > 0.002, acc  # the map moved: the case the gate is for
    assert kept.metadata["checks"]["failures"] == [f"int8 pixel AP drop {drop:.4f} > --max-pixel-ap-drop 0"]
    assert not kept.passed
    with pytest.raises(ExportCheckFailed, match=rf"int8 pixel AP drop {drop:.4f} > --max-pixel-ap-drop {drop / 2:g}"):
        _export(tiny_checkpoint, tmp_path / "fail", "onnxruntime-cpu", "int8", eval_data=data, **{**LOOSE, "max_pixel_ap_drop": drop / 2})
    assert not (tmp_path / "fail").exists()
    ok = _export(tiny_checkpoint, tmp_path / "ok", "onnxruntime-cpu", "int8", eval_data=data, **{**LOOSE, "max_pixel_ap_drop": drop + 0.01})
    assert ok.passed and ok.metadata["checks"]["accuracy"]["max_drops"]["pixel_ap"] == pytest.approx(drop + 0.01)


def test_checkpoint_trained_at_another_size_than_the_target(tiny_checkpoint, tmp_path):
    """The tiny model (64 px, attention at fixed resolutions) cannot run at onnxruntime-cpu's 256 px: it
    is exported at its own size with a note; an explicit --input-size it cannot run at is refused
    naming --input-size (it used to crash in load_state_dict)."""
    from diffusionad_edge.errors import ConfigError

    notes = []
    res = export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="onnxruntime-cpu", out_dir=tmp_path / "own", precision="fp32"),
                        log=notes.append)
    assert res.passed and res.metadata["input"]["size"] == 64
    assert [n for n in notes if n.startswith("note:")] == [
        "note: exporting at the model's own input size 64, not the target's 256 (this 'tiny' model cannot run at 256 px; "
        "--input-size to choose)"]
    with pytest.raises(ConfigError, match="--input-size 128: .* use --input-size 64"):
        export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="onnxruntime-cpu", out_dir=tmp_path / "big", precision="fp32",
                                    input_size=128), log=lambda m: None)
    assert not (tmp_path / "big").exists() and not list(tmp_path.glob(".big*"))
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "export", str(tiny_checkpoint), "--target",
                          "onnxruntime-cpu", "--input-size", "128", "--out", str(tmp_path / "cli")], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: --input-size 128:")


def _reseal(meta):
    from diffusionad_edge.runtime.bundle import seal_metadata

    return json.dumps(seal_metadata(meta), indent=2)


def test_metadata_is_integrity_checked_and_validated(ort_fp32, tmp_path):
    from diffusionad_edge.runtime.backends.runner import ModelInputError

    bundle = tmp_path / "b"
    shutil.copytree(ort_fp32.bundle, bundle)
    path = bundle / "metadata.json"
    original = json.loads(path.read_text())
    assert original["integrity"]["sha256"] and original["format_version"] == 2
    # an edited threshold is refused (it used to be used silently), so is a removed integrity record
    edited = copy.deepcopy(original)
    edited["thresholds"]["image"] = 0.99
    path.write_text(json.dumps(edited, indent=2))
    with pytest.raises(BundleError, match="changed after export .* --set-threshold"):
        load_bundle(bundle)
    del edited["integrity"]
    path.write_text(json.dumps(edited, indent=2))
    with pytest.raises(BundleError, match="no integrity record"):
        load_bundle(bundle)
    # values of the wrong type or range are refused naming the key, even with a matching integrity record
    cases = [(("thresholds", "image"), "0.4", "thresholds.image must be a number"),
             (("thresholds", "pixel"), 7.0, "thresholds.pixel must be a number in \\[0, 1\\]"),
             (("thresholds", "normalisation"), {"min": 0.5, "max": 0.1}, "thresholds.normalisation"),
             (("input", "size"), "64", "input.size must be an integer"),
             (("input", "batch"), 0, "input.batch"),
             (("entry",), "../../model.onnx", "entry must be one of the bundle's files"),
             (("files",), {"model.onnx": "abc"}, "files.model.onnx must be a sha256"),
             (("format_version",), "2", "format_version must be an integer")]
    for keys, value, match in cases:
        bad = copy.deepcopy(original)
        target = bad
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
        path.write_text(_reseal(bad))
        with pytest.raises(BundleError, match=match):
            load_bundle(bundle)
    # an input size the model file does not take: one line on first use, not an ONNX Runtime traceback
    bad = copy.deepcopy(original)
    bad["input"]["size"] = 128
    with pytest.raises(BundleError, match="preprocessing must be an input of 128x64"):  # size, width and preprocessing disagree
        path.write_text(_reseal(bad))
        load_bundle(bundle)
    bad["input"]["width"], bad["preprocessing"]["height"], bad["preprocessing"]["width"] = 128, 128, 128
    path.write_text(_reseal(bad))
    with load_bundle(bundle) as art, pytest.raises(ModelInputError, match="takes 64x64 images .* input.size 128"):
        art.predict(np.zeros((64, 64, 3), np.uint8))
    # through the CLI: one line, exit code 2
    path.write_text(json.dumps(edited, indent=2))
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "predict", str(bundle / "metadata.json"), "--model",
                          str(bundle)], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("error:") == 1


def test_set_threshold_rewrites_the_bundle_correctly(ort_fp32, tmp_path):
    from diffusionad_edge.runtime.bundle import read_metadata

    bundle = tmp_path / "b"
    shutil.copytree(ort_fp32.bundle, bundle)
    before = read_metadata(bundle)
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "export", str(bundle), "--set-threshold", "0.42",
                          "--set-pixel-threshold", "0.6"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    after = read_metadata(bundle)  # verifies the new integrity record
    assert after["thresholds"]["image"] == 0.42 and after["thresholds"]["pixel"] == 0.6
    assert after["thresholds"]["normalisation"]["threshold"] == 0.42
    assert "image threshold set to 0.42 by hand" in after["thresholds"]["source"]
    assert {k: v for k, v in after.items() if k not in ("thresholds", "integrity")} == \
        {k: v for k, v in before.items() if k not in ("thresholds", "integrity")}
    assert not [p.name for p in bundle.iterdir() if p.name.startswith(".")]  # atomic: no temporary left
    with load_bundle(bundle) as art:
        assert art.image_threshold == 0.42 and art.pixel_threshold == 0.6
    # out of range: refused, bundle unchanged
    from diffusionad_edge.runtime.bundle import set_thresholds

    with pytest.raises(BundleError, match=r"must be a number in \[0, 1\]"):
        set_thresholds(bundle, image=1.5)
    assert read_metadata(bundle) == after
