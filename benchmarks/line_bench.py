"""The README's "On the line" numbers: what the live view and MQTT cost `dae run`, and four video
sources against one.

    python benchmarks/line_bench.py BUNDLE [--frames 300] [--rounds 5] [--out line_bench.json]

Runs `dae run` on a generated 320x240 video (frames decoded as fast as they come, no camera pacing):
1. plain (`--no-show`), 2. with `--http` (one MJPEG client reading the stream, as a browser) and
`--mqtt` to a local mosquitto (QoS 1), 3. four copies of the video as four sources, 4. the same with
live view and MQTT. The four runs are repeated ``--rounds`` times, interleaved, so that a change in
the machine's load hits every configuration alike. Prints one JSON object: per run end-to-end FPS,
model-only FPS (1000 / mean inference ms of that run), per-camera FPS and latency; per
configuration the medians over rounds, with two ratios: end-to-end over model-only of the same
runs, and end-to-end over the model-only FPS of the plain runs (no live view, no MQTT, same
number of sources), which also counts what the live view and MQTT take from inference itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_video(path: Path, n: int) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 240))
    rng = np.random.default_rng(0)
    for i in range(n):
        f = np.full((240, 320, 3), 150, np.uint8)
        f += rng.integers(0, 8, f.shape, dtype=np.uint8)
        if i % 5 == 0:
            cv2.circle(f, (160, 120), 20, (20, 20, 20), -1)
        w.write(f)
    w.release()
    return path


def watch(url: str, stop: threading.Event) -> None:
    """Read the MJPEG stream as a browser does, until ``stop``."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                while not stop.is_set() and r.read(65536):
                    pass
        except OSError:
            time.sleep(0.05)


def run(bundle: str, sources: list[Path], line: bool, broker_port: int | None) -> dict:
    args = [sys.executable, "-m", "diffusionad_edge.cli.main", "run", "--model", bundle, "--no-show", "--json"]
    for s in sources:
        args += ["--source", str(s)]
    stop = threading.Event()
    watcher = None
    if line:
        port = free_port()
        args += ["--http", f"127.0.0.1:{port}", "--mqtt", f"mqtt://127.0.0.1:{broker_port}/bench"]
        watcher = threading.Thread(target=watch, args=(f"http://127.0.0.1:{port}/stream.mjpg", stop), daemon=True)
        watcher.start()
    res = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    stop.set()
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    s = json.loads(res.stdout)
    return {"sources": len(sources), "live_view_and_mqtt": line, "frames": s["frames"], "end_to_end_fps": s["end_to_end_fps"],
            "model_fps": s["model_fps"], "latency_ms": s["latency_ms"],
            "cameras": {k: {"fps": v["fps"], "latency_p50_ms": v.get("latency_ms", {}).get("p50")} for k, v in s["cameras"].items()},
            **({"mqtt": s["mqtt"]} if "mqtt" in s else {})}


def summarise(rows: list[dict]) -> list[dict]:
    """Medians per configuration over the rounds, and the two ratios of the module docstring."""
    out = []
    for n, line in ((1, False), (1, True), (4, False), (4, True)):
        mine = [r for r in rows if r["sources"] == n and r["live_view_and_mqtt"] == line]
        plain = [r for r in rows if r["sources"] == n and not r["live_view_and_mqtt"]]
        e2e = float(np.median([r["end_to_end_fps"] for r in mine]))
        model = float(np.median([r["model_fps"] for r in mine]))
        plain_model = float(np.median([r["model_fps"] for r in plain]))
        out.append({"sources": n, "live_view_and_mqtt": line, "end_to_end_fps": e2e, "model_fps": model,
                    "end_to_end_over_model_same_runs": float(np.median([r["end_to_end_fps"] / r["model_fps"] for r in mine])),
                    "end_to_end_over_plain_model": e2e / plain_model,
                    "end_to_end_fps_all": [round(r["end_to_end_fps"], 1) for r in mine]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=1, help="repeat the four runs, interleaved; medians are reported")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "line.mp4", a.frames)
        port = free_port()
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        rows = []
        try:
            for r in range(a.rounds):
                for n, line in ((1, False), (1, True), (4, False), (4, True)):
                    rows.append({"round": r, **run(a.bundle, [video] * n, line, port)})
                    print(f"round {r}: {n} source(s), live view + MQTT {line}: {rows[-1]['end_to_end_fps']:.1f} FPS "
                          f"end to end, {rows[-1]['model_fps']:.1f} model-only", file=sys.stderr, flush=True)
        finally:
            broker.terminate()
            broker.wait()
    out = {"bundle": a.bundle, "frames_per_source": a.frames, "rounds": a.rounds, "rows": rows, "summary": summarise(rows)}
    text = json.dumps(out, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
