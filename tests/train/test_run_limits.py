"""Which limit ends a training run: --steps, --minutes, or whichever comes first (issue 23 item 3).

Real `dae train` processes on the tiny generated dataset; the checkpoint's step count, training
time and the optimisers' last learning rate say what happened."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from diffusionad_edge.config import TrainConfig
from diffusionad_edge.train.job import NO_STEP_LIMIT, describe_limits, resolve_steps


def _train(dataset, out, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "diffusionad_edge.cli.main", "train", "--data", str(dataset.path),
         "--preset", "tiny", "--batch-size", "4", "--lr-schedule", "cosine", "--warmup-steps", "0",
         "--lr-denoiser", "1e-3", "--lr-segmenter", "1e-3", "--checkpoint-every", "0", "--out", str(out), *args],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert res.returncode == 0, res.stderr
    return res, torch.load(out, map_location="cpu", weights_only=False)


def test_resolve_steps_and_header():
    assert resolve_steps(None, None) == TrainConfig().steps
    assert resolve_steps(None, 40.0) == NO_STEP_LIMIT  # --minutes alone: no silent cap at the default
    assert resolve_steps(300, 40.0) == 300
    assert "no step limit" in describe_limits(0, NO_STEP_LIMIT, 40.0)
    assert "whichever comes first" in describe_limits(0, 300, 40.0)
    assert describe_limits(5, 300, None) == "steps 5->300"


def test_minutes_alone_end_the_run_and_span_the_schedule(tiny_dataset, tmp_path):
    res, ck = _train(tiny_dataset, tmp_path / "m.pt", "--minutes", "0.1")
    assert "no step limit" in res.stderr
    # Stopped by the clock, not by a step count; the cosine decayed over the minutes to its floor.
    assert ck["train_seconds"] >= 6.0
    assert ck["train_config"]["steps"] == NO_STEP_LIMIT
    lr = ck["optim_denoiser"]["param_groups"][0]["lr"]
    # near its 5 % floor (the last step's rate was set when it started, a little before the budget ran out)
    assert 1e-3 * 0.05 <= lr < 1e-3 * 0.15, lr


def test_steps_end_the_run_before_the_minutes(tiny_dataset, tmp_path):
    res, ck = _train(tiny_dataset, tmp_path / "s.pt", "--steps", "3", "--minutes", "10")
    assert "whichever comes first" in res.stderr
    assert ck["step"] == 3 and ck["train_seconds"] < 600


def test_default_steps_without_minutes(tiny_dataset, tmp_path):
    res, ck = _train(tiny_dataset, tmp_path / "d.pt", "--steps", "2")
    assert ck["step"] == 2 and "steps 0->2" in res.stderr
