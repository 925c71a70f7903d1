"""On the line: dae serve over real HTTP, dae run publishing to a real mosquitto broker, the live view
in a real headless chromium, several sources per device."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from diffusionad_edge.runtime.bundle import load_bundle
from diffusionad_edge.runtime.line.livestate import LiveState
from diffusionad_edge.runtime.line.mqtt import MqttOptions, MqttPublisher
from diffusionad_edge.runtime.line.webserver import start_server
from diffusionad_edge.runtime.live import RunOptions, run_stream
from diffusionad_edge.runtime.sources import Frame
from tests.runtime.linefix import Broker, Chromium, Subscriber, free_port
from tests.runtime.videofix import write_plate_video

ARTEFACTS = Path(os.environ.get("DAE_TEST_ARTEFACTS", "/tmp/dae-test-artefacts"))


def dae(*args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def dae_bg(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def one_error_line(res, *fragments):
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for f in fragments:
        assert f in errors[0], errors[0]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_plate_video(tmp_path_factory.mktemp("video") / "line.mp4", 12)


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# -- dae serve ------------------------------------------------------------------------------------

def test_serve_predict_good_bad_oversized_concurrent(bundle_dir, tmp_path):
    port = free_port()
    proc = dae_bg("serve", "--model", bundle_dir, "--http", f":{port}", "--max-body-mb", "0.05")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health", proc=proc)
        ok, png = cv2.imencode(".png", np.full((80, 96, 3), 150, np.uint8))
        status, reply = post(base + "/predict", png.tobytes())
        assert status == 200, reply
        assert {"score", "normalised_score", "decision", "thresholds", "latency_ms"} <= set(reply)
        assert reply["decision"] == ("NG" if reply["score"] >= reply["thresholds"]["image"] else "OK")
        assert reply["width"] == 96 and reply["latency_ms"]["inference"] > 0
        # the same as the library gives for the same image
        assert reply["score"] == pytest.approx(load_bundle(bundle_dir).predict(np.full((80, 96, 3), 150, np.uint8)).score, abs=1e-5)
        # with the overlay, as a base64 PNG that decodes to the image's size
        import base64

        status, reply = post(base + "/predict?overlay=1", png.tobytes())
        overlay = cv2.imdecode(np.frombuffer(base64.b64decode(reply["overlay_png"]), np.uint8), cv2.IMREAD_COLOR)
        assert status == 200 and overlay.shape == (80, 96, 3)
        # an unreadable image: one JSON error
        status, reply = post(base + "/predict", b"this is not an image")
        assert status == 400 and reply["error"].startswith("unreadable image")
        # a body over the limit is refused without being read
        status, reply = post(base + "/predict", b"\0" * 100_000)
        assert status == 413 and "over the limit" in reply["error"]
        # concurrent requests: all answered, each with its own request number and the same score
        results: list = []

        def one():
            results.append(post(base + "/predict", png.tobytes()))

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [s for s, _ in results] == [200] * 12
        assert len({r["request"] for _, r in results}) == 12 and len({r["score"] for _, r in results}) == 1
        stats = json.loads(urllib.request.urlopen(base + "/stats").read())
        # every answer is counted by status: the 14 images, the errors and the GET /health of wait_http
        assert stats["frames"] == 14 and stats["requests"]["by_status"] == {"200": 15, "400": 1, "413": 1}
        metrics = urllib.request.urlopen(base + "/metrics").read().decode()
        assert 'dae_frames_total{camera="predict"} 14' in metrics and 'dae_requests_total{code="413"} 1' in metrics
        # the port is taken: a second server says so in one line
        one_error_line(dae("serve", "--model", bundle_dir, "--http", f":{port}"), f"cannot listen on 127.0.0.1:{port}", "already in use")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "served 14 images" in err, err  # SIGTERM: a clean stop, exit code 128 + 15


def test_http_token_and_exposed_warning(bundle_dir):
    port = free_port()
    proc = dae_bg("serve", "--model", bundle_dir, "--http", f"0.0.0.0:{port}")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "warning: the web server listens on all interfaces" in err
    port = free_port()
    proc = dae_bg("serve", "--model", bundle_dir, "--http", f"0.0.0.0:{port}", env={**os.environ, "DAE_HTTP_TOKEN": "s3cret"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health", proc=proc)
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(base + "/stats")
        assert exc.value.code == 401
        assert urllib.request.urlopen(base + "/stats?token=s3cret").status == 200
        req = urllib.request.Request(base + "/metrics", headers={"Authorization": "Bearer s3cret"})
        assert urllib.request.urlopen(req).status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "warning" not in err


# -- MQTT -----------------------------------------------------------------------------------------

@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker")
    yield b
    b.stop()


def test_run_publishes_every_decision_once_in_order_with_status(bundle_dir, video, broker, tmp_path):
    sub = Subscriber(broker.port, "plant/line4/#")
    try:
        events = tmp_path / "ev.jsonl"
        res = dae("run", "--model", bundle_dir, "--source", video, "--mqtt", f"mqtt://127.0.0.1:{broker.port}/plant/line4",
                  "--events", events, "--no-show", "--json")
        assert res.returncode == 0, res.stderr
        lines = [json.loads(l) for l in events.read_text().splitlines()]
        assert sub.wait_for(lambda ms: sum("/events/" in t for t, _, _ in ms) >= len(lines))
        time.sleep(0.3)  # nothing more arrives
        got = sub.events()
        assert [e["frame"] for e in got] == [e["frame"] for e in lines] == list(range(12))  # each once, in order
        assert [(e["decision"], e["score"], e["camera"]) for e in got] == [(e["decision"], e["score"], "cam0") for e in lines]
        statuses = [m for t, m, _ in sub.messages if t == "plant/line4/status"]
        assert statuses[0]["state"] == "online" and statuses[-1]["state"] == "offline" and statuses[-1]["reason"] == "stopped"
        assert statuses[0]["model"] == Path(bundle_dir).name and statuses[0]["version"] and "image" in statuses[0]["thresholds"]
        summary = json.loads(res.stdout)
        assert summary["mqtt"]["published"] == 12 and summary["mqtt"]["dropped"] == 0
    finally:
        sub.close()
    # the status is retained: a client that subscribes later gets it at once
    late = Subscriber(broker.port, "plant/line4/status")
    try:
        assert late.wait_for(lambda ms: ms and ms[0][2] and ms[0][1]["state"] == "offline", timeout=5)
    finally:
        late.close()


def test_killed_process_leaves_last_will(bundle_dir, broker, tmp_path):
    long_video = write_plate_video(tmp_path / "long.mp4", 3000)
    sub = Subscriber(broker.port, "dae/status")
    proc = dae_bg("run", "--model", bundle_dir, "--source", long_video, "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--no-show")
    try:
        assert sub.wait_for(lambda ms: any(m["state"] == "online" for _, m, _ in ms), timeout=60), proc.stderr
        proc.kill()  # no clean stop: the broker publishes the last will
        proc.wait(timeout=10)
        assert sub.wait_for(lambda ms: ms[-1][1]["state"] == "offline", timeout=20)
        assert sub.messages[-1][1]["reason"] == "connection lost"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        sub.close()


def test_broker_restart_messages_arrive_or_are_counted(broker):
    """The broker goes away mid-run and comes back: what was produced meanwhile is delivered (up to the
    queue's bound) or counted as dropped; nothing is lost uncounted, nothing arrives twice or out of order."""
    sub = Subscriber(broker.port, "t/events/#", client_id="line-test-subscriber")
    pub = MqttPublisher(MqttOptions(url=f"mqtt://127.0.0.1:{broker.port}/t", qos=1, queue_size=10, max_backoff_s=2, drain_s=15),
                        {"model": "test"})
    pub.start()
    try:
        n = 0

        def produce(k):
            nonlocal n
            for _ in range(k):
                pub.publish_event({"frame": n, "camera": "cam0"})
                n += 1
                time.sleep(0.01)

        produce(20)
        assert sub.wait_for(lambda ms: len(ms) >= 20)
        broker.stop()
        deadline = time.monotonic() + 10
        while pub.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pub.connected.is_set()
        produce(30)  # the broker is away: 10 kept, 20 dropped
        assert pub.stats()["dropped"] == 20
        broker.start()
        assert pub.connected.wait(20)
        deadline = time.monotonic() + 20
        while pub.stats()["queued"] and time.monotonic() < deadline:  # the 10 kept go out first
            time.sleep(0.05)
        produce(20)
        pub.close()
        assert sub.wait_for(lambda ms: len(ms) >= n - pub.dropped, timeout=20)
        time.sleep(0.5)
        frames = [e["frame"] for e in sub.events()]
        assert frames == sorted(set(frames))  # in order, each once
        assert len(frames) + pub.dropped == n == 70 and pub.published == len(frames)
        assert pub.dropped == 20 and frames[20:30] == list(range(40, 50))  # the oldest were dropped, the newest kept
    finally:
        sub.close()


def test_unreachable_broker_at_start(bundle_dir, video):
    port = free_port()  # nothing listens there
    res = dae("run", "--model", bundle_dir, "--source", video, "--mqtt", f"mqtt://127.0.0.1:{port}/x", "--mqtt-on-fail", "exit", "--no-show")
    one_error_line(res, f"cannot reach MQTT broker 127.0.0.1:{port}", "refused")
    res = dae("run", "--model", bundle_dir, "--source", video, "--mqtt", f"mqtt://127.0.0.1:{port}/x", "--no-show", "--json")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert len([l for l in res.stderr.splitlines() if l.startswith("warning: cannot reach MQTT broker")]) == 1, res.stderr
    summary = json.loads(res.stdout)
    assert summary["mqtt"]["published"] == 0 and summary["mqtt"]["dropped"] == 12  # every decision counted


# -- the live view in a browser -------------------------------------------------------------------

class Conveyor:
    """Stands in for a camera: OK parts until told to show NG ones (a marker moves, so frames differ)."""

    live = True
    fps = 20.0

    def __init__(self, ok: np.ndarray, ng: np.ndarray):
        self.ok, self.ng = ok, ng
        self.show_ng = threading.Event()
        self.stopped = False
        self.dropped = self.reconnects = 0
        self.unreadable: list = []

    @staticmethod
    def marked(img: np.ndarray, i: int) -> np.ndarray:
        out = img.copy()
        out[0, i % img.shape[1]] = out[0, i % img.shape[1]] + 1  # one pixel one level brighter
        return out

    def frames(self):
        i = 0
        while not self.stopped:
            yield Frame(i, self.marked(self.ng if self.show_ng.is_set() else self.ok, i), time.monotonic())
            i += 1
            time.sleep(0.05)

    def close(self) -> None:
        self.stopped = True


def test_live_view_in_headless_chromium(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir)
    ok, ng = np.full((240, 320, 3), 150, np.uint8), np.full((240, 320, 3), 255, np.uint8)
    ok_scores = [bundle.predict(Conveyor.marked(ok, i), bgr=True).score for i in range(320)]
    ng_scores = [bundle.predict(Conveyor.marked(ng, i), bgr=True).score for i in range(320)]
    assert max(ok_scores) < min(ng_scores), "the tiny model does not tell these two images apart: pick others"
    threshold = (max(ok_scores) + min(ng_scores)) / 2
    # The browser first: without chromium the test skips here, before a server or a frame thread
    # exists (they used to be started first and, left running, kept the test run from ever exiting).
    browser = Chromium(tmp_path / "chromium")
    state = LiveState({"model": "tiny", "backend": "onnxruntime"})
    conveyor = Conveyor(ok, ng)
    server = runner = None
    done: dict = {}
    try:
        server = start_server(f"127.0.0.1:{free_port()}", state, token="t0k")
        runner = threading.Thread(target=lambda: done.setdefault("summary", run_stream(
            bundle, "conveyor", RunOptions(image_threshold=threshold), src=conveyor, state=state)))
        runner.start()
        browser.goto(f"{server.url}?token=t0k")
        assert browser.wait_js("document.getElementById('decision-cam0') && document.getElementById('decision-cam0').textContent === 'OK'")
        frame_hash = """(() => { const img = document.getElementById('stream-cam0');
            if (!img.naturalWidth) return null;
            const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data;
            let h = 0; for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) >>> 0; return [c.width, c.height, h]; })()"""
        first = browser.wait_js(frame_hash)
        assert first and first[:2] == [320, 240]
        assert browser.wait_js(f"(() => {{ const v = {frame_hash}; return v && v[2] !== {first[2]}; }})()", timeout=10), "the MJPEG image does not update"
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(ARTEFACTS / "live_view_ok.png")
        conveyor.show_ng.set()
        assert browser.wait_js("document.getElementById('decision-cam0').textContent === 'NG'")
        assert browser.wait_js("document.querySelectorAll('#thumbs img').length > 0 && document.querySelector('#thumbs img').naturalWidth > 0")
        shot = browser.screenshot(ARTEFACTS / "live_view_ng.png")
        h, w = cv2.imread(str(shot)).shape[:2]
        assert h > 400 and w > 800  # the window, not an empty page
        stats = json.loads(urllib.request.urlopen(server.url + "stats?token=t0k").read())
        assert stats["cameras"]["cam0"]["ng"] > 0 and stats["cameras"]["cam0"]["ok"] > 0 and stats["fps"] > 0
    finally:
        browser.close()
        conveyor.close()
        if runner is not None:
            runner.join(timeout=30)
        if server is not None:
            server.close()
    summary = done["summary"]
    assert summary.frames >= stats["frames"] > 0 and not summary.incomplete


# -- several sources ------------------------------------------------------------------------------

def test_several_sources_batched_with_per_camera_counts(bundle_dir, video, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"p{i}.png"), np.full((64, 64, 3), 100 + 10 * i, np.uint8))
    events = tmp_path / "ev.jsonl"
    res = dae("run", "--model", bundle_dir, "--source", video, "--source", folder, "--events", events, "--save", tmp_path / "out.mp4",
              "--no-show", "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["frames"] == 17 and s["cameras"]["cam0"]["frames"] == 12 and s["cameras"]["cam1"]["frames"] == 5
    lines = [json.loads(l) for l in events.read_text().splitlines()]
    assert [e["source_index"] for e in lines if e["camera"] == "cam0"] == list(range(12))  # files: nothing skipped, in order
    assert [Path(e["path"]).name for e in lines if e["camera"] == "cam1"] == [f"p{i}.png" for i in range(5)]
    for name, n in (("cam0", 12), ("cam1", 5)):  # one video per camera
        assert int(cv2.VideoCapture(str(tmp_path / f"out-{name}.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == n


def test_sources_file_failing_camera_and_malformed_file(bundle_dir, video, tmp_path):
    good = tmp_path / "cams.toml"
    good.write_text(f'[[camera]]\nname = "top"\nsource = "{video}"\n\n[[camera]]\nname = "side"\nsource = 57\n')
    # a live camera is retried for ever: the run ends at --max-frames (or Ctrl-C)
    res = dae("run", "--model", bundle_dir, "--sources", good, "--no-show", "--json", "--max-frames", 12)
    assert "Traceback" not in res.stderr and res.returncode == 1, res.stderr  # a camera failed: input was lost
    s = json.loads(res.stdout)
    assert s["cameras"]["top"]["frames"] == 12 and s["cameras"]["side"]["frames"] == 0 and s["cameras"]["side"]["failures"] >= 1
    warnings = [l for l in res.stderr.splitlines() if l.startswith("warning: camera side (")]
    assert re.search(r"warning: camera side failed \d+ time\(s\)", res.stderr)  # and the summary says so
    assert len(warnings) == 1 and "cannot open camera 57" in warnings[0] and "retrying" in warnings[0]  # one line per outage
    bad = tmp_path / "bad.toml"
    bad.write_text('[[camera]]\nname = "top"\nsource = \n')
    one_error_line(dae("run", "--model", bundle_dir, "--sources", bad), f"sources file {bad} is not valid TOML")
    bad.write_text('[[camera]]\nname = "top"\nsource = "a.mp4"\n[[camera]]\nname = "top"\nsource = "b.mp4"\n')
    one_error_line(dae("run", "--model", bundle_dir, "--sources", bad), "camera name 'top' is used twice")
    bad.write_text('[[camera]]\nname = "top/left"\nsource = "a.mp4"\n')
    one_error_line(dae("run", "--model", bundle_dir, "--sources", bad), "name must be")


def test_run_http_port_in_use(bundle_dir, video):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        one_error_line(dae("run", "--model", bundle_dir, "--source", video, "--http", f":{port}", "--no-show"),
                       f"cannot listen on 127.0.0.1:{port}: address already in use")
