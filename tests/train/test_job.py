"""``dae train`` as a library call: :func:`train_model` from Python, no CLI (one run, a queue, the
option mistakes settled before anything runs)."""

from __future__ import annotations

import csv
from contextlib import contextmanager

import pytest

from diffusionad_edge.errors import ConfigError
from diffusionad_edge.train.checkpoint import read_checkpoint
from diffusionad_edge.train.job import DEFAULT_QUEUE_OUT, OptionError, TrainOptions, plan_training, train_model

TINY = dict(preset="tiny", steps=2, batch_size=4, device="cpu", checkpoint_every=0)


def test_one_run_from_python(tiny_dataset, tmp_path):
    lines: list[str] = []
    seen: list = []

    @contextmanager
    def bars(label, total, with_info=True):
        seen.append((label, total))
        yield lambda completed, info=None: seen.append((completed, info))

    out = tmp_path / "m.pt"
    result = train_model(TrainOptions(data=tiny_dataset.path, out=out, snapshot_minutes=(1e-6,), **TINY),
                         log=lines.append, bars=bars)
    assert result.checkpoint == out and result.step == 2 and read_checkpoint(out)["step"] == 2
    assert out.with_name("m-1e-06min.pt").is_file()  # the snapshot, in minutes as dae train --snapshot-minutes
    assert lines[0].startswith("training preset tiny (input 64x64") and "steps 0->2" in lines[0]
    assert lines[1].startswith("recipe: batch 4") and lines[-1] == f"checkpoint: {out} (step 2)"
    assert seen[0] == ("train", 2) and seen[1] == (0, None)  # opened, then at the start step
    assert seen[-1][0] == 2 and seen[-1][1].startswith("loss ")


def test_a_queue_from_python(tiny_dataset, tmp_path):
    summaries: list = []
    runs = tmp_path / "runs"
    outcomes = train_model(TrainOptions(data=tiny_dataset.path.parent, category="all", out=runs, **TINY),
                           log=lambda m: None, summary=lambda o, path: summaries.append((o, path)))
    assert [(o.category, o.status, o.steps) for o in outcomes] == [("surface", "trained", 2)]
    assert summaries == [(outcomes, runs / "summary.csv")]
    with open(runs / "summary.csv") as f:
        assert [row["category"] for row in csv.DictReader(f)] == ["surface"]


def test_option_mistakes_are_settled_before_anything_runs(tiny_dataset, tmp_path):
    plan = plan_training(TrainOptions(data=tiny_dataset.path.parent, category="all", **TINY))
    assert plan.categories == ["surface"] and plan.out == DEFAULT_QUEUE_OUT and not DEFAULT_QUEUE_OUT.exists()
    assert plan.cfg.steps == 2 and plan.cfg.batch_size == 4
    for opts, option in ((dict(category="all"), "--category"),
                         (dict(data=tiny_dataset.path.parent, category="all", resume=tmp_path / "x.pt"), "--resume"),
                         (dict(data=tiny_dataset.path.parent, category="a,b", init=tmp_path / "x.pt"), "--init/--add-normals"),
                         (dict(data=tiny_dataset.path.parent, category="all", out=tmp_path / "q.pt"), "--out")):
        with pytest.raises(OptionError) as err:
            plan_training(TrainOptions(**opts, **TINY))
        assert err.value.option == option
    with pytest.raises(ConfigError, match="fixed by the checkpoint being resumed"):
        plan_training(TrainOptions(data=tiny_dataset.path, resume=tmp_path / "x.pt", roi="0,0,32,32", **TINY))
    with pytest.raises(ConfigError, match="--batch-size"):
        plan_training(TrainOptions(data=tiny_dataset.path, **{**TINY, "batch_size": 3}))
    assert not list(tmp_path.iterdir())  # nothing written
