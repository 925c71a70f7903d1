"""``dae eval`` as a library call: :func:`evaluate_checkpoint` and :func:`study_noise` from Python, no CLI."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from diffusionad_edge.errors import ConfigError
from diffusionad_edge.evaluate.run import evaluate_checkpoint, study_noise
from diffusionad_edge.paths import OutputPathError


def _recording_bars(seen: list):
    """Progress bars that write down what they are told (a caller's own bars)."""

    @contextmanager
    def bars(label: str, total: int, with_info: bool = True):
        seen.append(("open", label, total, with_info))
        yield lambda completed, info=None: seen.append(completed)

    return bars


def test_evaluate_checkpoint_from_python(tiny_checkpoint, tiny_dataset, tmp_path):
    seen: list = []
    results = tmp_path / "results.json"
    # no data given: the dataset the checkpoint was trained on
    result = evaluate_checkpoint(tiny_checkpoint, limit=4, map_sigma=0, results_file=results, bars=_recording_bars(seen))
    assert set(result.overall) == {"image_auroc", "pixel_auroc", "pixel_ap", "aupro"}
    assert sum(result.counts.values()) == 4
    extra = result.extra
    assert Path(extra["dataset"]).resolve() == tiny_dataset.path.resolve()
    assert (extra["checkpoint"], extra["mode"], extra["map_sigma"], extra["preset"], extra["step"]) == \
        (str(tiny_checkpoint), "one-step", 0.0, "tiny", 3)
    assert seen[0] == ("open", "eval one-step", 4, False) and seen[-1] == 4
    assert json.loads(results.read_text())["overall"] == pytest.approx(result.overall)


def test_evaluate_checkpoint_checks_before_loading(tiny_checkpoint, tmp_path):
    existing = tmp_path / "results.json"
    existing.write_text("{}")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    # the results file is refused before the (corrupt) checkpoint is read, the mode before both
    with pytest.raises(OutputPathError, match="already exists"):
        evaluate_checkpoint(corrupt, results_file=existing)
    with pytest.raises(ConfigError, match="--mode"):
        evaluate_checkpoint(corrupt, mode="magic", results_file=existing)
    assert existing.read_text() == "{}"


def test_study_noise_from_python(tiny_checkpoint, tiny_dataset, tmp_path):
    lines: list[str] = []
    results = tmp_path / "study.json"
    study = study_noise(tiny_checkpoint, 1, data=tiny_dataset.path, limit=4, results_file=results, log=lines.append)
    assert study["images"] == 4 and study["repeats"] == 1
    assert set(study["fixed_noise"]) == set(study["fresh_noise_mean"]) == {"image_auroc", "pixel_auroc", "pixel_ap", "aupro"}
    assert study["checkpoint"] == str(tiny_checkpoint) and study["dataset"] == str(tiny_dataset.path)
    assert lines == ["fixed noise done", "fresh noise run 1/1 done"]
    assert json.loads(results.read_text())["repeats"] == 1
