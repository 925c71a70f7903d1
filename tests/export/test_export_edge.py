"""The `edge` layout (space-to-depth stem, pixel-shuffle head, BatchNorm, preconditioned denoiser)
through the real export path: trained a few steps, exported, checked against PyTorch."""

import numpy as np
import pytest

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.export.pipeline import ExportOptions, export_bundle
from diffusionad_edge.runtime.backends.torch import TorchRunner
from diffusionad_edge.runtime.bundle import load_bundle
from diffusionad_edge.train.checkpoint import load_model
from diffusionad_edge.train.trainer import Trainer


@pytest.fixture(scope="module", params=[2, 4], ids=["seg-stem-2 (edge)", "seg-stem-4 (edge-v2)"])
def s2d_checkpoint(tiny_dataset, tmp_path_factory, request):
    layout = preset("tiny-s2d")
    layout.seg.stem_factor = request.param
    cfg = TrainConfig(steps=4, batch_size=4, checkpoint_every=0, ema_decay=0.9, lr_denoiser=1e-3, lr_segmenter=1e-3,
                      precision="fp32", timesteps="deployed", lr_schedule="cosine", synthesis="mixed")
    path = tmp_path_factory.mktemp("s2d") / "m.pt"
    Trainer(layout.validate(), cfg, tiny_dataset, path, device="cpu").fit()
    return path


def _bundle_and_pytorch(bundle, model, dataset):
    """(PyTorch's output, the bundle's output) on four real test images of ``dataset`` at 64 px."""
    from diffusionad_edge.data.preprocess import preprocess, read_image

    images = np.stack([preprocess(read_image(s.image_path), 64) for s in dataset.test_samples[:4]])
    reference = TorchRunner(model).infer(images)
    with load_bundle(bundle) as art:
        return reference, art.runner.infer(images)


@pytest.mark.parametrize("target", ["onnxruntime-cpu", "openvino-cpu"])
def test_edge_layout_exports_with_parity(s2d_checkpoint, tiny_dataset, tmp_path, target):
    model, _ = load_model(s2d_checkpoint)
    assert model.denoiser.preconditioned and model.config.unet.stem_factor == 4
    res = export_bundle(ExportOptions(checkpoint=s2d_checkpoint, target=target, out_dir=tmp_path / "b", precision="fp32",
                                      input_size=64, calibration_count=8), log=lambda m: None)
    checks = res.metadata["checks"]
    assert checks["passed"]
    assert checks["artifact_vs_pytorch"]["map_max_abs_error"] < 1e-3
    # Independently of the export's own check: the bundle scores real images as the (EMA) model does.
    reference, got = _bundle_and_pytorch(res.bundle, model, tiny_dataset)
    assert np.abs(got.score - reference.score).max() < 1e-3
    assert np.abs(got.anomaly_map - reference.anomaly_map).max() < 1e-2


def test_edge_layout_exports_to_openvino_int8(s2d_checkpoint, tiny_dataset, tmp_path):
    # Both segmentation stems through NNCF: the map's decoder and head stay float whatever the stem.
    model, _ = load_model(s2d_checkpoint)
    res = export_bundle(ExportOptions(checkpoint=s2d_checkpoint, target="openvino-cpu", out_dir=tmp_path / "b8", precision="int8",
                                      input_size=64, calibration_count=8, eval_data=tiny_dataset.path, max_drop=1.0,
                                      max_pixel_auroc_drop=1.0, max_pixel_ap_drop=1.0, max_aupro_drop=1.0), log=lambda m: None)
    assert res.metadata["checks"]["runtime_precision"].startswith("int8")
    reference, got = _bundle_and_pytorch(res.bundle, model, tiny_dataset)
    assert np.abs(got.score - reference.score).max() < 0.05
    assert np.abs(got.anomaly_map - reference.anomaly_map).max() < 0.5
