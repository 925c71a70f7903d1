"""``dae run``: live (or file) inference with overlay, decisions and events."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from .common import console, out, plural, rounded


def run(
    model: Path = typer.Option(..., "--model", "-m", help="Bundle folder (any backend) or checkpoint (.pt, PyTorch)."),
    camera: Optional[int] = typer.Option(None, "--camera", help="Camera index (e.g. 0)."),
    source: Optional[str] = typer.Option(None, "--source", "-s", help="Video file, rtsp://... / http://... URL, "
                                         "GStreamer pipeline ('... ! appsink'), image folder or glob."),
    backend: Optional[str] = typer.Option(None, help="Override the bundle's backend."),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the overlay video here (.mp4); playable even after Ctrl-C."),
    save_frames: Optional[Path] = typer.Option(None, "--save-frames", help="Write NG frames (overlays) into this folder."),
    events: Optional[Path] = typer.Option(None, "--events", help="JSON lines: one per processed frame (time, score, decision, latencies)."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop after N processed frames."),
    threshold: Optional[float] = typer.Option(None, help="Override the bundle's image threshold."),
    pixel_threshold: Optional[float] = typer.Option(None, help="Override the bundle's pixel threshold (outline)."),
    requests: Optional[int] = typer.Option(None, min=1, help="OpenVINO bundles: frames in flight together in OpenVINO's "
                                           "asynchronous queue (more FPS on many-core CPUs, more latency). Default 1."),
    show: Optional[bool] = typer.Option(None, "--show/--no-show", help="Display a window (default: when a display exists)."),
    as_json: bool = typer.Option(False, "--json", help="Print the end-of-run summary as JSON on stdout (numbers rounded)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="Region of interest x,y,w,h in camera pixels, replacing the model's "
                                     "(a camera that was moved); the map is placed back at frame size."),
) -> None:
    """Run the detector on a camera or stream: overlay, OK/NG, events and an end-of-run summary.
    Exit code 1 when input was lost (unreadable files, a video that ended before its announced length)."""
    from ..data.roi import parse_roi
    from ..runtime.bundle import open_bundle
    from ..runtime.live import RunOptions, check_outputs, display_available, run_stream
    from ..runtime.sources import describe

    if (camera is None) == (source is None):
        raise ConfigError("give exactly one of --camera N or --source ...")
    src = str(camera) if camera is not None else str(source)
    new_roi = parse_roi(roi) if roi else None  # a malformed --roi fails before anything is opened
    show = display_available() if show is None else show
    opts = RunOptions(save_video=save, save_frames=save_frames, events=events, max_frames=max_frames, show=show,
                      image_threshold=threshold, pixel_threshold=pixel_threshold, requests=requests or 1)
    check_outputs(opts)  # before the model and the source are opened
    with open_bundle(model, backend, requests=requests if requests and requests > 1 else None) as bundle:
        bundle.set_roi(new_roi)
        console.print(f"running {model} ({bundle.metadata.get('backend')}, {bundle.metadata.get('precision')}) on {describe(src)}"
                      + ("" if show else " (headless)") + (f", {requests} requests in flight" if requests and requests > 1 else "")
                      + "; Ctrl-C to stop")
        status = _StatusLine() if console.is_terminal else None
        try:
            summary = run_stream(bundle, src, opts, on_frame=status.update if status else None)
        finally:
            if status:
                status.close()
    s = summary.to_dict()
    if as_json:
        print(json.dumps(rounded(s)))
    else:
        _print_summary(s)
    if s["unreadable"]:
        console.print(f"unreadable: {', '.join(s['unreadable'])}", soft_wrap=True, markup=False, highlight=False)
    for warning in s["warnings"]:
        console.print(f"warning: {warning}", soft_wrap=True, markup=False, highlight=False)
    if summary.incomplete:
        raise typer.Exit(1)


class _StatusLine:
    """One line on the terminal, rewritten in place (at most 5 times a second): frames, FPS, OK/NG
    counts and the last decision with its score."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.frames = self.ok = self.ng = 0
        self.width = 0

    def update(self, event: dict) -> None:
        self.frames += 1
        self.ng += event.get("decision") == "NG"
        self.ok += event.get("decision") == "OK"
        now = time.perf_counter()
        if now - self.last_draw < 0.2:
            return
        self.last_draw = now
        fps = self.frames / max(now - self.start, 1e-9)
        line = (f"{self.frames} frames  {fps:5.1f} FPS  OK {self.ok}  NG {self.ng}  "
                f"last: {event.get('decision') or '--'} {event['score']:.3f}")
        self._write(line)

    def _write(self, line: str) -> None:
        line = line[: max(console.width - 1, 20)]  # a wrapped line could not be rewritten in place
        stream = console.file
        stream.write("\r" + line.ljust(self.width))
        stream.flush()
        self.width = len(line)

    def close(self) -> None:
        if self.width:
            console.file.write("\r" + " " * self.width + "\r")
            console.file.flush()


def _print_summary(s: dict) -> None:
    """The end of a run in a few lines a person reads."""
    lat = s["latency_ms"]
    ok = s["frames"] - s["ng"]
    out.print(f"{plural(s['frames'], 'frame')}: {ok} OK, {s['ng']} NG"
              + (f"; {s['dropped']} dropped" if s["dropped"] else "") + (f"; {plural(s['reconnects'], 'reconnect')}" if s["reconnects"] else "")
              + (" (stopped by Ctrl-C)" if s["interrupted"] else ""))
    out.print(f"speed: {s['end_to_end_fps']:.1f} FPS end to end, {s['model_fps']:.1f} FPS model only, in {s['wall_s']:.1f} s")
    if lat:
        out.print("latency p50 / p95 ms: " + ", ".join(f"{k} {v['p50']:.1f} / {v['p95']:.1f}" for k, v in lat.items()))
