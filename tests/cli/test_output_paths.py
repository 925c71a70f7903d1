"""Every output path of every verb is checked before any work: one line naming the path, exit code 2,
nothing done. And dae run says when input was lost (exit code 1)."""

import json
import os
import subprocess
import sys

import pytest

from tests.runtime.videofix import write_noise_video

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def dae(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _refused(res, path, reason):
    """Exit code 2, no traceback, one error line naming the path and the reason."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [l for l in res.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, res.stderr
    assert str(path) in lines[0] and reason in lines[0], lines[0]


@pytest.fixture
def blocker(tmp_path):
    """A file where a folder is needed: refused for every user, root included."""
    f = tmp_path / "afile"
    f.write_text("x")
    return f


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_noise_video(tmp_path_factory.mktemp("v") / "line.avi", 20)


def test_run_outputs_checked_before_anything(tiny_checkpoint, video, blocker, tmp_path):
    events = tmp_path / "ev.jsonl"
    # --save under a file, --save with a container OpenCV cannot write, --events under a file, --save-frames on a file
    _refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--events", events,
                 "--save", blocker / "out.mp4"), blocker / "out.mp4", "is a file")
    _refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--events", events,
                 "--save", tmp_path / "out.xyz"), tmp_path / "out.xyz", "video writer")
    _refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--events", blocker / "ev.jsonl"),
             blocker / "ev.jsonl", "is a file")
    _refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--events", events,
                 "--save-frames", blocker), blocker, "is a file")
    assert not events.exists()  # nothing was run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # and no probe file left behind


def test_run_video_writer_that_fails_to_open_is_an_error(tiny_checkpoint, video, tmp_path, monkeypatch):
    """Even when the probe passes, a writer that does not open at the first frame stops the run
    (it used to exit 0 with no video)."""
    from diffusionad_edge.paths import OutputPathError
    from diffusionad_edge.runtime import live
    from diffusionad_edge.runtime.bundle import open_bundle

    class Closed:
        def isOpened(self):
            return False

        def release(self):
            pass

    real = live._video_writer
    calls = []

    def writer(path, fps, size):
        calls.append(size)
        return real(path, fps, size) if len(calls) == 1 else Closed()  # the probe opens, the real one does not

    monkeypatch.setattr(live, "_video_writer", writer)
    with open_bundle(tiny_checkpoint) as bundle, pytest.raises(OutputPathError, match="cannot open the video writer"):
        live.run_stream(bundle, str(video), live.RunOptions(save_video=tmp_path / "o.mp4", max_frames=3))


@pytest.mark.skipif(IS_ROOT, reason="root bypasses folder permissions (the file-as-parent cases cover root)")
def test_read_only_folders_are_refused_up_front(tiny_checkpoint, video, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _refused(dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--save", ro / "o.mp4"),
                 ro / "o.mp4", "not writable")
        _refused(dae("predict", video, "--model", tiny_checkpoint, "--out", ro / "res"), ro / "res", "not writable")
        _refused(dae("eval", tiny_checkpoint, "--json", ro / "e.json"), ro / "e.json", "not writable")
        _refused(dae("bench", "--checkpoint", tiny_checkpoint, "--out", ro / "b"), ro / "b", "not writable")
        _refused(dae("export", tiny_checkpoint, "--target", "onnxruntime-cpu", "--out", ro / "x"), ro / "x", "not writable")
    finally:
        ro.chmod(0o700)


def test_other_verbs_check_outputs_first(tiny_checkpoint, tiny_dataset, blocker, tmp_path):
    # eval --json: refused before the evaluation (it used to fail only after the whole run)
    _refused(dae("eval", tiny_checkpoint, "--data", tiny_dataset.path, "--json", blocker / "e.json"), blocker / "e.json", "is a file")
    _refused(dae("eval", tiny_checkpoint, "--data", tiny_dataset.path, "--json", tmp_path), tmp_path, "is a folder")
    _refused(dae("predict", tiny_dataset.path / "test", "--model", tiny_checkpoint, "--out", blocker), blocker, "is a file")
    _refused(dae("bench", "--checkpoint", tiny_checkpoint, "--out", blocker / "b"), blocker / "b", "is a file")
    _refused(dae("export", tiny_checkpoint, "--target", "onnxruntime-cpu", "--out", blocker / "x"), blocker / "x", "is a file")
    _refused(dae("data", "generate", blocker), blocker, "is a file")


def test_run_says_when_input_was_lost(tiny_checkpoint, video, tiny_dataset, tmp_path):
    # a truncated video: frames read vs frames announced, exit code 1
    truncated = tmp_path / "cut.avi"
    data = video.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    res = dae("run", "--model", tiny_checkpoint, "--source", truncated, "--no-show", "--json")
    assert res.returncode == 1, res.stderr
    summary = json.loads(res.stdout)
    assert 0 < summary["frames"] < 20
    assert f"ended after {summary['frames']} of the 20 frames" in res.stderr
    # an image folder with an unreadable file: exit code 1, as dae predict
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(tiny_dataset.test_samples[0].image_path.read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    res = dae("run", "--model", tiny_checkpoint, "--source", folder, "--no-show", "--json")
    assert res.returncode == 1, res.stderr
    assert json.loads(res.stdout)["unreadable"] == [str(folder / "broken.png")]
    # the whole video: exit 0, no warning
    res = dae("run", "--model", tiny_checkpoint, "--source", video, "--no-show", "--max-frames", 2, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["warnings"] == []


def test_demo_out_checked_before_anything(blocker):
    _refused(dae("demo", "--fast", "--out", blocker), blocker, "is a file")
    _refused(dae("demo", "--fast", "--out", blocker / "sub"), blocker / "sub", "is a file, not a folder")


def test_default_bundle_folder_names_the_precision_the_bundle_is_built_in(tmp_path):
    """Without --out the folder carries the precision: the profile's own when --precision is left out (it was
    "-default", so an INT8 and an FP16 export of one model could both land in "...-default")."""
    from pathlib import Path

    from diffusionad_edge.cli.export_cmd import default_bundle_dir
    from diffusionad_edge.errors import ConfigError
    from diffusionad_edge.export.targets import load_target

    ckpt = Path("runs/model.pt")
    for name in ("openvino-cpu", "jetson-orin", "onnxruntime-cpu"):
        assert default_bundle_dir(ckpt, name, None) == Path("exports") / f"model-{name}-{load_target(name).precision}"
    assert default_bundle_dir(ckpt, "openvino-cpu", "fp32") == Path("exports/model-openvino-cpu-fp32")
    # a user's profile file: its stem names the folder, its precision field the precision
    profile = tmp_path / "line3.toml"
    profile.write_text((Path(__file__).parents[2] / "targets" / "onnxruntime-cpu.toml").read_text())
    assert default_bundle_dir(ckpt, str(profile), None) == Path("exports") / "model-line3-fp32"
    with pytest.raises(ConfigError, match="unknown target"):
        default_bundle_dir(ckpt, "no-such-target", None)
