"""``dae train --init CHECKPOINT`` (weights only, a new schedule) and ``--add-normals FOLDER`` (trained on
beside the dataset's normals): real tiny trainings, real files."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.data.preprocess import read_image, to_chw_float
from diffusionad_edge.errors import CheckpointError, ConfigError, DataError
from diffusionad_edge.models.detector import DiffusionAD
from diffusionad_edge.train.checkpoint import load_model, read_checkpoint, save_checkpoint
from diffusionad_edge.train.samples import StepSampler
from diffusionad_edge.train.schedule import lr_factor
from diffusionad_edge.train.start import init_weights
from diffusionad_edge.train.trainer import Trainer


def _cfg(steps, **kw):
    return TrainConfig(steps=steps, batch_size=4, checkpoint_every=0, seed=0, **kw)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_loads_the_weights_and_starts_a_new_schedule(tiny_dataset, tiny_checkpoint, tmp_path):
    source, payload = load_model(tiny_checkpoint)
    assert payload["step"] == 3 and payload["optim_denoiser"]["state"]  # a trained run with its optimiser state
    cfg = _cfg(2, lr_schedule="cosine", warmup_steps=5)
    trainer = Trainer(preset("tiny"), cfg, tiny_dataset, tmp_path / "fine.pt", device="cpu", init=tiny_checkpoint)
    # the checkpoint's deployable (averaged) weights, in the network and in a fresh weight average
    assert _same(_state(trainer.model), source.state_dict()) and _same(_state(trainer.ema.model), source.state_dict())
    scratch = Trainer(preset("tiny"), cfg, tiny_dataset, tmp_path / "scratch.pt", device="cpu")
    assert not _same(_state(scratch.model), source.state_dict())  # same seed: only --init makes them equal
    # nothing else comes along: step 0, no optimiser state, no history, an average that starts anew
    assert trainer.step == 0 and trainer.history == [] and trainer.ema.updates == 0 and trainer.train_seconds == 0.0
    assert not trainer.opt_denoiser.state_dict()["state"] and not trainer.opt_segmenter.state_dict()["state"]
    trainer.fit()
    out = read_checkpoint(tmp_path / "fine.pt")
    assert out["step"] == 2 and out["ema_updates"] == 2  # 2 new steps, not 3 + 2
    # the schedule starts again: the last step ran at the second warm-up learning rate
    assert trainer.opt_denoiser.param_groups[0]["lr"] == pytest.approx(cfg.lr_denoiser * lr_factor("cosine", 1, 2, 5)) == \
        pytest.approx(cfg.lr_denoiser * 2 / 5)
    assert out["init"]["path"] == str(tiny_checkpoint) and out["init"]["step"] == 3 and out["init"]["preset"] == "tiny"
    assert not _same(load_model(tmp_path / "fine.pt")[0].state_dict(), source.state_dict())  # and it trained
    # a run resumed from it keeps where its weights came from
    resumed = Trainer(preset("tiny"), _cfg(3, lr_schedule="cosine", warmup_steps=5), tiny_dataset, tmp_path / "fine.pt",
                      device="cpu", resume=tmp_path / "fine.pt")
    assert resumed.step == 2 and resumed.init == out["init"]


def test_init_of_another_preset_or_size_is_one_line_naming_both(tiny_dataset, tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError) as exc:
        Trainer(preset("tiny").with_input((96, 96)).validate(), _cfg(1), tiny_dataset, tmp_path / "m.pt", device="cpu",
                init=tiny_checkpoint)
    assert str(exc.value).startswith(f"--init {tiny_checkpoint} holds preset 'tiny' at 64x64 px; this run trains preset 'tiny' "
                                     "at 96x96 px")
    with pytest.raises(ConfigError, match="give one or the other"):
        Trainer(preset("tiny"), _cfg(1), tiny_dataset, tmp_path / "m.pt", device="cpu", init=tiny_checkpoint, resume=tiny_checkpoint)
    assert not (tmp_path / "m.pt").exists()
    # the command: one line naming both layouts, exit code 2
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "train", "--data", str(tiny_dataset.path.parent),
                          "--category", tiny_dataset.name, "--preset", "edge", "--init", str(tiny_checkpoint), "--steps", "1",
                          "--out", str(tmp_path / "m.pt")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    (line,) = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert "holds preset 'tiny' at 64x64 px; this run trains preset 'edge' at 256x256 px" in line, line
    assert not (tmp_path / "m.pt").exists()


def _added(folder, n=3):
    """Images of another look than the dataset's: plain colours, each at its own size (as a camera gives them)."""
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"frame{i}.png"), np.full((80 + 8 * i, 96, 3), 60 * (i + 1), np.uint8))
    (folder / f"frame{n}.json").write_text("{}")  # a review sidecar: not an image
    return sorted(folder.glob("*.png"))


def test_added_normals_are_trained_on(tiny_dataset, tmp_path):
    added = _added(tmp_path / "good")
    plain = Trainer(preset("tiny"), _cfg(6), tiny_dataset, tmp_path / "plain.pt", device="cpu")
    trainer = Trainer(preset("tiny"), _cfg(6), tiny_dataset, tmp_path / "more.pt", device="cpu", add_normals=tmp_path / "good")
    assert trainer.added_paths == added
    # the dataset's split is unchanged: the same images held out, the added ones all trained on
    assert trainer.val_paths == plain.val_paths and trainer.train_paths == plain.train_paths
    n = len(trainer.train_paths)
    assert len(trainer.samples.images) == n + 3
    # the seeded sample order of the run draws them: which image each sample of the 6 steps is made from
    order = [trainer.samples.image_index(i) for i in StepSampler(0, 6, 4)]
    drawn = sorted({k - n for k in order if k >= n})
    assert drawn, order
    # and a clean sample drawn from one is that image, as the networks see it
    index = next(i for i in StepSampler(0, 6, 4) if trainer.samples.image_index(i) >= n and i % 4 < 2)
    image, mask, clean = trainer.samples[index]
    k = trainer.samples.image_index(index) - n
    expected = to_chw_float(trainer.preprocessing.training_image(read_image(added[k])))
    assert bool(clean) and not mask.any() and np.array_equal(image.numpy(), expected)
    trainer.fit()
    data = read_checkpoint(tmp_path / "more.pt")["data"]
    assert data["added_normals"] == [str(p.resolve()) for p in added]
    assert data["train_images"] == [str(p.relative_to(tiny_dataset.path)) for p in plain.train_paths]  # the dataset's, as before
    # a resumed run trains on them too (they are the run's), and refuses a new --add-normals
    resumed = Trainer(preset("tiny"), _cfg(7), tiny_dataset, tmp_path / "more.pt", device="cpu", resume=tmp_path / "more.pt")
    assert resumed.added_paths == [p.resolve() for p in added] and len(resumed.samples.images) == n + 3
    with pytest.raises(ConfigError, match="--resume continues a run"):
        Trainer(preset("tiny"), _cfg(7), tiny_dataset, tmp_path / "more.pt", device="cpu", resume=tmp_path / "more.pt",
                add_normals=tmp_path / "good")


def test_added_normals_folder_errors(tiny_dataset, tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        Trainer(preset("tiny"), _cfg(1), tiny_dataset, tmp_path / "m.pt", device="cpu", add_normals=tmp_path / "missing")
    (tmp_path / "review" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match=r"holds no images \(a review folder\? its good frames are in .*review/good\)"):
        Trainer(preset("tiny"), _cfg(1), tiny_dataset, tmp_path / "m.pt", device="cpu", add_normals=tmp_path / "review")
    from diffusionad_edge.errors import DaeError

    with pytest.raises(DaeError, match="is inside the folder of --add-normals"):
        Trainer(preset("tiny"), _cfg(1), tiny_dataset, tmp_path / "review" / "good" / "m.pt", device="cpu",
                add_normals=tmp_path / "review" / "good")


def test_init_from_an_earlier_layout_of_the_same_preset_names_the_preset_it_is_now(tmp_path):
    # An `edge` checkpoint of the previous layout (now called edge-v2) given to an `edge` run of this version.
    old = preset("edge-v2")
    old.preset = "edge"
    path = tmp_path / "edge-previous.pt"
    save_checkpoint(path, DiffusionAD(old), step=5)
    with pytest.raises(CheckpointError) as exc:
        init_weights(path, preset("edge"))
    assert str(exc.value) == (f"--init {path} holds an earlier 'edge' layout than this version's (its layout is preset "
                              "'edge-v2' now: give --preset edge-v2), or start from another checkpoint")
    # the named preset takes it: the networks match, whatever name the file carries
    state, record = init_weights(path, preset("edge-v2"))
    assert record["step"] == 5 and record["preset"] == "edge" and state.keys() == DiffusionAD(preset("edge-v2")).state_dict().keys()
    # a layout no preset builds any more
    odd = preset("tiny")
    odd.seg.stem_factor = 2
    save_checkpoint(tmp_path / "odd.pt", DiffusionAD(odd.validate()), step=1)
    with pytest.raises(CheckpointError, match="no preset of this version builds it"):
        init_weights(tmp_path / "odd.pt", preset("tiny"))
