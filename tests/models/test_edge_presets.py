"""The hardware-shaped presets: space-to-depth stem, pixel-shuffle head, BatchNorm; edge-v1 kept."""

import json

import pytest
import torch

from diffusionad_edge.config import ModelConfig, preset
from diffusionad_edge.errors import CheckpointError, ConfigError
from diffusionad_edge.models.complexity import measure_complexity
from diffusionad_edge.models.detector import DiffusionAD
from diffusionad_edge.train.checkpoint import load_model, save_checkpoint


@pytest.mark.parametrize("name", ["edge", "tiny-s2d"])
def test_stem_shapes_for_every_allowed_input_size(name):
    cfg = preset(name)
    div = cfg.size_divisor
    assert div == 4 * 2 ** (len(cfg.unet.channel_mult) - 1) or div == 4 * 2 ** (len(cfg.seg.encoder_channels) - 1)
    for size in range(div, 2 * div * 4 + 1, div):
        cfg = preset(name)
        cfg.image_size = size
        model = DiffusionAD(cfg.validate()).eval()
        x = torch.rand(1, 3, size, size)
        t = torch.tensor([200])
        # the stem folds 4x4 pixels into channels; the head unfolds them: output at input size
        assert model.denoiser(x, t).shape == (1, 3, size, size)
        det = model.detect(x)
        assert det.anomaly_map.shape == (1, 1, size, size)
    for bad in (div + 4, div * 2 + 2):
        cfg = preset(name)
        cfg.image_size = bad
        with pytest.raises(ConfigError, match=f"multiple of {div}"):
            cfg.validate()


def test_no_thin_layer_at_full_resolution():
    # The point of the new layout: every convolution of `edge` runs at <= 1/4 of the input side.
    model = DiffusionAD(preset("edge")).eval()
    seen = []

    def hook(mod, inp, out):
        seen.append((mod.in_channels, out.shape[-1]))

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    model.detect(torch.rand(1, 3, 256, 256))
    assert seen and max(side for _, side in seen) <= 64
    assert min(c for c, _ in seen) >= 48


def test_edge_costs_more_flops_than_edge_v1_but_stays_small():
    new, old = (measure_complexity(DiffusionAD(preset(n))) for n in ("edge", "edge-v1"))
    assert old.one_step_gflop == pytest.approx(13.6, abs=0.2)  # the layout README measured
    assert new.segmenter_params > 5 * old.segmenter_params  # capacity where it is cheap
    assert new.one_step_gflop < 60


def test_edge_v1_checkpoint_from_before_the_stem_still_loads(tmp_path):
    # A checkpoint written before stem_factor/norm existed: its config has neither key and says
    # preset "edge". The config in the file must rebuild the old network, whatever `edge` means now.
    model = DiffusionAD(preset("tiny"))
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, step=1)
    payload = torch.load(path, weights_only=True)
    cfg = json.loads(payload["model_config"])
    del cfg["unet"]["stem_factor"], cfg["unet"]["norm"], cfg["seg"]["stem_factor"]
    cfg["preset"] = "edge"
    payload["model_config"] = json.dumps(cfg)
    torch.save(payload, path)
    loaded, _ = load_model(path)
    assert loaded.config.unet.stem_factor == 1 and loaded.config.unet.norm == "group"
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(loaded.detect(x).anomaly_map, model.eval().detect(x).anomaly_map)


def test_checkpoint_from_a_newer_version_is_one_clear_error(tmp_path):
    path = tmp_path / "new.pt"
    save_checkpoint(path, DiffusionAD(preset("tiny")), step=1)
    payload = torch.load(path, weights_only=True)
    cfg = json.loads(payload["model_config"])
    cfg["unet"]["fancy_new_block"] = 3
    payload["model_config"] = json.dumps(cfg)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="newer diffusionad_edge"):
        load_model(path)


def test_norm_must_be_known():
    cfg = preset("tiny-s2d")
    cfg.unet.norm = "layer"
    with pytest.raises(ConfigError, match="norm"):
        cfg.validate()
    assert ModelConfig.from_json(preset("edge").to_json()) == preset("edge")
