"""The hardware-shaped presets: space-to-depth stem, pixel-shuffle head, BatchNorm; edge-v1 and edge-v2 kept."""

import json

import pytest
import torch

from diffusionad_edge.config import ModelConfig, TrainConfig, preset, preset_with_networks
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


@pytest.mark.parametrize("name, seg_side", [("edge", 128), ("edge-v2", 64)])
def test_no_thin_layer_at_full_resolution(name, seg_side):
    # The point of the stem layouts: the denoiser's convolutions run at <= 1/4 of the input side with
    # >= 48 channels; `edge`'s segmentation net at 1/2 (the map's resolution: benchmarks/LOCALISATION.md),
    # edge-v2's at 1/4. No convolution of either runs at full resolution.
    model = DiffusionAD(preset(name)).eval()
    seen = {"denoiser": [], "segmenter": []}
    for part, net in (("denoiser", model.denoiser), ("segmenter", model.segmenter)):
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(lambda mod, inp, out, part=part: seen[part].append((mod.in_channels, out.shape[-1])))
    model.detect(torch.rand(1, 3, 256, 256))
    assert seen["denoiser"] and max(side for _, side in seen["denoiser"]) <= 64
    assert min(c for c, _ in seen["denoiser"]) >= 48
    assert max(side for _, side in seen["segmenter"]) == seg_side
    assert min(c for c, _ in seen["segmenter"]) >= 24  # 6 input channels folded 2x2 (4x4 for edge-v2)


def test_edge_differs_from_edge_v2_only_in_the_segmentation_stem():
    new, old = preset("edge"), preset("edge-v2")
    assert new.unet == old.unet and new.diffusion == old.diffusion
    assert (new.seg.stem_factor, old.seg.stem_factor) == (2, 4)
    assert new.seg.encoder_channels == old.seg.encoder_channels
    # the recipe: Dice at 0.3 for edge, edge-v2's full weight kept
    assert TrainConfig.for_preset("edge").dice_weight == 0.3 and TrainConfig.for_preset("edge-v2").dice_weight == 1.0


def test_an_edge_checkpoint_of_the_previous_layout_loads_evaluates_and_is_named(tmp_path):
    # A checkpoint written when `edge` meant today's edge-v2: preset "edge" in its config, the 4x seg stem.
    old_cfg = preset("edge-v2")
    old_cfg.preset = "edge"
    model = DiffusionAD(old_cfg).eval()
    path = tmp_path / "edge-previous.pt"
    save_checkpoint(path, model, step=1)
    loaded, _ = load_model(path)
    assert loaded.config.seg.stem_factor == 4 and loaded.config.preset == "edge"
    x = torch.rand(1, 3, 256, 256)
    assert torch.allclose(loaded.detect(x).anomaly_map, model.detect(x).anomaly_map)
    assert preset_with_networks(loaded.config) == "edge-v2"
    assert preset_with_networks(preset("edge")) == "edge" and preset_with_networks(preset("tiny")) == "tiny"


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


def test_preconditioning_is_exact_for_the_ideal_network():
    # eps_hat = a u + b F(c_in u), u = x_t - shift: with F the ideal output
    # (x0 - mean - c_skip (x - mean)) / c_out the noise is recovered exactly at every timestep,
    # and the network's input has about unit scale.
    from diffusionad_edge.models.unet import precondition_coefficients

    model = DiffusionAD(preset("tiny-s2d"))
    ab = model.schedule.alphas_cumprod.double()
    sd, mean = 0.25, 0.5
    coef = precondition_coefficients(model.schedule.alphas_cumprod, sd, mean).double()
    g = torch.Generator().manual_seed(0)
    for t in (0, 200, 400, 999):
        x0 = torch.rand(4096, generator=g, dtype=torch.float64)
        eps = torch.randn(4096, generator=g, dtype=torch.float64)
        x_t = ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * eps
        sigma = ((1 - ab[t]) / ab[t]).sqrt()
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        ideal = (x0 - mean - c_skip * (x_t / ab[t].sqrt() - mean)) / c_out
        c_in, a, b, shift = coef[t]
        u = x_t - shift
        assert torch.allclose(a * u + b * ideal, eps, atol=1e-5)
        assert 0.3 < float((c_in * u).std()) < 1.5


def test_preconditioned_denoiser_starts_near_the_best_linear_guess():
    # Zero-initialised output layers make F = 0 at the start: eps_hat = a x_t, already a
    # reasonable estimate at large t (the point of the skip), where the plain network outputs 0.
    model = DiffusionAD(preset("tiny-s2d")).eval()
    plain_cfg = preset("tiny-s2d")
    plain_cfg.unet.precondition_sigma_data = 0.0
    plain = DiffusionAD(plain_cfg.validate()).eval()
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 64, 64, generator=g) * 0.2 + 0.4
    eps = torch.randn(2, 3, 64, 64, generator=g)
    t = torch.tensor([600, 600])
    x_t = model.schedule.q_sample(x0, t, eps)
    with torch.no_grad():
        err_pre = (model.denoiser(x_t, t) - eps).pow(2).mean()
        err_plain = (plain.denoiser(x_t, t) - eps).pow(2).mean()
    assert err_plain == pytest.approx(1.0, abs=0.1)
    assert err_pre < 0.5 * err_plain


def test_checkpoint_without_preconditioning_field_loads_as_plain(tmp_path):
    path = tmp_path / "before.pt"
    save_checkpoint(path, DiffusionAD(preset("tiny")), step=1)
    payload = torch.load(path, weights_only=True)
    cfg = json.loads(payload["model_config"])
    del cfg["unet"]["precondition_sigma_data"]
    payload["model_config"] = json.dumps(cfg)
    torch.save(payload, path)
    loaded, _ = load_model(path)
    assert loaded.config.unet.precondition_sigma_data == 0.0 and not loaded.denoiser.preconditioned
