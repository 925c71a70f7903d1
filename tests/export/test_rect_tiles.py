"""Rectangular inputs, ROIs and tiles end to end with the tiny model: real training steps, real exports
in ONNX Runtime and OpenVINO, the device path in a process where PyTorch cannot be imported."""

import json
import subprocess
import sys

import numpy as np
import pytest

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.data.builtin import generate_dataset
from diffusionad_edge.data.framing import Preprocessing, predict_frames
from diffusionad_edge.data.mvtec import MVTecCategory
from diffusionad_edge.data.preprocess import read_image
from diffusionad_edge.data.roi import Roi
from diffusionad_edge.errors import ConfigError, DataError
from diffusionad_edge.export.pipeline import ExportOptions, export_bundle
from diffusionad_edge.models.checkpoint_io import load_model, read_checkpoint
from diffusionad_edge.runtime.backends.runner import runner_predict_fn
from diffusionad_edge.runtime.backends.torch import TorchRunner
from diffusionad_edge.runtime.bundle import load_bundle
from diffusionad_edge.train.trainer import Trainer

ROI = Roi(4, 10, 232, 80)  # of the 96x240 long-part images


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def long_parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    generate_dataset(root, category="long-part", n_train=6, n_test_good=2, n_test_per_defect=2, size=96, seed=0)
    return MVTecCategory(root, "long-part")


def _train(ds, path, prep, model_config):
    cfg = TrainConfig(steps=2, batch_size=4, checkpoint_every=0, seed=0)
    Trainer(model_config, cfg, ds, path, device="cpu", preprocessing=prep).fit()
    return path


@pytest.fixture(scope="module")
def rect_checkpoint(long_parts, tmp_path_factory):
    mc = preset("tiny-s2d").with_input((96, 240)).validate()
    return _train(long_parts, tmp_path_factory.mktemp("c") / "rect.pt", Preprocessing.plain((96, 240)), mc)


@pytest.fixture(scope="module")
def tiled_checkpoint(long_parts, tmp_path_factory):
    mc = preset("tiny").with_input((64, 64)).validate()
    prep = Preprocessing(64, 64, roi=ROI, tile=64, overlap=16, top_k=mc.diffusion.top_k)
    return _train(long_parts, tmp_path_factory.mktemp("c") / "tiles.pt", prep, mc)


@pytest.mark.parametrize("target", ["onnxruntime-cpu", "openvino-cpu"])
def test_rectangular_graph_exports_with_parity(rect_checkpoint, long_parts, tmp_path, target):
    res = export_bundle(ExportOptions(checkpoint=rect_checkpoint, target=target, precision="fp32", out_dir=tmp_path / "b"),
                        log=lambda m: None)
    meta = res.metadata
    assert res.passed and (meta["input"]["size"], meta["input"]["width"]) == (96, 240)
    for check in ("fp32_onnx_vs_pytorch", "artifact_vs_pytorch"):
        assert meta["checks"][check]["map_max_abs_error"] < 1e-3 and meta["checks"][check]["score_max_abs_error"] < 1e-3
    model, _ = load_model(rect_checkpoint)
    path = long_parts.test_samples[0].image_path
    with load_bundle(res.bundle) as bundle:
        r = bundle.predict(path)
        x = bundle.preprocess(path)[None]
    assert r.anomaly_map.shape == (96, 240) and x.shape == (1, 3, 96, 240)
    assert r.score == pytest.approx(float(TorchRunner(model).infer(x).score[0]), abs=1e-4)


def test_input_size_the_network_cannot_take_is_one_line(rect_checkpoint, tmp_path):
    res = _cli("export", rect_checkpoint, "--target", "onnxruntime-cpu", "--precision", "fp32", "--input-size", "90x240",
               "--out", tmp_path / "b")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--input-size 90x240" in lines[0] and "multiples of" in lines[0], res.stderr


def test_checkpoint_records_the_tiling_and_roi(tiled_checkpoint):
    rec = read_checkpoint(tiled_checkpoint)["preprocessing"]
    assert Preprocessing.from_dict(rec) == Preprocessing(64, 64, roi=ROI, tile=64, overlap=16, top_k=20)


@pytest.fixture(scope="module")
def tiled_bundle(tiled_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "tiles"
    return export_bundle(ExportOptions(checkpoint=tiled_checkpoint, target="onnxruntime-cpu", precision="fp32", out_dir=out),
                         log=lambda m: None)


def test_tiled_bundle_on_the_device_path_without_pytorch(tiled_bundle, tiled_checkpoint, long_parts, tmp_path):
    meta = tiled_bundle.metadata
    assert tiled_bundle.passed and meta["preprocessing"]["tile"] == 64 and meta["preprocessing"]["roi"] == ROI.to_dict()
    assert "whole tiled frames" in meta["thresholds"]["source"]
    paths = [str(s.image_path) for s in long_parts.test_samples[:3]]
    script = (
        "import sys, json\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "from diffusionad_edge.runtime.bundle import load_bundle\n"
        f"b = load_bundle({str(tiled_bundle.bundle)!r})\n"
        f"rs = [b.predict(p) for p in {paths!r}]\n"
        "print(json.dumps([[r.score, list(r.anomaly_map.shape), float(r.anomaly_map[:10].max()), float(r.anomaly_map[10:90, 4:236].min())] for r in rs]))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    model, payload = load_model(tiled_checkpoint)
    prep = Preprocessing.from_dict(payload["preprocessing"])
    _, want = predict_frames(prep, runner_predict_fn(TorchRunner(model)), [read_image(p) for p in paths])
    for (score, shape, outside, inside), w in zip(got, want):
        assert shape == [96, 240] and outside == 0.0 and inside > 0.0  # the map at frame size, zero outside the ROI
        assert score == pytest.approx(float(w), abs=1e-4)


def test_roi_errors_are_one_line(tiled_bundle, long_parts, tmp_path):
    with load_bundle(tiled_bundle.bundle) as bundle:
        small = np.zeros((80, 200, 3), np.uint8)
        with pytest.raises(DataError, match=r"does not fit the 200x80 \(WxH\) camera frame.*dae run --roi"):
            bundle.predict(small)
        bundle.set_roi(Roi(0, 0, 200, 80))  # a camera that was moved / another resolution
        assert bundle.predict(small).anomaly_map.shape == (80, 200)
        bundle.set_roi(Roi(0, 0, 200, 40))
        with pytest.raises(DataError, match=r"tile 64 is larger than the image \(200x40, WxH\).*region of interest 0,0,200,40"):
            bundle.predict(small)
    src = long_parts.test_samples[0].image_path
    res = _cli("run", "--model", tiled_bundle.bundle, "--source", src, "--no-show", "--json", "--roi", "0,0,500,80")
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]  # after the "running ..." banner
    assert res.returncode == 2 and len(errors) == 1 and "does not fit the 240x96 (WxH) camera frame" in errors[0], res.stderr
    assert "Traceback" not in res.stderr
    res = _cli("run", "--model", tiled_bundle.bundle, "--source", src, "--no-show", "--json", "--roi", "0,0,240,96")
    assert res.returncode == 0 and json.loads(res.stdout.strip().splitlines()[-1])["frames"] == 1, res.stderr
    res = _cli("run", "--model", tiled_bundle.bundle, "--source", src, "--no-show", "--roi", "1,2,3")
    assert res.returncode == 2 and "x,y,w,h" in res.stderr


def test_train_cli_refuses_bad_layouts(long_parts, tmp_path):
    res = _cli("train", "--data", long_parts.path, "--preset", "tiny", "--tile", "128", "--steps", "1", "--out", tmp_path / "m.pt")
    assert res.returncode == 2 and "tile 128 is larger than the image" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _cli("train", "--data", long_parts.path, "--preset", "tiny", "--roi", "0,0,300,96", "--steps", "1", "--out", tmp_path / "m.pt")
    assert res.returncode == 2 and "does not fit" in res.stderr
    res = _cli("train", "--data", long_parts.path, "--preset", "tiny", "--input-size", "60x160", "--steps", "1", "--out", tmp_path / "m.pt")
    assert res.returncode == 2 and "multiples of 8" in res.stderr
    with pytest.raises(ConfigError, match="not both"):
        from diffusionad_edge.train.job import input_layout

        input_layout(preset("tiny"), "64x160", None, 64, 0, "mean")
