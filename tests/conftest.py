"""Shared fixtures: tiny generated datasets and a short-trained tiny checkpoint."""

from __future__ import annotations

import pytest

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.data.builtin import generate_dataset
from diffusionad_edge.data.mvtec import MVTecCategory
from diffusionad_edge.train.trainer import Trainer


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
