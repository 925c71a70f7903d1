"""A plain folder of good images is a dataset (issue 26 item 4): every image is a normal training
image, no test split; the MVTec layout wins when both are there; an empty folder is one line."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from diffusionad_edge.data.mvtec import MVTecCategory
from diffusionad_edge.errors import DataError


def _plain(folder: Path, n: int = 10) -> Path:
    """Good images of mixed formats and sizes, loose in one folder (plus a file that is no image)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        h, w = (70, 90) if i % 2 else (64, 64)
        img = np.full((h, w, 3), 120, np.uint8) + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"part{i:02d}.{'png' if i % 3 else 'jpg'}"), img)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_plain_folder_is_all_training_images(tmp_path):
    ds = MVTecCategory(_plain(tmp_path / "good"))
    assert ds.layout == "plain" and len(ds.train_images) == 10
    assert ds.test_samples == [] and not ds.has_test and ds.defect_types == []
    assert len(ds.notes) == 1 and "no test split" in ds.notes[0]


def test_layout_wins_over_loose_images_and_says_so(tmp_path):
    folder = _plain(tmp_path / "cat", n=3)
    (folder / "train/good").mkdir(parents=True)
    cv2.imwrite(str(folder / "train/good/a.png"), np.zeros((64, 64, 3), np.uint8))
    ds = MVTecCategory(folder)
    assert ds.layout == "mvtec" and [p.name for p in ds.train_images] == ["a.png"]
    assert "MVTec layout is used" in ds.notes[0] and "3 loose images" in ds.notes[0]


def test_folder_without_images_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"no images in .*empty") as err:
        MVTecCategory(tmp_path / "empty")
    assert "\n" not in str(err.value)


def test_dae_train_on_a_plain_folder(tmp_path):
    folder = _plain(tmp_path / "good")
    out = tmp_path / "m.pt"
    res = subprocess.run(
        [sys.executable, "-m", "diffusionad_edge.cli.main", "train", "--data", str(folder), "--preset", "tiny",
         "--steps", "2", "--batch-size", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stderr.split())  # the console wraps long lines
    assert said.count("no test split") == 1  # said once, not an error
    ck = torch.load(out, map_location="cpu", weights_only=False)
    names = ck["data"]["train_images"] + ck["data"]["val_images"]
    assert sorted(names) == sorted(p.name for p in folder.iterdir() if p.suffix != ".txt")
    empty = tmp_path / "none"
    empty.mkdir()
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "train", "--data", str(empty), "--preset", "tiny",
                          "--steps", "1", "--out", str(tmp_path / "n.pt")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("error:") == 1 and "no images in" in " ".join(res.stderr.split())
