"""dae train --category all: each category in turn, finished ones skipped, interrupted ones resumed,
a broken one reported while the others go on."""

import csv
import os
import subprocess
import sys

import pytest

from diffusionad_edge.data.builtin import generate_dataset
from diffusionad_edge.errors import ConfigError
from diffusionad_edge.train.checkpoint import read_checkpoint
from diffusionad_edge.train.queue import is_queue, queue_categories


def _dae(*args):
    return subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("factory")
    for i, name in enumerate(("grid", "surface")):
        generate_dataset(root, category=name, n_train=8, n_test_good=2, n_test_per_defect=1, size=64, seed=i)
    broken = root / "broken" / "train" / "good"
    broken.mkdir(parents=True)
    for i in range(3):
        (broken / f"{i:03d}.png").write_bytes(b"not a png at all")
    (root / "notes").mkdir()  # not a category: no train/ folder
    return root


def _summary(folder):
    with open(folder / "summary.csv") as f:
        return {row["category"]: row for row in csv.DictReader(f)}


def test_queue_names(root):
    assert queue_categories(root, "all") == ["broken", "grid", "surface"]
    assert queue_categories(root, "surface, grid,surface") == ["surface", "grid"]
    assert is_queue("all") and is_queue("a,b") and not is_queue("bottle") and not is_queue(None)
    with pytest.raises(ConfigError):
        queue_categories(root / "grid" / "train" / "good", "all")


def test_queue_trains_skips_resumes_and_reports_the_broken_one(root, tmp_path):
    runs = tmp_path / "runs"
    common = ["--data", root, "--preset", "tiny", "--batch-size", "4", "--device", "cpu", "--checkpoint-every", "0"]
    # the broken category comes first (sorted): the others must still be trained after it
    # surface was interrupted after 1 of 2 steps
    res = _dae("train", *common, "--category", "surface", "--steps", "1", "--out", runs / "surface.pt")
    assert res.returncode == 0, res.stderr

    res = _dae("train", *common, "--category", "all", "--steps", "2", "--out", runs)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "1 of 3 categories failed (broken)" in res.stderr.strip().splitlines()[-1]
    rows = _summary(runs)
    assert [rows[c]["status"] for c in ("grid", "surface", "broken")] == ["trained", "resumed", "failed"]
    assert "cannot read image" in rows["broken"]["error"]
    for c in ("grid", "surface"):
        assert rows[c]["steps"] == "2" and float(rows[c]["minutes"]) > 0 and rows[c]["heldout_auroc"] != ""
        assert read_checkpoint(runs / f"{c}.pt")["step"] == 2
    assert "grid" in res.stdout and "failed" in res.stdout  # the table

    mtime = (runs / "grid.pt").stat().st_mtime_ns
    res = _dae("train", *common, "--category", "grid,surface", "--steps", "2", "--out", runs)
    assert res.returncode == 0, res.stderr
    rows = _summary(runs)
    assert [rows[c]["status"] for c in ("grid", "surface")] == ["skipped", "skipped"]
    assert rows["grid"]["steps"] == "2"
    assert (runs / "grid.pt").stat().st_mtime_ns == mtime


def test_queue_refuses_a_checkpoint_file_as_out(root, tmp_path):
    res = _dae("train", "--data", root, "--category", "all", "--out", tmp_path / "x.pt")
    assert res.returncode == 2 and "folder" in res.stderr
