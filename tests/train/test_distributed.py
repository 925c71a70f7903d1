"""dae train on several processes: real torchrun jobs (gloo on CPU, tiny preset, a few steps)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.train.checkpoint import read_checkpoint
from diffusionad_edge.train.distributed import share_rows
from diffusionad_edge.train.samples import StepSampler
from diffusionad_edge.train.trainer import Trainer

WORKER = Path(__file__).with_name("ddp_worker.py")
STEPS, BATCH = 3, 4


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _trainer(ds, path, steps, resume=None):
    cfg = TrainConfig(steps=steps, batch_size=BATCH, checkpoint_every=0, seed=0, precision="fp32")
    return Trainer(preset("tiny"), cfg, ds, path, device="cpu", resume=resume, overwrite=resume is not None)


def _weights(path):
    """Every trained number of a checkpoint: averaged and raw weights, BatchNorm buffers included."""
    p = read_checkpoint(path)
    out = {f"model.{k}": v for k, v in p["model"].items()}
    out.update({f"train.{k}": v for k, v in p["model_train"].items()})
    return {k: v.double() for k, v in out.items() if v.is_floating_point()}


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_each_rank_gets_an_equal_share_of_clean_and_synthetic_samples():
    for world in (1, 2, 4):
        shares = [share_rows(8, world, r) for r in range(world)]
        assert sorted(sum(shares, [])) == list(range(8))
        for share in shares:
            assert sum(i < 4 for i in share) == sum(i >= 4 for i in share)  # first half of a batch is clean
    # one process: the indices of the original sampler, in order (old checkpoints resume exactly)
    assert list(StepSampler(2, 4, 4)) == list(range(8, 16))
    assert list(StepSampler(2, 3, 4, world_size=2, rank=1)) == [9, 11]


@pytest.fixture(scope="module")
def two_rank_run(tiny_dataset, tmp_path_factory):
    """One torchrun job: 2 processes, global batch 4, 3 steps, fp32."""
    tmp = tmp_path_factory.mktemp("ddp")
    out, report = tmp / "out" / "ddp.pt", tmp / "report"
    report.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
           "--data", str(tiny_dataset.path), "--out", str(out), "--report", str(report), "--steps", str(STEPS),
           "--batch-size", str(BATCH)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _, err = proc.communicate(timeout=600)
    finally:
        _stop(proc)
    assert proc.returncode == 0, err[-3000:]
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in range(2)]
    return out, ranks


def test_two_ranks_step_together_and_only_rank_0_writes(two_rank_run):
    out, (r0, r1) = two_rank_run
    assert r0["backend"] == r1["backend"] == "gloo" and r0["world_size"] == 2
    assert [s for s, _ in r0["steps"]] == [s for s, _ in r1["steps"]] == list(range(1, STEPS + 1))
    assert r0["steps"] == r1["steps"]  # the same (global) loss at every step
    assert r0["param_digest"] == r1["param_digest"]  # gradients averaged: identical weights
    assert (r0["checkpoint_writes"], r1["checkpoint_writes"]) == (1, 0)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # one file, no temporary left over
    assert read_checkpoint(out)["world_size"] == 2


def test_two_ranks_equal_one_process_with_the_union_batch(two_rank_run, tiny_dataset, tmp_path):
    out, (r0, _) = two_rank_run
    single = _trainer(tiny_dataset, tmp_path / "one.pt", STEPS)
    losses = []
    single.fit(lambda step, total, l, e: losses.append(l["total"]))
    assert losses == pytest.approx([l for _, l in r0["steps"]], rel=1e-4)
    # Float rounding only (BatchNorm statistics summed in another order, then Adam): without the
    # synchronised BatchNorm the difference is ~1e-2 on this run.
    assert _max_diff(_weights(out), _weights(tmp_path / "one.pt")) < 2e-3


def test_resume_a_two_rank_checkpoint_in_one_process(two_rank_run, tiny_dataset, tmp_path):
    out, _ = two_rank_run
    cont = tmp_path / "cont.pt"
    cont.write_bytes(out.read_bytes())
    resumed = _trainer(tiny_dataset, cont, STEPS + 2, resume=cont)
    assert resumed.resumed_world_size == 2 and resumed.step == STEPS
    resumed.fit()
    whole = _trainer(tiny_dataset, tmp_path / "whole.pt", STEPS + 2)
    whole.fit()
    assert read_checkpoint(cont)["step"] == STEPS + 2 and read_checkpoint(cont)["world_size"] == 1
    assert _max_diff(_weights(cont), _weights(tmp_path / "whole.pt")) < 2e-3


def _stop(proc: subprocess.Popen) -> None:
    """End a launcher that is still running the way its user would (SIGTERM: it stops its training
    processes, which run in sessions of their own), then for sure."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of training process ``rank`` started (through the launcher) under ``parent``."""
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == parent:
            continue
        try:
            ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            env = Path(f"/proc/{d}/environ").read_bytes().split(b"\0") if ppid == parent else []
        except (OSError, IndexError, ValueError):
            continue
        if f"RANK={rank}".encode() in env and any(e.startswith(b"TORCHELASTIC_RUN_ID=") for e in env):
            return int(d)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_killed_rank_ends_the_job_with_one_line(tiny_dataset, tmp_path):
    out = tmp_path / "k.pt"
    cmd = [sys.executable, "-m", "diffusionad_edge.cli.main", "train", "--data", str(tiny_dataset.path), "--preset", "tiny",
           "--steps", "10000", "--batch-size", str(BATCH), "--out", str(out), "--device", "cpu", "--nproc", "2",
           "--checkpoint-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.time() + 300
        while not out.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert out.exists(), "training never started"
        pid = _rank_pid(proc.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        t0 = time.perf_counter()
        _, err = proc.communicate(timeout=120)
    finally:
        _stop(proc)
    assert time.perf_counter() - t0 < 90
    assert proc.returncode != 0
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "rank 1 of 2" in last and "SIGKILL" in last and str(out) in last
    assert read_checkpoint(out)["step"] >= 1  # what was saved is kept
