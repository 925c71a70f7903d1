"""Make README's screenshot of the review loop: a real ``dae run --http`` on a video of test images,
the two newest NG frames reviewed "confirmed defect" through the page's endpoint (what its buttons
send), and the page as headless Chromium shows it then.

    python docs/make_review_screenshot.py BUNDLE DATASET_CATEGORY_FOLDER --out docs/review-loop.png

BUNDLE: any bundle (README's came from ``dae demo``'s model, exported to OpenVINO INT8);
DATASET_CATEGORY_FOLDER: an MVTec-layout category whose ``test/`` images make the video (README's:
the built-in generated dataset, so the picture holds no third-party image). Needs ``chromium``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np

TOKEN = "screenshot"


def make_video(category: Path, path: Path, size: int = 256, repeat: int = 2, rounds: int = 6) -> None:
    """The test images, good and defective interleaved, each held ``repeat`` frames, ``rounds`` times."""
    groups = {d.name: sorted(d.glob("*.png")) for d in sorted((category / "test").iterdir()) if d.is_dir()}
    if not groups:
        sys.exit(f"no test images under {category / 'test'}")
    order = [v[i] for i in range(max(len(v) for v in groups.values())) for v in groups.values() if i < len(v)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (size, size))
    for _ in range(rounds):
        for p in order:
            frame = cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), (size, size), interpolation=cv2.INTER_AREA)
            for _ in range(repeat):
                writer.write(frame)
    writer.release()


def get(url: str, timeout: float = 2.0) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=timeout).read())


def review(base: str, thumb: int, verdict: str) -> dict:
    req = urllib.request.Request(f"{base}review?token={TOKEN}", data=json.dumps({"thumbnail": thumb, "verdict": verdict}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("category", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/review-loop.png"))
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("chromium is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "line.mkv"
        make_video(args.category, video)
        proc = subprocess.Popen([sys.executable, "-m", "diffusionad_edge.cli.main", "run", "--model", str(args.bundle), "--source",
                                 str(video), "--no-show", "--http", f":{port}", "--http-token", TOKEN,
                                 "--events", str(work / "events.jsonl")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 300
            stats: dict = {}
            while time.monotonic() < deadline:  # until a few NG thumbnails are there
                if proc.poll() is not None:
                    sys.exit(f"dae run ended early: {proc.stderr.read()}")
                try:
                    stats = get(f"{base}stats?token={TOKEN}")
                except (urllib.error.URLError, OSError):
                    stats = {}
                if len(stats.get("ng_thumbnails", [])) >= 4:
                    break
                time.sleep(0.5)
            thumbs = stats["ng_thumbnails"]  # newest first: these two stay in view
            print(review(base, thumbs[0]["id"], "defect"))
            print(review(base, thumbs[1]["id"], "defect"))
            shot = work / "page.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--hide-scrollbars", "--window-size=1100,1150",
                            "--virtual-time-budget=4000", f"--screenshot={shot}", f"{base}?token={TOKEN}"],
                           check=True, capture_output=True, timeout=120)
            image = cv2.imread(str(shot))
            if image is None or not np.any(image):
                sys.exit("chromium wrote no screenshot")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, args.out)
            print(f"screenshot: {args.out}")
        finally:
            proc.terminate()
            proc.communicate(timeout=60)


if __name__ == "__main__":
    main()
