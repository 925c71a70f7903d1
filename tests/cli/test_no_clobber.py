"""Nothing lost to an output: an output is never an input (same file, same folder, inside an input
folder, holding an input), an existing output is never replaced without --overwrite, and --overwrite
replaces only regular files and folders dae wrote (issue 27)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from diffusionad_edge.paths import MARKER
from tests.runtime.videofix import write_noise_video


def dae(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def refused(res, *fragments):
    """Exit code 2, no traceback, one error line holding every fragment."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.stderr
    for f in fragments:
        assert str(f) in lines[0], lines[0]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_noise_video(tmp_path_factory.mktemp("v") / "line.avi", 6)


@pytest.fixture
def images(tmp_path, tiny_dataset):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, s in enumerate(tiny_dataset.test_samples[:3]):
        (folder / f"p{i}.png").write_bytes(s.image_path.read_bytes())
    return folder


def test_run_never_writes_over_its_input(tiny_checkpoint, video, images, tmp_path):
    original = video.read_bytes()
    # the input video as --save: it used to be overwritten by the overlay video
    refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--save", video), video, "is the same file as")
    refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--save", video, "--overwrite"), "is the same file as")
    # the same file by another name (a hard link) and the events file onto the input
    link = tmp_path / "link.avi"
    os.link(video, link)
    refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--save", link, "--overwrite"), "is the same file as")
    refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--events", video, "--overwrite"), "is the same file as")
    assert video.read_bytes() == original
    # outputs inside an image folder being read, or a folder output holding the input
    before = sorted(p.name for p in images.iterdir())
    refused(dae("run", "--model", tiny_checkpoint, "--source", images, "--no-show", "--save-frames", images / "ng"), "is inside")
    refused(dae("run", "--model", tiny_checkpoint, "--source", images / "*.png", "--no-show", "--events", images / "ev.jsonl"), "is inside")
    refused(dae("run", "--model", tiny_checkpoint, "--source", images / "p0.png", "--no-show", "--save-frames", images), "contains")
    # two outputs on one file
    refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--save", tmp_path / "o.mp4",
                "--events", tmp_path / "o.mp4"), "is the same file as")
    assert sorted(p.name for p in images.iterdir()) == before


def test_predict_never_scores_its_own_overlays(tiny_checkpoint, images, tmp_path):
    before = sorted(p.name for p in images.iterdir())
    # run twice into the folder it reads: the second run used to score the first one's overlays
    refused(dae("predict", images, "--model", tiny_checkpoint, "--out", images), images, "is the same folder as")
    refused(dae("predict", images, "--model", tiny_checkpoint, "--out", images / "results"), "is inside")
    refused(dae("predict", images / "p0.png", "--model", tiny_checkpoint, "--out", images, "--overwrite"), "contains")
    assert sorted(p.name for p in images.iterdir()) == before
    # a results folder elsewhere: a second run needs --overwrite, which replaces it as a whole
    out = tmp_path / "res"
    assert dae("predict", images, "--model", tiny_checkpoint, "--out", out).returncode == 0
    assert (out / MARKER).is_file() and len(list((out / "overlays").iterdir())) == 3
    csv = (out / "results.csv").read_bytes()
    refused(dae("predict", images / "p0.png", "--model", tiny_checkpoint, "--out", out), out, "--overwrite")
    assert (out / "results.csv").read_bytes() == csv
    res = dae("predict", images / "p0.png", "--model", tiny_checkpoint, "--out", out, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert len(list((out / "overlays").iterdir())) == 1  # not mixed with the earlier run's
    assert len(json.loads((out / "results.json").read_text())["results"]) == 1
    # a folder dae did not write is never replaced, --overwrite or not
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    refused(dae("predict", images, "--model", tiny_checkpoint, "--out", mine, "--overwrite"), mine, "not written by dae")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_existing_outputs_need_overwrite(tiny_checkpoint, tiny_dataset, video, tmp_path):
    # an unrelated existing file as --save / --events / eval --json: refused, kept
    for option in ("--save", "--events"):
        existing = tmp_path / ("existing.mp4" if option == "--save" else "existing.jsonl")
        existing.write_bytes(b"someone's file")
        refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", option, existing), existing, "--overwrite")
        assert existing.read_bytes() == b"someone's file"
    res = dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--save", tmp_path / "existing.mp4", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert int(cv2.VideoCapture(str(tmp_path / "existing.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    report = tmp_path / "eval.json"
    report.write_text("{}")
    refused(dae("eval", tiny_checkpoint, "--data", tiny_dataset.path, "--json", report), report, "--overwrite")
    assert report.read_text() == "{}"
    # output folders: an earlier run's needs --overwrite; someone else's is never replaced
    earlier = tmp_path / "bench"
    earlier.mkdir()
    (earlier / MARKER).write_text("{}")
    (earlier / "bench.json").write_text("{}")
    refused(dae("bench", "--checkpoint", tiny_checkpoint, "--out", earlier), earlier, "--overwrite")
    refused(dae("demo", "--fast", "--out", earlier), earlier, "--overwrite")
    (earlier / MARKER).unlink()
    refused(dae("bench", "--checkpoint", tiny_checkpoint, "--out", earlier, "--overwrite"), "not written by dae")
    refused(dae("demo", "--fast", "--out", earlier, "--overwrite"), "not written by dae")
    assert sorted(p.name for p in earlier.iterdir()) == ["bench.json"]


def test_export_overwrite_replaces_only_bundles_and_never_its_input(tiny_checkpoint, tmp_path):
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    refused(dae("export", tiny_checkpoint, "--target", "onnxruntime-cpu", "--out", folder, "--overwrite"), folder, "not a bundle")
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]
    # the folder holding the checkpoint, replaced by the bundle, would take the checkpoint with it
    ckpt_dir = tmp_path / "runs"
    ckpt_dir.mkdir()
    ckpt = ckpt_dir / "m.pt"
    ckpt.write_bytes(Path(tiny_checkpoint).read_bytes())
    refused(dae("export", ckpt, "--target", "onnxruntime-cpu", "--out", ckpt_dir, "--overwrite"), "contains the checkpoint")
    assert ckpt.read_bytes() == Path(tiny_checkpoint).read_bytes()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_overwrite_never_replaces_a_device(tiny_checkpoint, tiny_dataset):
    mode = os.stat("/dev/full").st_mode
    refused(dae("train", "--data", tiny_dataset.path, "--preset", "tiny", "--steps", 2, "--out", "/dev/full", "--overwrite"),
            "/dev/full", "not a regular file")
    refused(dae("eval", tiny_checkpoint, "--data", tiny_dataset.path, "--json", "/dev/full", "--overwrite"), "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode) and os.stat("/dev/full").st_mode == mode
