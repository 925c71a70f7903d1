import pytest
import torch

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.errors import CheckpointError, ConfigError
from diffusionad_edge.train.checkpoint import load_model, read_checkpoint
from diffusionad_edge.train.losses import focal_loss, noise_loss
from diffusionad_edge.train.trainer import Trainer


def _trainer(ds, path, steps, seed=0, resume=None, **kw):
    cfg = TrainConfig(steps=steps, batch_size=4, checkpoint_every=0, seed=seed, **kw)
    return Trainer(preset("tiny"), cfg, ds, path, device="cpu", resume=resume)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_noise_loss_counts_clean_samples_only():
    a = torch.zeros(4, 3, 2, 2)
    b = torch.ones(4, 3, 2, 2)
    clean = torch.tensor([True, True, False, False])
    # each clean sample: MSE 1 (small-t branch) + 0 (big-t branch) = 1
    assert noise_loss(a, b, a, a, clean).item() == pytest.approx(1.0)
    assert noise_loss(a, b, a, a, torch.zeros(4, dtype=torch.bool)).item() == 0.0


def test_focal_loss_prefers_confident_correct():
    target = torch.tensor([1.0, 0.0])
    assert focal_loss(torch.tensor([0.9, 0.1]), target) < focal_loss(torch.tensor([0.6, 0.4]), target)


def test_short_training_lowers_loss(tiny_dataset, tmp_path):
    # Same fixed batch evaluated before/after 25 steps on a higher learning rate: loss must drop.
    trainer = _trainer(tiny_dataset, tmp_path / "m.pt", steps=25, lr_segmenter=1e-3, lr_denoiser=1e-3)
    batch = [trainer.samples[i] for i in range(4)]
    image, mask, clean = (torch.stack(x) for x in zip(*batch))

    def loss_now():
        trainer.step = 0  # same noise draw every time
        with torch.no_grad():
            from diffusionad_edge.train.losses import diffusionad_loss
            from diffusionad_edge.train.trainer import step_noise
            m = trainer.model
            t_s, t_b, es, eb = step_noise(0, 0, tuple(image.shape), 300, 1000)
            x0g, ehs, ehb = m.guided_reconstruction(image, t_s, t_b, es, eb)
            return diffusionad_loss(ehs, es, ehb, eb, clean, torch.sigmoid(m.segment_logits(image, x0g)), mask).total.item()

    trainer.model.eval()
    before = loss_now()
    trainer.model.train()
    trainer.fit()
    trainer.model.eval()
    assert loss_now() < before


def test_seed_repeatable_and_resume_exact(tiny_dataset, tmp_path):
    full = _trainer(tiny_dataset, tmp_path / "full.pt", steps=3)
    full.fit()
    again = _trainer(tiny_dataset, tmp_path / "again.pt", steps=3)
    again.fit()
    assert torch.equal(_params(full.model), _params(again.model))

    part = _trainer(tiny_dataset, tmp_path / "part.pt", steps=2)
    part.fit()
    assert read_checkpoint(tmp_path / "part.pt")["step"] == 2
    resumed = _trainer(tiny_dataset, tmp_path / "part.pt", steps=3, resume=tmp_path / "part.pt")
    assert resumed.step == 2
    resumed.fit()
    assert read_checkpoint(tmp_path / "part.pt")["step"] == 3
    assert torch.allclose(_params(resumed.model), _params(full.model), atol=1e-6)
    with pytest.raises(ConfigError, match="already at step 3"):
        _trainer(tiny_dataset, tmp_path / "part.pt", steps=3, resume=tmp_path / "part.pt").fit()


def test_checkpoint_holds_config_split_and_validation(tiny_checkpoint):
    model, payload = load_model(tiny_checkpoint, expect_preset="tiny")
    assert model.config == preset("tiny")
    assert payload["data"]["val_images"] and not set(payload["data"]["val_images"]) & set(payload["data"]["train_images"])
    assert len(payload["validation"]["normal_scores"]) == len(payload["data"]["val_images"])
    with pytest.raises(CheckpointError, match="holds preset 'tiny', not 'edge'"):
        load_model(tiny_checkpoint, expect_preset="edge")


def test_corrupt_and_unsafe_checkpoints_are_refused(tmp_path, tiny_checkpoint):
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(truncated)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "diffusionad_edge.checkpoint", "x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(evil)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "none.pt")


def test_user_foreground_masks_restrict_synthesis(tiny_dataset, tmp_path):
    import cv2
    import numpy as np

    from diffusionad_edge.errors import DataError

    masks = tmp_path / "fg"
    masks.mkdir()
    for p in tiny_dataset.train_images:
        m = np.zeros((64, 64), np.uint8)
        m[:, :20] = 255  # only the left third is "object"
        cv2.imwrite(str(masks / f"{p.stem}.png"), m)
    trainer = _trainer(tiny_dataset, tmp_path / "m.pt", steps=1, foreground_masks=str(masks), crop_size=None)
    anomalous = [trainer.samples[i] for i in range(2, 4)]  # second half of a batch of 4
    for _, mask, clean in anomalous:
        assert not bool(clean) and mask.sum() > 0 and mask[0, :, 21:].sum() == 0
    (masks / f"{tiny_dataset.train_images[0].stem}.png").unlink()
    with pytest.raises(DataError, match="no foreground mask"):
        _trainer(tiny_dataset, tmp_path / "m.pt", steps=1, foreground_masks=str(masks))
