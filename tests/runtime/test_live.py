"""dae run / dae predict on real files and real runtimes; the capture policy with a stand-in camera."""

import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from diffusionad_edge.export.pipeline import ExportOptions, export_bundle
from diffusionad_edge.runtime.bundle import load_bundle
from diffusionad_edge.runtime.sources import LiveSource, SourceError

from .videofix import write_plate_video


def dae(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def bundles(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    return {t: export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target=t, precision="fp32", out_dir=root / t, input_size=64), log=lambda m: None).bundle
            for t in ("onnxruntime-cpu", "openvino-cpu")}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """12 frames of a plate, a dark hole drawn on every third frame."""
    return write_plate_video(tmp_path_factory.mktemp("video") / "line.mp4", 12)


@pytest.mark.parametrize("target", ["onnxruntime-cpu", "openvino-cpu"])
def test_run_video_events_and_saved_video(bundles, video, tmp_path, target):
    events, saved = tmp_path / "ev.jsonl", tmp_path / "out.mp4"
    res = dae("run", "--model", bundles[target], "--source", video, "--save", saved, "--events", events,
              "--save-frames", tmp_path / "ng", "--no-show", "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(l) for l in events.read_text().splitlines()]
    assert [e["frame"] for e in lines] == list(range(12))
    for e in lines:  # the decision rule is applied consistently
        assert e["decision"] == ("NG" if e["score"] >= e["threshold"] else "OK")
        assert {"preprocess", "inference", "output"} <= set(e["latency_ms"])
    cap = cv2.VideoCapture(str(saved))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ng = sum(e["decision"] == "NG" for e in lines)
    assert len(list((tmp_path / "ng").glob("*.png"))) == ng
    summary = json.loads(res.stdout)
    assert summary["frames"] == 12 and summary["end_to_end_fps"] > 0 and "inference" in summary["latency_ms"]
    assert summary["end_to_end_fps"] == round(summary["end_to_end_fps"], 3)  # rounded for people
    # the events file of the run above is replaced only on request (issue 27: no output is replaced silently)
    res = dae("run", "--model", bundles[target], "--source", video, "--max-frames", 5, "--events", events, "--no-show")
    assert res.returncode == 2 and "--overwrite" in res.stderr and len(events.read_text().splitlines()) == 12
    res = dae("run", "--model", bundles[target], "--source", video, "--max-frames", 5, "--events", events, "--no-show", "--overwrite")
    assert res.returncode == 0 and len(events.read_text().splitlines()) == 5
    # Without --json: a short summary for people, no JSON, no carriage-return status line (not a terminal).
    ng = sum(json.loads(l)["decision"] == "NG" for l in events.read_text().splitlines())
    assert res.stdout.splitlines()[0] == f"5 frames: {5 - ng} OK, {ng} NG" and "FPS end to end" in res.stdout
    assert "{" not in res.stdout and "\r" not in res.stdout + res.stderr


def test_missing_camera_is_one_clear_line(bundles):
    res = dae("run", "--model", bundles["onnxruntime-cpu"], "--camera", 57)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == "error: cannot open camera 57 (no such camera index?)"


class FakeCamera:
    """Stands in for cv2.VideoCapture: produces numbered frames at a fixed rate; can fail once."""

    produced = 0

    def __init__(self, period_s=0.005, fail_after=None):
        self.period_s, self.fail_after, self.reads = period_s, fail_after, 0

    def isOpened(self):
        return True

    def read(self):
        time.sleep(self.period_s)
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            return False, None
        FakeCamera.produced += 1
        return True, np.full((8, 8, 3), FakeCamera.produced % 256, np.uint8)

    def release(self):
        pass


def test_slow_consumer_gets_newest_frame_and_drops_are_counted():
    FakeCamera.produced = 0
    src = LiveSource("fake", opener=lambda s: FakeCamera())
    seen = []
    for frame in src.frames():
        # the frame handed over is the newest one captured (at most one newer may have arrived since)
        assert frame.index >= FakeCamera.produced - 2
        seen.append(frame.index)
        time.sleep(0.05)  # a slow model: ~10 camera frames per inference
        if len(seen) == 5:
            break
    src.close()
    assert src.dropped >= 20
    assert seen == sorted(seen) and seen[-1] - seen[0] >= 20


def test_lost_stream_is_reopened():
    cams = [FakeCamera(fail_after=3), FakeCamera()]
    opened = []

    def opener(s):
        opened.append(s)
        return cams[min(len(opened) - 1, 1)]

    src = LiveSource("rtsp://line-3", opener=opener, backoff_s=0.01)
    got = []
    for frame in src.frames():
        got.append(frame.index)
        if len(got) == 6:
            break
    src.close()
    assert src.reconnects == 1 and len(opened) == 2


def test_stream_that_never_comes_back_errors():
    class Dead(FakeCamera):
        def read(self):
            return False, None

    src = LiveSource("rtsp://gone", opener=lambda s: Dead(), backoff_s=0.01, max_retries=2)
    with pytest.raises(SourceError, match="could not reopen"):
        list(src.frames())
    src.close()


def test_odd_frames_are_converted(bundles):
    """Gray, BGRA and 16-bit frames score exactly as the same picture given as 8-bit RGB."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    bgra = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    deep = rng.integers(0, 65536, (300, 17, 3), dtype=np.uint16)
    with load_bundle(bundles["onnxruntime-cpu"]) as art:
        cases = [(gray, np.repeat(gray[:, :, None], 3, axis=2)),
                 (bgra, np.ascontiguousarray(bgra[:, :, 2::-1])),
                 (deep, np.ascontiguousarray(np.round(deep / 257.0).astype(np.uint8)[:, :, ::-1]))]
        scores = []
        for frame, rgb in cases:
            got, expected = art.predict(frame, bgr=True).score, art.predict(rgb).score
            assert got == pytest.approx(expected, abs=1e-6)
            scores.append(got)
        assert len({round(s, 6) for s in scores}) == 3  # different pictures, different scores


def test_open_source_picks_the_right_class(tmp_path, video, tiny_dataset, monkeypatch):
    from diffusionad_edge.runtime import sources

    opened = []
    monkeypatch.setattr(sources, "LiveSource", lambda s: opened.append(s) or "live")
    for live in ("0", "rtsp://cam/1", "http://cam/mjpg", "videotestsrc ! appsink"):
        assert sources.open_source(live) == "live"
    assert opened == ["0", "rtsp://cam/1", "http://cam/mjpg", "videotestsrc ! appsink"]
    assert type(sources.open_source(str(video))) is sources.VideoFileSource
    folder = tiny_dataset.path / "test" / "good"
    assert type(sources.open_source(str(folder))) is sources.ImageFolderSource
    glob_src = sources.open_source(str(folder / "*.png"))
    assert type(glob_src) is sources.ImageFolderSource and len(glob_src.files) == len(list(folder.glob("*.png")))
    single = sources.open_source(str(tiny_dataset.test_samples[0].image_path))
    assert isinstance(single, sources.ImageFolderSource) and single.files == [tiny_dataset.test_samples[0].image_path]
    with pytest.raises(SourceError, match="video file not found"):
        sources.open_source(str(tmp_path / "missing.mp4"))


def test_fixed_batch_runner_pads_the_last_chunk(tiny_checkpoint, tiny_dataset, tmp_path):
    """A graph exported with batch 4 given 1, 3 and 6 images: padded chunks, the same results as batch 1."""
    from diffusionad_edge.export.targets import load_target

    profile = load_target("onnxruntime-cpu").to_dict()
    profile.update(name="ort-batch4", batch=4)
    toml = tmp_path / "ort-batch4.toml"
    toml.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in profile.items() if not isinstance(v, dict)
                              and v is not None) + "\n")
    res = export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target=str(toml), precision="fp32", out_dir=tmp_path / "b4",
                                      input_size=64), log=lambda m: None)
    assert res.metadata["input"]["batch"] == 4
    paths = [s.image_path for s in tiny_dataset.test_samples[:6]]
    with load_bundle(res.bundle) as b4, load_bundle(res.bundle) as one:
        images = np.stack([b4.preprocess(p) for p in paths])
        calls = []
        real = b4.runner.infer_impl
        b4.runner.infer_impl = lambda chunk: calls.append(chunk.shape[0]) or real(chunk)
        reference = [one.runner.infer(np.concatenate([images[i : i + 1]] * 4)) for i in range(6)]  # full chunks
        for n in (1, 3, 6):
            calls.clear()
            out = b4.runner.infer(images[:n])
            assert out.score.shape == (n,) and out.anomaly_map.shape == (n, 64, 64)
            assert calls == [4] * ((n + 3) // 4)  # always the graph's fixed batch
            for i in range(n):
                assert out.score[i] == pytest.approx(float(reference[i].score[0]), abs=1e-5)
                assert np.allclose(out.anomaly_map[i], reference[i].anomaly_map[0], atol=1e-5)


def test_open_bundle_on_a_checkpoint(tiny_checkpoint, tiny_dataset):
    """A .pt checkpoint opens as a PyTorch bundle: the model's scores, the held-out threshold."""
    from diffusionad_edge.models.checkpoint_io import load_model
    from diffusionad_edge.runtime.backends.torch import TorchRunner
    from diffusionad_edge.runtime.bundle import BundleError, open_bundle
    from diffusionad_edge.runtime.thresholds import normals_threshold

    model, payload = load_model(tiny_checkpoint)
    val = payload["validation"]
    path = tiny_dataset.test_samples[-1].image_path
    with open_bundle(tiny_checkpoint) as bundle:
        assert bundle.metadata["backend"] == "pytorch" and bundle.size == 64
        assert bundle.image_threshold == pytest.approx(normals_threshold(val["normal_scores"])[0])  # as dae export places it
        assert bundle.image_threshold > max(val["normal_scores"])  # never below a held-out normal score
        r = bundle.predict(path)
        expected = TorchRunner(model).infer(bundle.preprocess(path)[None]).score[0]
        assert r.score == pytest.approx(float(expected), abs=1e-6)
        assert r.is_anomalous == (r.score >= bundle.image_threshold)
    with pytest.raises(BundleError, match="needs a bundle"):
        open_bundle(tiny_checkpoint, backend="openvino")


def test_predict_folder_with_corrupt_file(bundles, tiny_dataset, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for s in tiny_dataset.test_samples[:3]:
        (folder / s.image_path.name.replace(".png", f"_{s.defect_type}.png")).write_bytes(s.image_path.read_bytes())
    from diffusionad_edge.runtime.thresholds import score_text

    (folder / "broken.png").write_bytes(b"not a png")
    res = dae("predict", folder, "--model", bundles["onnxruntime-cpu"], "--out", tmp_path / "out")
    assert res.returncode == 1
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(result["results"]) == 3 and [f["path"] for f in result["failed"]] == [str(folder / "broken.png")]
    assert len(list((tmp_path / "out" / "overlays").glob("*.png"))) == 3
    assert "broken.png" in res.stdout
    # Piped (not a terminal): one row per image with its full path, however long, and a plain summary.
    for r in result["results"]:
        (line,) = [l for l in res.stdout.splitlines() if l.startswith(r["path"])]
        assert r["decision"] in line and score_text(r["score"]) in line  # 3 significant digits: 1e-4 is not 0.0000
    assert "3 images scored" in res.stdout and "…" not in res.stdout
    res = dae("predict", folder / "*_good.png", "--model", bundles["onnxruntime-cpu"], "--json")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(l) for l in res.stdout.splitlines()]
    assert rows and all(r["decision"] in ("OK", "NG") for r in rows)


def test_openvino_requests_in_flight_give_the_same_results(bundles, video, tmp_path):
    """dae run --requests N: several frames in OpenVINO's asynchronous queue, same scores, same order."""
    from diffusionad_edge.runtime.live import RunOptions, run_stream

    scores = {}
    for n in (1, 3):
        events = []
        with load_bundle(bundles["openvino-cpu"], requests=n if n > 1 else None) as bundle:
            run_stream(bundle, str(video), RunOptions(requests=n), on_frame=events.append)
            if n > 1:
                assert bundle.runner.queue is not None and bundle.runner.requests == n
        scores[n] = [e["score"] for e in events]
    assert len(scores[1]) == 12 and scores[3] == pytest.approx(scores[1], abs=1e-5)
    res = dae("run", "--model", bundles["openvino-cpu"], "--source", video, "--requests", "2", "--no-show", "--max-frames", "5", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["frames"] == 5
    res = dae("run", "--model", bundles["onnxruntime-cpu"], "--source", video, "--requests", "2", "--no-show")
    assert res.returncode != 0 and "requests" in res.stderr
