"""``dae info`` as a library call: :func:`describe_model` from Python, no CLI."""

from __future__ import annotations

import pytest

from diffusionad_edge.errors import ConfigError
from diffusionad_edge.models.complexity import describe_model


def test_describe_a_preset_and_a_checkpoint(tiny_checkpoint):
    row = describe_model(preset="tiny")
    assert (row["preset"], row["input_hw"]) == ("tiny", [64, 64]) and "checkpoint" not in row
    assert row["total_params"] == row["denoiser_params"] + row["segmenter_params"] > 0
    # exact numbers (the CLI rounds what it prints): one step is two denoiser passes plus segmentation
    assert row["one_step_gflop_per_image"] == 2 * row["denoiser_gflop_per_pass"] + row["segmenter_gflop"] > 0
    trained = describe_model(tiny_checkpoint)
    assert trained["checkpoint"] == str(tiny_checkpoint) and trained["step"] == 3
    assert {k: trained[k] for k in row} == row  # the same model as its preset


def test_describe_needs_one_of_checkpoint_or_preset(tiny_checkpoint):
    for kwargs in ({}, {"checkpoint": tiny_checkpoint, "preset": "tiny"}):
        with pytest.raises(ConfigError, match="either a CHECKPOINT or --preset"):
            describe_model(**kwargs)
