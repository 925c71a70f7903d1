"""Review on the line: the live page's "good part" / "confirmed defect" buttons save the original
frame and its sidecar over real HTTP (token required), refuse what they must, count in /stats,
/metrics and the MQTT status; a real headless chromium clicks them."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from diffusionad_edge.runtime.bundle import load_bundle
from diffusionad_edge.runtime.line.livestate import LiveState
from diffusionad_edge.runtime.line.reviewing import line_review
from diffusionad_edge.runtime.line.webserver import start_server
from diffusionad_edge.runtime.live import RunOptions, run_stream
from diffusionad_edge.runtime.review import read_review
from tests.runtime.linefix import Broker, Chromium, Subscriber, free_port
from tests.runtime.test_line import ARTEFACTS, Conveyor, dae, dae_bg, one_error_line, post, wait_http
from tests.runtime.videofix import write_plate_video

TOKEN = "t0k"


@pytest.fixture(scope="module")
def ok_ng(bundle_dir):
    """Two frames the tiny bundle tells apart, and a threshold between them."""
    bundle = load_bundle(bundle_dir)
    ok, ng = np.full((240, 320, 3), 150, np.uint8), np.full((240, 320, 3), 255, np.uint8)
    ok_scores = [bundle.predict(Conveyor.marked(ok, i), bgr=True).score for i in range(320)]
    ng_scores = [bundle.predict(Conveyor.marked(ng, i), bgr=True).score for i in range(320)]
    assert max(ok_scores) < min(ng_scores), "the tiny model does not tell these two images apart: pick others"
    return ok, ng, (max(ok_scores) + min(ng_scores)) / 2


class _LiveRun:
    """``run_stream`` on a :class:`Conveyor` with the live view and review on, in a thread."""

    def __init__(self, bundle_dir: Path, ok_ng, review_dir: Path):
        ok, ng, self.threshold = ok_ng
        self.bundle = load_bundle(bundle_dir)
        self.bundle.override_thresholds(self.threshold, None)
        self.review = line_review(review_dir, self.bundle, bundle_dir)
        self.state = LiveState({"model": "tiny", "backend": "onnxruntime"}, hold_frames=True)
        self.conveyor = Conveyor(ok, ng)
        self.server = start_server(f"127.0.0.1:{free_port()}", self.state, token=TOKEN, review=self.review)
        self.done: dict = {}
        self.thread = threading.Thread(target=lambda: self.done.setdefault("summary", run_stream(
            self.bundle, "conveyor", RunOptions(), src=self.conveyor, state=self.state)))
        self.thread.start()

    def stats(self) -> dict:
        return json.loads(urllib.request.urlopen(f"{self.server.url}stats?token={TOKEN}").read())

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.stats()
            if predicate(stats):
                return stats
            time.sleep(0.1)
        raise AssertionError(f"not reached in {timeout} s: {self.stats()}")

    def close(self) -> None:
        self.conveyor.close()
        self.thread.join(timeout=30)
        self.server.close()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_review_buttons_over_http_save_the_original_frame(bundle_dir, ok_ng, tmp_path):
    review_dir = tmp_path / "review"
    run = _LiveRun(bundle_dir, ok_ng, review_dir)
    try:
        url = run.server.url + "review"
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        run.wait_for(lambda s: s["cameras"].get("cam0", {}).get("ok", 0) > 0)
        # an OK frame that looked close: "save current frame as good part"
        status, reply = post(url, json.dumps({"camera": "cam0", "verdict": "good"}).encode(), auth)
        assert status == 200 and reply["verdict"] == "good", reply
        current = cv2.imread(reply["saved"], cv2.IMREAD_UNCHANGED)
        assert current.shape == ok_ng[0].shape and np.count_nonzero((current != ok_ng[0]).any(axis=2)) == 1  # the frame (+ marker), losslessly
        run.conveyor.show_ng.set()
        stats = run.wait_for(lambda s: s["ng_thumbnails"])
        thumb = stats["ng_thumbnails"][0]
        before = _files(review_dir)
        # without the token: refused, nothing written
        status, reply = post(url, json.dumps({"thumbnail": thumb["id"], "verdict": "good"}).encode(), {"Content-Type": "application/json"})
        assert status == 401 and _files(review_dir) == before
        # with it: the original frame (not the overlay) and its sidecar
        status, reply = post(url, json.dumps({"thumbnail": thumb["id"], "verdict": "good"}).encode(), auth)
        assert status == 200, reply
        saved = Path(reply["saved"])
        assert saved.parent == review_dir / "good" and saved.name.endswith(f"-cam0-{thumb['frame']:06d}.png")
        pixels = cv2.imread(str(saved), cv2.IMREAD_UNCHANGED)  # the NG part itself, not its overlay
        assert pixels.shape == ok_ng[1].shape and np.count_nonzero((pixels != ok_ng[1]).any(axis=2)) <= 1
        side = json.loads(saved.with_suffix(".json").read_text())
        assert side["verdict"] == "good" and side["decision"] == "NG" and side["camera"] == "cam0" and side["frame"] == thumb["frame"]
        assert side["score"] == pytest.approx(thumb["score"], abs=1e-5) and side["score"] > run.threshold
        assert side["thresholds"]["image"] == pytest.approx(run.threshold) and side["bundle"].startswith(Path(bundle_dir).name + "@")
        written = _files(review_dir)
        assert len(written) == len(before) + 2
        # a second verdict on the same frame (a double click, another operator): refused, nothing written
        status, reply = post(url, json.dumps({"thumbnail": thumb["id"], "verdict": "defect"}).encode(), auth)
        assert status == 409 and "already reviewed as good" in reply["error"] and _files(review_dir) == written
        # a frame no longer held, an unknown camera, a wrong verdict, not JSON: a clear message, nothing written
        status, reply = post(url, json.dumps({"thumbnail": 10**6, "verdict": "good"}).encode(), auth)
        assert status == 410 and "no longer held" in reply["error"] and "nothing written" in reply["error"]
        status, reply = post(url, json.dumps({"camera": "nope", "verdict": "good"}).encode(), auth)
        assert status == 404 and "no camera 'nope'" in reply["error"]
        newer = run.wait_for(lambda s: s["ng_thumbnails"][0]["id"] > thumb["id"])["ng_thumbnails"][0]
        status, reply = post(url, json.dumps({"thumbnail": newer["id"], "verdict": "maybe"}).encode(), auth)
        assert status == 400 and "choose one of good, defect" in reply["error"]
        status, reply = post(url, b"{not json", auth)
        assert status == 400 and reply["error"].startswith("not JSON")
        assert _files(review_dir) == written
        # a confirmed defect
        status, reply = post(url, json.dumps({"thumbnail": newer["id"], "verdict": "defect"}).encode(), auth)
        assert status == 200 and Path(reply["saved"]).parent == review_dir / "defect"
        # counted in /stats and /metrics; the page sees the thumbnail as reviewed
        stats = run.stats()
        assert {k: stats["review"][k] for k in ("good", "defect", "refused")} == {"good": 2, "defect": 1, "refused": 4}
        assert next(t for t in stats["ng_thumbnails"] if t["id"] == thumb["id"])["reviewed"] == "good"
        metrics = urllib.request.urlopen(urllib.request.Request(run.server.url + "metrics", headers=auth)).read().decode()
        assert 'dae_reviewed_total{verdict="good"} 2' in metrics and 'dae_reviewed_total{verdict="defect"} 1' in metrics
        assert "dae_review_refused_total 4" in metrics
    finally:
        run.close()
    review = read_review(review_dir)  # what refit and --add-normals read back
    assert len(review.good) == 2 and len(review.defect) == 1 and not review.skipped


def test_review_off_and_held_frames_bounded(bundle_dir, ok_ng, tmp_path):
    """Without review the endpoint says so and no frame is held; with it, only the thumbnails' frames
    and each camera's newest are (memory stays bounded on a line that goes all NG)."""
    state = LiveState({"model": "tiny"})
    server = start_server(f"127.0.0.1:{free_port()}", state)
    try:
        status, reply = post(server.url + "review", b'{"camera": "cam0", "verdict": "good"}')
        assert status == 404 and "review is off" in reply["error"]
    finally:
        server.close()
    state = LiveState({"model": "tiny"}, thumbnails=3, hold_frames=True)
    overlay = np.zeros((24, 32, 3), np.uint8)
    ids = []
    for i in range(10):
        held = state.held_frame(np.full((24, 32, 3), i, np.uint8), True, "cam0", i, 0.9, "NG")
        ids.append(state.add_thumbnail("cam0", i, overlay, 0.9, held))
        state.record("cam0", {"decision": "NG", "frame": i}, held)
    assert [state.held_thumbnail(i) is not None for i in ids] == [False] * 7 + [True] * 3
    assert state.held_current("cam0").frame == 9
    assert LiveState({}).held_frame(overlay, True, "cam0", 0, 0.1, "OK") is None  # review off: nothing held


def test_cli_review_dir_checked_at_start(bundle_dir, tmp_path):
    video = write_plate_video(tmp_path / "line.mp4", 4)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    port = free_port()
    res = dae("run", "--model", bundle_dir, "--source", video, "--http", f":{port}", "--no-show", "--review-dir", blocker / "review")
    one_error_line(res, "review folder", "not writable")
    res = dae("run", "--model", bundle_dir, "--source", video, "--no-show", "--review-dir", tmp_path / "r")
    one_error_line(res, "--review-dir", "--http")
    folder = tmp_path / "parts"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    res = dae("run", "--model", bundle_dir, "--source", folder, "--http", f":{port}", "--no-show", "--review-dir", folder / "review")
    one_error_line(res, "review folder", "is inside the input")
    assert not (folder / "review").exists() and not (tmp_path / "r").exists()
    res = dae("serve", "--model", bundle_dir, "--http", f":{port}", "--review-dir", blocker / "review")
    one_error_line(res, "review folder", "not writable")


def test_serve_page_reviews_the_uploaded_image(bundle_dir, ok_ng, tmp_path):
    port = free_port()
    review_dir = tmp_path / "rev"
    proc = dae_bg("serve", "--model", bundle_dir, "--http", f":{port}", "--threshold", str(ok_ng[2]), "--review-dir", review_dir)
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_http(base + "health", proc=proc)
        image = Conveyor.marked(ok_ng[1], 7)
        ok, png = cv2.imencode(".png", image)
        status, reply = post(base + "predict", png.tobytes())
        assert status == 200 and reply["decision"] == "NG"
        stats = json.loads(urllib.request.urlopen(base + "stats").read())
        thumb = stats["ng_thumbnails"][0]
        status, reply = post(base + "review", json.dumps({"thumbnail": thumb["id"], "verdict": "defect"}).encode())
        assert status == 200, reply
        assert np.array_equal(cv2.imread(reply["saved"], cv2.IMREAD_UNCHANGED), image)  # the image as it was sent
        stats = json.loads(urllib.request.urlopen(base + "stats").read())
        assert stats["review"]["defect"] == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_mqtt_status_counts_reviews(bundle_dir, tmp_path):
    broker = Broker(tmp_path / "broker")
    sub = Subscriber(broker.port, "line9/status")
    try:
        video = write_plate_video(tmp_path / "line.mp4", 6)
        res = dae("run", "--model", bundle_dir, "--source", video, "--no-show", "--http", f":{free_port()}",
                  "--mqtt", f"mqtt://127.0.0.1:{broker.port}/line9", "--events", tmp_path / "out" / "ev.jsonl")
        assert res.returncode == 0, res.stderr
        assert sub.wait_for(lambda ms: any(m["state"] == "online" for _, m, _ in ms))
        online = next(m for _, m, _ in sub.messages if m["state"] == "online")
        # the default review folder: beside the events; created by the first saved frame, so none here
        assert online["review"] == {"dir": str(tmp_path / "out" / "review"), "good": 0, "defect": 0, "refused": 0}
        assert not (tmp_path / "out" / "review").exists()
    finally:
        sub.close()
        broker.stop()


def test_review_in_headless_chromium(bundle_dir, ok_ng, tmp_path):
    browser = Chromium(tmp_path / "chromium")  # skips here without chromium, before anything runs
    review_dir = tmp_path / "review"
    run = None
    try:
        run = _LiveRun(bundle_dir, ok_ng, review_dir)
        browser.goto(f"{run.server.url}?token={TOKEN}")
        assert browser.wait_js("document.getElementById('decision-cam0') && document.getElementById('decision-cam0').textContent === 'OK'")
        run.conveyor.show_ng.set()
        assert browser.wait_js("document.querySelectorAll('#thumbs button.good').length > 0")
        thumb_id = browser.js("Number(document.querySelector('#thumbs button.good').dataset.thumb)")
        held = run.state.held_thumbnail(thumb_id)
        browser.js("document.querySelector('#thumbs button.good').click()")
        assert browser.wait_js("document.getElementById('review-msg').textContent.startsWith('saved as good part')")
        good = sorted((review_dir / "good").glob("*.png"))
        assert len(good) == 1 and good[0].name.endswith(f"-cam0-{held.frame:06d}.png")
        assert np.array_equal(cv2.imread(str(good[0]), cv2.IMREAD_UNCHANGED), held.image)
        assert json.loads(good[0].with_suffix(".json").read_text())["verdict"] == "good"
        assert browser.wait_js(f"(() => {{ const f = document.getElementById('thumb-{thumb_id}'); "
                               "return f && f.textContent.includes('reviewed: good part'); })()")
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(ARTEFACTS / "live_view_review.png")
        assert run.stats()["review"]["good"] == 1
    finally:
        browser.close()
        if run is not None:
            run.close()
