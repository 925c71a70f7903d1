"""dae train never loses work: output checked first, no silent overwrite, Ctrl-C resumes exactly."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.paths import OutputPathError
from diffusionad_edge.train.checkpoint import read_checkpoint
from diffusionad_edge.train.trainer import Trainer


def _dae(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _cfg(**kw):
    return TrainConfig(**{**dict(steps=2, batch_size=4, checkpoint_every=0, precision="fp32"), **kw})


def test_existing_checkpoint_is_not_replaced_silently(tiny_dataset, tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"precious")
    with pytest.raises(OutputPathError, match="--overwrite"):
        Trainer(preset("tiny"), _cfg(), tiny_dataset, path, device="cpu")
    assert path.read_bytes() == b"precious"
    Trainer(preset("tiny"), _cfg(), tiny_dataset, path, device="cpu", overwrite=True).fit()
    assert read_checkpoint(path)["step"] == 2


def test_unwritable_out_fails_before_any_step(tiny_dataset, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match="is a file"):
        Trainer(preset("tiny"), _cfg(), tiny_dataset, blocker / "m.pt", device="cpu")
    (tmp_path / "adir").mkdir()
    with pytest.raises(OutputPathError, match="is a folder"):
        Trainer(preset("tiny"), _cfg(), tiny_dataset, tmp_path / "adir", device="cpu")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root bypasses folder permissions")
def test_read_only_folder_fails_before_any_step(tiny_dataset, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            Trainer(preset("tiny"), _cfg(), tiny_dataset, ro / "m.pt", device="cpu")
    finally:
        ro.chmod(0o700)


def test_cli_refuses_with_one_line_and_exit_2(tiny_dataset, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    # Refused before training starts: a run of a million steps would only end at the subprocess's
    # timeout (no wall-clock assertion here: this machine's load is not the program's speed).
    res = _dae("train", "--data", tiny_dataset.path, "--preset", "tiny", "--steps", "1000000", "--out", blocker / "m.pt")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "is a file" in res.stderr and "train:" not in res.stdout
    existing = tmp_path / "m.pt"
    existing.write_bytes(b"x")
    res = _dae("train", "--data", tiny_dataset.path, "--preset", "tiny", "--steps", "5", "--out", existing)
    assert res.returncode == 2 and "already exists" in res.stderr and existing.read_bytes() == b"x"
    res = _dae("train", "--data", tiny_dataset.path, "--batch-size", "3", "--out", tmp_path / "n.pt")
    assert res.returncode == 2 and "even" in res.stderr
    res = _dae("train", "--data", tiny_dataset.path, "--checkpoint-every", "-1", "--out", tmp_path / "n.pt")
    assert res.returncode == 2 and "checkpoint-every" in res.stderr


def _all_state(path):
    p = read_checkpoint(path)
    out = {f"model.{k}": v for k, v in p["model"].items()}
    out.update({f"train.{k}": v for k, v in (p["model_train"] or {}).items()})
    for opt in ("optim_denoiser", "optim_segmenter"):
        for pid, st in p[opt]["state"].items():
            for k, v in st.items():
                out[f"{opt}.{pid}.{k}"] = v
    return p, out


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_resume_after_ctrl_c_equals_the_uninterrupted_run(tiny_dataset, tmp_path, sig, code):
    """Ctrl-C, and SIGTERM (systemd, Docker, Kubernetes) the same way: the step in flight finishes, the
    checkpoint is written, the resume line printed, exit 130 / 143; resuming equals never stopping."""
    steps = 16
    args = ["train", "--data", tiny_dataset.path, "--preset", "tiny-s2d", "--batch-size", "4", "--precision", "fp32",
            "--steps", steps, "--ema-decay", "0.9"]
    ref = tmp_path / "ref.pt"
    assert _dae(*args, "--out", ref, "--checkpoint-every", "0").returncode == 0

    cut = tmp_path / "cut.pt"
    proc = subprocess.Popen([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args), "--out", cut,
                             "--checkpoint-every", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not cut.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    t0 = time.perf_counter()
    out, err = proc.communicate(timeout=60)
    assert time.perf_counter() - t0 < 30
    assert proc.returncode == code, err
    assert "interrupted after step" in err and f"--resume {cut}" in err and "Traceback" not in err
    assert ("SIGTERM: finishing the current step" in out) == (sig == signal.SIGTERM), out
    stopped_at = read_checkpoint(cut)["step"]
    assert 2 <= stopped_at < steps, "SIGINT must land mid-run for this test to mean anything"

    res = _dae(*args, "--out", cut, "--resume", cut, "--checkpoint-every", "0")
    assert res.returncode == 0, res.stderr
    p_ref, s_ref = _all_state(ref)
    p_cut, s_cut = _all_state(cut)
    assert p_cut["step"] == p_ref["step"] == steps
    assert s_ref.keys() == s_cut.keys()
    bn = [k for k in s_ref if "running_" in k or "num_batches_tracked" in k]
    assert bn, "the preset must have BatchNorm buffers for this test to check them"
    for k in s_ref:
        assert torch.equal(s_ref[k], s_cut[k]), k


def test_time_based_checkpoint_survives_kill_9(tiny_dataset, tmp_path):
    """With no step-based checkpoint before the end (--checkpoint-every 0), --checkpoint-minutes still
    writes one on the way: a kill -9 (power cut, OOM killer) then costs minutes, not the run."""
    out = tmp_path / "m.pt"
    proc = subprocess.Popen([sys.executable, "-m", "diffusionad_edge.cli.main", "train", "--data", str(tiny_dataset.path),
                             "--preset", "tiny", "--batch-size", "4", "--precision", "fp32", "--steps", "100000",
                             "--checkpoint-every", "0", "--checkpoint-minutes", "0.01", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not out.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert out.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint within 180 s"
        time.sleep(1.5)  # let a second one replace it (atomically)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    payload = read_checkpoint(out)  # loads: never half-written
    assert 1 <= payload["step"] < 100000 and "optim_denoiser" in payload
    assert payload["train_config"]["checkpoint_minutes"] == 0.01
    assert not [p.name for p in tmp_path.iterdir() if p.name != "m.pt" and not p.name.endswith(".tmp")]
    # and it resumes
    res = _dae("train", "--data", tiny_dataset.path, "--steps", payload["step"] + 1, "--resume", out, "--out", out,
               "--checkpoint-minutes", "0")
    assert res.returncode == 0, res.stderr
    assert read_checkpoint(out)["step"] == payload["step"] + 1
