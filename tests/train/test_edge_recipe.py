"""The training recipe of the edge presets: deployed timesteps, EMA, schedule, precision, workers."""

import numpy as np
import pytest
import torch

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.data.synthesis import AnomalySynthesizer
from diffusionad_edge.errors import ConfigError
from diffusionad_edge.hardware import resolve_train_precision
from diffusionad_edge.train.checkpoint import load_model, read_checkpoint
from diffusionad_edge.train.trainer import Trainer, lr_factor, step_noise


def test_deployed_timesteps_draw_only_the_configured_steps():
    seen_s, seen_b = set(), set()
    for step in range(200):
        t_s, t_b, eps_s, eps_b = step_noise(0, step, (8, 3, 4, 4), 300, 1000, deployed=(200, 400), jitter=5)
        seen_s |= set(t_s.tolist())
        seen_b |= set(t_b.tolist())
        assert not torch.equal(eps_s, eps_b)  # the noise stays random
    assert seen_s == set(range(195, 206)) and seen_b == set(range(395, 406))
    t_s, t_b, _, _ = step_noise(0, 0, (64, 3, 4, 4), 300, 1000, deployed=(200, 400), jitter=0)
    assert set(t_s.tolist()) == {200} and set(t_b.tolist()) == {400}
    # the paper's ranges otherwise
    t_s, t_b, _, _ = step_noise(0, 0, (256, 3, 4, 4), 300, 1000)
    assert t_s.max() < 300 <= t_b.min() and len(set(t_s.tolist())) > 50


def test_cosine_schedule_warms_up_and_decays():
    assert lr_factor("constant", 50, 100, 10) == 1.0
    f = [lr_factor("cosine", s, 100, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] == pytest.approx(0.05, abs=0.01)
    assert lr_factor("cosine", 20, 100, 10, progress=1.0) == pytest.approx(0.05)


def test_bf16_only_where_the_cpu_has_it():
    assert resolve_train_precision("auto", "cpu", flags={"avx2", "avx512f"}) == "fp32"
    assert resolve_train_precision("auto", "cpu", flags={"avx512_bf16"}) == "bf16"
    assert resolve_train_precision("auto", "cpu", flags={"amx_bf16"}) == "bf16"
    assert resolve_train_precision("auto", "cuda", flags=set()) == "fp16"
    assert resolve_train_precision("auto", "cuda", amp=False, flags=set()) == "fp32"
    with pytest.raises(ConfigError, match="no native bfloat16"):
        resolve_train_precision("bf16", "cpu", flags={"avx2"})
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_train_precision("fp16", "cpu", flags={"avx512_bf16"})


def test_bf16_autocast_really_used_when_resolved(tiny_dataset, tmp_path, monkeypatch):
    # On any CPU: force the detection to say "bf16", check the step runs under bf16 autocast.
    import diffusionad_edge.train.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "resolve_train_precision", lambda *a, **k: "bf16")
    cfg = TrainConfig(steps=1, batch_size=4, checkpoint_every=0)
    tr = Trainer(preset("tiny-s2d"), cfg, tiny_dataset, tmp_path / "m.pt", device="cpu")
    dtypes = []
    h = tr.model.denoiser.in_conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    tr.fit()
    h.remove()
    assert dtypes and dtypes[0] == torch.bfloat16
    assert read_checkpoint(tmp_path / "m.pt")["precision"] == "bf16"


def test_ema_weights_are_what_the_checkpoint_deploys(tiny_dataset, tmp_path):
    cfg = TrainConfig(steps=6, batch_size=4, checkpoint_every=0, ema_decay=0.9, lr_denoiser=1e-3,
                      lr_segmenter=1e-3, precision="fp32", timesteps="deployed", lr_schedule="cosine")
    path = tmp_path / "m.pt"
    tr = Trainer(preset("tiny-s2d"), cfg, tiny_dataset, path, device="cpu")
    tr.fit()
    payload = read_checkpoint(path)
    loaded, _ = load_model(path)
    ema_state = tr.ema.model.state_dict()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ema_state[k]), k
    raw = payload["model_train"]
    differs = [k for k in raw if raw[k].dtype.is_floating_point and not torch.equal(raw[k], ema_state[k])]
    assert differs, "the average must differ from the raw weights after a few steps"
    # BatchNorm statistics are averaged too (they belong to the deployed network)
    assert any("running_mean" in k for k in differs)


def test_ema_off_keeps_the_raw_weights(tiny_dataset, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=4, checkpoint_every=0, ema_decay=0.0, precision="fp32")
    tr = Trainer(preset("tiny"), cfg, tiny_dataset, tmp_path / "m.pt", device="cpu")
    tr.fit()
    loaded, payload = load_model(tmp_path / "m.pt")
    assert payload["model_train"] is None
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, tr.model.state_dict()[k].contiguous())


def test_workers_give_the_same_batches(tiny_dataset, tmp_path):
    from torch.utils.data import DataLoader

    from diffusionad_edge.train.samples import StepSampler

    cfg = TrainConfig(steps=2, batch_size=4, checkpoint_every=0, synthesis="mixed")
    tr = Trainer(preset("tiny"), cfg, tiny_dataset, tmp_path / "m.pt", device="cpu")

    def batches(workers):
        dl = DataLoader(tr.samples, batch_size=4, sampler=StepSampler(0, 3, 4), num_workers=workers)
        return [b[0] for b in dl]

    for a, b in zip(batches(0), batches(2)):
        assert torch.equal(a, b)


def test_mixed_synthesis_changes_only_masked_pixels_and_uses_every_kind(tiny_dataset):
    from diffusionad_edge.data.preprocess import read_image, resize_image
    from diffusionad_edge.data.structural import STRUCTURAL_DEFECTS

    img = resize_image(read_image(tiny_dataset.train_images[0]), 64)
    fg = np.ones((64, 64), bool)
    for name, fn in STRUCTURAL_DEFECTS.items():
        made = [fn(img, fg, np.random.default_rng(i)) for i in range(10)]
        made = [m for m in made if m is not None]
        assert made, f"{name} never produced a defect"
        for out, mask in made:
            changed = (out != img).any(axis=2)
            assert mask.any() and not changed[mask == 0].any() and changed[mask > 0].all()
    syn = AnomalySynthesizer(kinds="mixed", foreground_mode="texture")
    for i in range(20):
        out, mask = syn.synthesize(img, np.random.default_rng(i))
        assert mask.any() and not (out != img).any(axis=2)[mask == 0].any()
    with pytest.raises(ConfigError, match="synthesis"):
        AnomalySynthesizer(kinds="fancy")


@pytest.mark.parametrize("bad", [dict(batch_size=3), dict(checkpoint_every=-1), dict(timesteps="some"),
                                 dict(ema_decay=1.0), dict(lr_schedule="step"), dict(synthesis="x"),
                                 dict(dice_weight=-1.0), dict(anomaly_scale="tile")])
def test_bad_recipe_values_are_refused(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad).validate()


def test_dice_loss_rewards_overlap_and_empty_maps_on_clean_samples():
    from diffusionad_edge.train.losses import dice_loss

    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:4, 2:4] = 1.0
    assert dice_loss(mask, mask).item() == pytest.approx(0.0)
    shifted = torch.zeros_like(mask)
    shifted[..., 5:7, 5:7] = 1.0
    assert dice_loss(shifted, mask).item() == pytest.approx(1.0 - 1.0 / 9.0)
    empty = torch.zeros_like(mask)
    # a clean sample: zero cost for an empty map, a cost growing with the map's mass otherwise
    assert dice_loss(empty, empty).item() == 0.0
    assert 0 < dice_loss(torch.full_like(mask, 0.01), empty).item() < dice_loss(torch.full_like(mask, 0.5), empty).item()


def test_dice_weight_enters_the_training_loss(tiny_dataset, tmp_path):
    from diffusionad_edge.train.losses import diffusionad_loss

    eps = torch.zeros(2, 3, 4, 4)
    prob, mask = torch.full((2, 1, 4, 4), 0.3), torch.zeros(2, 1, 4, 4)
    mask[0, :, :2, :2] = 1.0
    clean = torch.tensor([False, True])
    paper = diffusionad_loss(eps, eps, eps, eps, clean, prob, mask)
    with_dice = diffusionad_loss(eps, eps, eps, eps, clean, prob, mask, dice_weight=2.0)
    assert with_dice.total.item() == pytest.approx(paper.total.item() + 2.0 * paper.dice.item())
    assert paper.dice.item() > 0
    # the edge recipe trains with it: a step reports a finite dice term
    cfg = TrainConfig(steps=1, batch_size=4, checkpoint_every=0, dice_weight=1.0)
    losses = []
    Trainer(preset("tiny-s2d"), cfg, tiny_dataset, tmp_path / "m.pt", device="cpu").fit(lambda s, t, loss, e: losses.append(loss))
    assert losses and 0 < losses[-1]["dice"] <= 1


def test_segmentation_head_starts_at_its_prior():
    from diffusionad_edge.models.seg import SegmentationUNet

    cfg = preset("tiny-s2d").seg
    assert cfg.head_prior == pytest.approx(0.01)
    net = SegmentationUNet(cfg)
    assert torch.sigmoid(net.head.bias).allclose(torch.tensor(0.01))
    assert preset("paper").seg.head_prior == 0.0  # the paper preset keeps PyTorch's default init
    with pytest.raises(ConfigError, match="head_prior"):
        c = preset("tiny-s2d")
        c.seg.head_prior = 1.0
        c.validate()


def _samples(anomaly_scale: str, images: list[np.ndarray]):
    from diffusionad_edge.train.samples import SyntheticAnomalySamples

    syn = AnomalySynthesizer(kinds="mixed", foreground_mode="texture")
    return SyntheticAnomalySamples(images, syn, 8, seed=3, foreground_mode="texture", crop_size=32, anomaly_scale=anomaly_scale)


def _textured_images(n: int = 3, side: int = 128) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(60, 200, (side, side, 3), dtype=np.uint8) for _ in range(n)]


def test_anomalies_made_on_the_whole_image_keep_their_size_in_the_crop():
    images = _textured_images()
    on_crop, on_image = _samples("crop", images), _samples("image", images)
    areas = {"crop": [], "image": []}
    for step in range(12):
        for row in range(8):
            i = step * 8 + row
            (a, ma, ca), (b, mb, cb) = on_crop[i], on_image[i]
            assert a.shape == b.shape == (3, 32, 32) and ma.shape == mb.shape == (1, 32, 32)
            if row < 4:  # the clean half is the same patch whatever the scale
                assert ca and cb and torch.equal(a, b) and not ma.any() and not mb.any()
                continue
            assert mb.any()  # the patch is cut around the anomaly: never an empty mask
            # pixels outside the mask are the normal image's: the patch is one of the image's, unchanged there
            k = on_image.image_index(i)
            src = torch.from_numpy(images[k]).permute(2, 0, 1).float() / 255.0
            windows = src.unfold(1, 32, 1).unfold(2, 32, 1)  # (3, y, x, 32, 32)
            outside = mb[0] == 0
            same = ((windows - b[:, None, None]).abs() < 1e-6) | ~outside
            assert same.all(dim=(0, 3, 4)).any()
            areas["crop"].append(float(ma.sum()))
            areas["image"].append(float(mb.sum()))
    # A blob drawn on a 128-px canvas is about 4x the area of one drawn on the 32-px patch.
    assert np.mean(areas["image"]) > 2 * np.mean(areas["crop"])


def test_anomaly_scale_is_a_dae_train_option_with_a_one_line_error(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "m.pt"
    r = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "train", "--preset", "tiny", "--anomaly-scale", "tile",
                        "--steps", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and errors == ["error: --anomaly-scale must be crop or image (got 'tile')"], r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
