"""Shared fixtures: tiny generated datasets and a short-trained tiny checkpoint."""

from __future__ import annotations

import os
import sys

import pytest

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.data.builtin import generate_dataset
from diffusionad_edge.data.mvtec import MVTecCategory
from diffusionad_edge.train.trainer import Trainer
from tests import leaks


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> MVTecCategory:
    root = tmp_path_factory.mktemp("builtin")
    generate_dataset(root, n_train=12, n_test_good=4, n_test_per_defect=2, size=64, seed=0)
    return MVTecCategory(root, "surface")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    cfg = TrainConfig(steps=3, batch_size=4, checkpoint_every=0, seed=0)
    Trainer(preset("tiny"), cfg, tiny_dataset, path, device="cpu").fit()
    return path


# -- nothing left running ------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _leaves_nothing_running(request):
    """Fail a test that leaves a non-daemon thread, a child process or a server behind: a leftover
    non-daemon thread keeps the interpreter alive, so the test run would print its summary and then
    never exit. (Resources of module or session fixtures are set up before this snapshot.)"""
    before = leaks.snapshot()
    yield
    found = leaks.left_behind(before)
    if found:
        pytest.fail(f"{request.node.nodeid} left running: " + "; ".join(found), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    session.config._dae_exitstatus = exitstatus


def pytest_unconfigure(config):
    # The last resort: a non-daemon thread still running (a fixture's, or one a failing test could not
    # stop) would hang the interpreter at exit after the summary. Say which, and exit with a failure.
    threads = leaks.non_daemon_threads()
    if threads:
        names = ", ".join(repr(t.name) for t in threads)
        sys.stderr.write(f"\ntests left non-daemon threads running ({names}): exiting instead of waiting for them for ever\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(getattr(config, "_dae_exitstatus", 1) or 1)
