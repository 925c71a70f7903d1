"""The anomaly map's smoothing (models/map_smoothing.py): the blur itself, its place in the detector,
old checkpoints, and the exported graphs (ONNX Runtime, OpenVINO; INT8 keeps it in float)."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from diffusionad_edge.config import ModelConfig, TrainConfig, preset
from diffusionad_edge.errors import ConfigError
from diffusionad_edge.models.detector import DiffusionAD
from diffusionad_edge.models.map_smoothing import MapSmoothing


def test_blur_matches_a_gaussian_inside_and_keeps_a_constant_map_at_the_borders():
    rng = np.random.default_rng(0)
    m = rng.random((1, 1, 64, 64)).astype(np.float32)
    got = MapSmoothing(2.0)(torch.from_numpy(m))[0, 0].numpy()
    ref = gaussian_filter(m[0, 0].astype(np.float64), sigma=2.0, truncate=4.0)
    inner = slice(9, -9)  # farther than the kernel's radius (8) from every border
    assert np.abs(got[inner, inner] - ref[inner, inner]).max() < 1e-5
    flat = MapSmoothing(4.0)(torch.full((2, 1, 40, 56), 0.3))
    assert torch.allclose(flat, torch.full_like(flat, 0.3), atol=1e-6)  # no darkening at the borders
    assert torch.equal(MapSmoothing(0.0)(torch.from_numpy(m)), torch.from_numpy(m))


def test_blur_spreads_a_spot_over_its_neighbourhood():
    spot = torch.zeros(1, 1, 32, 32)
    spot[0, 0, 16, 16] = 1.0
    out = MapSmoothing(3.0)(spot)[0, 0]
    assert out[16, 16] < 0.1 and out[16, 19] > 0.0 and out[16, 19] < out[16, 17]
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-3)  # mass kept (borders renormalised)


def test_detector_blurs_the_map_and_scores_the_blurred_map():
    torch.manual_seed(0)
    model = DiffusionAD(preset("tiny")).eval()
    x = torch.rand(2, 3, 64, 64)
    raw = model.detect(x)
    model.set_map_sigma(3.0)
    smooth = model.detect(x)
    assert torch.allclose(smooth.anomaly_map, MapSmoothing(3.0)(raw.anomaly_map), atol=1e-6)
    k = model.config.diffusion.top_k
    expect = smooth.anomaly_map.flatten(1).topk(k, dim=1).values.mean(dim=1)
    assert torch.allclose(smooth.score, expect)
    assert not torch.allclose(smooth.score, raw.score)
    with pytest.raises(ConfigError, match="map_sigma"):
        model.set_map_sigma(40.0)


def test_checkpoint_configs_without_map_sigma_load_as_the_raw_map():
    cfg = preset("edge").to_dict()
    del cfg["diffusion"]["map_sigma"]  # as written before the field existed
    assert ModelConfig.from_dict(cfg).diffusion.map_sigma == 0.0


@pytest.fixture(scope="module")
def s2d_checkpoint(tiny_dataset, tmp_path_factory):
    from diffusionad_edge.train.trainer import Trainer

    cfg = TrainConfig(steps=3, batch_size=4, checkpoint_every=0, precision="fp32", timesteps="deployed", synthesis="mixed")
    path = tmp_path_factory.mktemp("smooth") / "m.pt"
    Trainer(preset("tiny-s2d"), cfg, tiny_dataset, path, device="cpu").fit()
    return path


@pytest.mark.parametrize("target,precision", [("onnxruntime-cpu", "fp32"), ("openvino-cpu", "fp32"), ("onnxruntime-cpu", "int8"),
                                              ("openvino-cpu", "int8")])
def test_exported_graph_carries_the_blur(s2d_checkpoint, tiny_dataset, tmp_path, target, precision):
    from diffusionad_edge.data.preprocess import preprocess, read_image
    from diffusionad_edge.export.pipeline import ExportOptions, export_bundle
    from diffusionad_edge.runtime.backends.torch import TorchRunner
    from diffusionad_edge.runtime.bundle import load_bundle
    from diffusionad_edge.train.checkpoint import load_model

    res = export_bundle(ExportOptions(checkpoint=s2d_checkpoint, target=target, out_dir=tmp_path / "b", precision=precision,
                                      input_size=64, calibration_count=8, map_sigma=2.0), log=lambda m: None)
    assert res.metadata["model_config"]["diffusion"]["map_sigma"] == 2.0
    model, _ = load_model(s2d_checkpoint)
    model.set_map_sigma(2.0)
    images = np.stack([preprocess(read_image(s.image_path), 64) for s in tiny_dataset.test_samples[:3]])
    reference = TorchRunner(model).infer(images)
    with load_bundle(res.bundle) as art:
        got = art.runner.infer(images)
    tol = 1e-3 if precision == "fp32" else 0.1
    assert np.abs(got.anomaly_map - reference.anomaly_map).max() < tol
    if precision == "int8":
        quantized = _convs_with_quantized_input(res.bundle, target)
        names = list(quantized)
        blur = [n for n in names if "map_smoothing" in n]
        decoder = [n for n in names if "/segmenter/decoders" in n or "/segmenter/head" in n]
        encoder = [n for n in names if "/segmenter/encoders" in n]
        denoiser = [n for n in names if not n.startswith(("/segmenter", "/map_smoothing"))]
        assert blur and decoder and encoder and denoiser, names
        # the probabilities reach the blur unquantized; the map's decoder and head run in float
        # (quantized, they blur the map: README "INT8 and the map") ...
        assert not any(quantized[n] for n in blur + decoder), {n: quantized[n] for n in blur + decoder}
        # ... while the rest of the graph is INT8 (else the check above could not fail)
        assert all(quantized[n] for n in encoder + denoiser), [n for n in encoder + denoiser if not quantized[n]]


def _convs_with_quantized_input(bundle, target) -> dict[str, bool]:
    """Every convolution of an INT8 bundle's graph -> whether its data input is quantized (a
    DequantizeLinear in the Q/DQ ONNX graph, a FakeQuantize in the OpenVINO IR)."""
    if target.startswith("onnxruntime"):
        import onnx

        graph = onnx.load(str(bundle / "model.onnx")).graph
        producers = {o: n for n in graph.node for o in n.output}
        return {n.name: getattr(producers.get(n.input[0]), "op_type", None) == "DequantizeLinear"
                for n in graph.node if n.op_type == "Conv"}
    import openvino as ov

    model = ov.Core().read_model(str(next(bundle.glob("*.xml"))))

    def quantized(node) -> bool:
        # NNCF puts the quantizer before ops that commute with it (a max-pool, a reshape) and on
        # each input of a concatenation
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind in ("Convert", "MaxPool", "Reshape", "Transpose"):
            return quantized(node.input_value(0).get_node())
        if kind == "Concat":
            return all(quantized(v.get_node()) for v in node.input_values())
        return False

    return {op.get_friendly_name(): quantized(op.input_value(0).get_node())
            for op in model.get_ops() if op.get_type_name() == "Convolution"}
