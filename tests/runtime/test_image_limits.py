"""Image sizes read from headers before anything is decoded: a decompression-bomb PNG is refused by
dae predict (one line naming the file), dae run and dae serve (413) without being decoded, so memory
stays bounded (issue 27)."""

from __future__ import annotations

import io
import json
import os
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

from diffusionad_edge.data.imagesize import ImageTooLarge, check_image_size, image_size
from diffusionad_edge.errors import DataError
from tests.runtime.bombs import write_png_bomb
from tests.runtime.linefix import free_port

MB = 1 << 20


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return write_png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


def _run_measured(*args, timeout=300) -> tuple[int, str, str, int]:
    """Run dae and measure its peak resident memory (VmHWM) by reading it just before it is reaped."""
    proc = subprocess.Popen([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pid = proc.pid
    out_chunks: list[str] = []
    err_chunks: list[str] = []

    def drain(stream, into):
        into.append(stream.read())

    readers = [threading.Thread(target=drain, args=(proc.stdout, out_chunks)), threading.Thread(target=drain, args=(proc.stderr, err_chunks))]
    for t in readers:
        t.start()
    try:
        # wait4 reaps the child and returns its resource usage: ru_maxrss is its peak resident set (KiB)
        deadline = time.monotonic() + timeout
        while True:
            wpid, status, usage = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                wpid, status, usage = os.wait4(pid, 0)
                break
            time.sleep(0.05)
    finally:
        for t in readers:
            t.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out_chunks[0], err_chunks[0], usage.ru_maxrss * 1024


def test_sizes_from_headers_of_every_format_opencv_writes():
    img = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".sr", ".hdr", ".jp2", ".pfm", ".pam"):
        im = img.astype(np.float32) / 255 if ext in (".hdr", ".pfm") else img[:, :, 0] if ext in (".pgm", ".pbm") else img
        ok, buf = cv2.imencode(ext, im)
        assert ok, ext
        assert image_size(buf.tobytes()) == (53, 37), ext
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert image_size(io.BytesIO(buf.tobytes())) == (53, 37)
    ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])  # lossless (VP8L)
    assert image_size(buf.tobytes()) == (53, 37)
    # not an image, or a header cut short: no size, and a checked read refuses it
    assert image_size(b"this is not an image") is None and image_size(b"\x89PNG\r\n\x1a\n\0\0") is None
    with pytest.raises(DataError, match="size must be readable"):
        check_image_size(b"\xff\xd8\xff", 10**6, "x.jpg")


def test_bomb_is_refused_from_its_header(bomb):
    assert bomb.stat().st_size < 1 * MB
    assert image_size(bomb) == (10_000, 10_000)
    with pytest.raises(ImageTooLarge, match=r"bomb.png is 10000x10000 pixels \(100.0 MP\), over the limit of 16.8 MP"):
        check_image_size(bomb, 4096 * 4096, str(bomb))


def test_predict_and_run_refuse_a_bomb_without_decoding_it(tiny_checkpoint, tiny_dataset, bomb, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    good = folder / "good.png"
    good.write_bytes(tiny_dataset.test_samples[0].image_path.read_bytes())
    code, out, err, small_rss = _run_measured("predict", good, "--model", tiny_checkpoint)
    assert code == 0, err
    (folder / "bomb.png").write_bytes(bomb.read_bytes())
    code, out, err, bomb_rss = _run_measured("predict", folder, "--model", tiny_checkpoint, "--json")
    assert code == 1 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "bomb.png" in line]
    assert len(lines) == 1 and "10000x10000 pixels" in lines[0] and "not decoded" in lines[0], err
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(good)]  # the other image is scored
    # decoding it would take 300 MB (and more for the copies); reading its header takes nothing
    assert bomb_rss < small_rss + 100 * MB, (bomb_rss / MB, small_rss / MB)
    # dae run on the folder: the same image skipped and named, the run goes on (exit 1: input was lost)
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "run", "--model", str(tiny_checkpoint), "--source",
                          str(folder), "--no-show", "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and json.loads(res.stdout)["frames"] == 1, res.stderr
    assert json.loads(res.stdout)["unreadable"] == [str(folder / "bomb.png")]
    assert "10000x10000 pixels" in res.stderr
    # the limit is an option: a lower one refuses the small image too
    code, out, err, _ = _run_measured("predict", good, "--model", tiny_checkpoint, "--max-image-mp", "0.001")
    assert code == 1 and "over the limit of 0.0 MP (--max-image-mp)" in err, err


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak memory from /proc")
def test_serve_answers_413_to_a_bomb_and_its_memory_stays_flat(tiny_checkpoint, tiny_dataset, bomb):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "diffusionad_edge.cli.main", "serve", "--model", str(tiny_checkpoint),
                             "--http", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "dae serve did not start"
            try:
                urllib.request.urlopen(base + "/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        good = tiny_dataset.test_samples[0].image_path.read_bytes()
        with urllib.request.urlopen(urllib.request.Request(base + "/predict", data=good, method="POST"), timeout=60) as r:
            assert r.status == 200
        before = _vm_hwm(proc.pid)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(base + "/predict", data=bomb.read_bytes(), method="POST"), timeout=60)
        assert info.value.code == 413
        reply = json.loads(info.value.read())
        assert "10000x10000 pixels" in reply["error"] and "not decoded" in reply["error"]
        after = _vm_hwm(proc.pid)
        assert after < before + 50 * MB, (before / MB, after / MB)  # decoding it would take 300 MB at least
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        assert 'dae_requests_total{code="413"} 1' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 143
