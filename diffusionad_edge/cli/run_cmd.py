"""``dae run``: live (or file) inference with overlay, decisions and events."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from ..interrupts import exit_code, signal_label, stop_signal
from ..runtime.thresholds import score_text
from .common import console, out, plural, rounded


def run(
    model: Path = typer.Option(..., "--model", "-m", help="Bundle folder (any backend) or checkpoint (.pt, PyTorch)."),
    camera: Optional[List[int]] = typer.Option(None, "--camera", help="Camera index (e.g. 0); repeat for several cameras."),
    source: Optional[List[str]] = typer.Option(None, "--source", "-s", help="Video file, rtsp://... / http://... URL, "
                                               "GStreamer pipeline ('... ! appsink'), image folder or glob; repeat for several "
                                               "(named cam0, cam1, ...)."),
    sources: Optional[Path] = typer.Option(None, "--sources", help="TOML file of named sources ([[camera]] name = ..., source = ...)."),
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
    http: Optional[str] = typer.Option(None, "--http", help="Serve the live view, /stats and /metrics at [HOST]:PORT "
                                       "(':8080' is localhost only; '0.0.0.0:8080' every interface)."),
    http_token: Optional[str] = typer.Option(None, "--http-token", envvar="DAE_HTTP_TOKEN", show_envvar=True,
                                             help="Every web request must carry this token (Bearer header or ?token=)."),
    review_dir: Optional[Path] = typer.Option(None, "--review-dir", help="With --http: where the live page's review buttons "
                                              "save frames (good/ and defect/, PNG + JSON sidecar; checked at start-up). "
                                              "Default: review/ beside the --events file, else ./review."),
    review: bool = typer.Option(True, "--review/--no-review", help="With --http: the review buttons under NG thumbnails "
                                "(\"good part\", \"confirmed defect\") and \"save current frame as good part\"."),
    mqtt: Optional[str] = typer.Option(None, "--mqtt", help="Publish each decision and a retained status to "
                                       "mqtt://HOST[:PORT]/TOPIC/PREFIX (mqtts:// for TLS). Needs the [line] extra."),
    mqtt_qos: int = typer.Option(1, "--mqtt-qos", min=0, max=2, help="QoS of the event messages."),
    mqtt_queue: int = typer.Option(10000, "--mqtt-queue", min=1, help="Messages kept while the broker is away (then the oldest are dropped, counted)."),
    mqtt_on_fail: str = typer.Option("retry", "--mqtt-on-fail", help="Broker unreachable at start: 'retry' (warn, keep trying) or 'exit'."),
    mqtt_username: Optional[str] = typer.Option(None, "--mqtt-username", envvar="DAE_MQTT_USERNAME", show_envvar=True, help="MQTT user name."),
    mqtt_password_file: Optional[Path] = typer.Option(None, "--mqtt-password-file", help="File holding the MQTT password "
                                                      "(or set DAE_MQTT_PASSWORD; never on the command line)."),
    mqtt_ca: Optional[Path] = typer.Option(None, "--mqtt-ca", envvar="DAE_MQTT_CA", show_envvar=True, help="CA certificate for TLS."),
    as_json: bool = typer.Option(False, "--json", help="Print the end-of-run summary as JSON on stdout (numbers rounded)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="Region of interest x,y,w,h in camera pixels, replacing the model's "
                                     "(a camera that was moved); the map is placed back at frame size."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --save/--events files (regular files only) "
                                   "and an earlier run's --save-frames folder (only one dae wrote)."),
    max_image_mp: Optional[float] = typer.Option(None, "--max-image-mp", min=0.001, help="Largest image file or video frame in "
                                                 "megapixels, read from the header before decoding (larger images are skipped "
                                                 "undecoded, such a video is refused). Default: 256x the model's input area, at "
                                                 "least 16.8 (4096x4096)."),
) -> None:
    """Run the detector on one or several cameras or streams: overlay, OK/NG, events, live view, MQTT
    and an end-of-run summary. Exit code 1 when input was lost (unreadable files, a video that ended
    before its announced length, a camera of several that failed)."""
    from ..data.roi import parse_roi
    from ..paths import input_paths
    from ..runtime.line.mqtt import MqttOptions
    from ..runtime.line.multisource import default_names, read_sources_file
    from ..runtime.line.run import run_on_line
    from ..runtime.live import RunOptions, display_available

    given = [str(c) for c in camera or []] + [str(s) for s in source or []]
    if sources is not None and given:
        raise ConfigError("give --sources FILE or --camera/--source, not both")
    if sources is None and not given:
        raise ConfigError("give --camera N, --source ... (either may be repeated) or --sources FILE")
    specs = read_sources_file(sources) if sources is not None else default_names(given)
    if mqtt_on_fail not in ("retry", "exit"):
        raise ConfigError(f"--mqtt-on-fail must be retry or exit (got {mqtt_on_fail!r})")
    several = sources is not None or len(specs) > 1
    if several and requests and requests > 1:
        raise ConfigError("--requests is for one source; with several, the frames that are ready together run as one batch")
    new_roi = parse_roi(roi) if roi else None  # a malformed --roi fails before anything is opened
    if review_dir is not None and not (http and review):
        raise ConfigError("--review-dir is where the live view's review buttons save frames: give --http too (and not --no-review)")
    if http and review and review_dir is None:
        review_dir = (events.parent if events is not None else Path(".")) / "review"
    show = display_available() if show is None else show
    inputs = [("the input", p) for p in input_paths(s.source for s in specs)] + [("the model", model)]
    inputs += [(desc, p) for desc, p in (("the sources file", sources), ("the MQTT password file", mqtt_password_file),
                                         ("the MQTT CA", mqtt_ca)) if p is not None]
    opts = RunOptions(save_video=save, save_frames=save_frames, events=events, max_frames=max_frames, show=show,
                      image_threshold=threshold, pixel_threshold=pixel_threshold, requests=requests or 1, overwrite=overwrite,
                      cameras=tuple(s.name for s in specs) if several else (), inputs=tuple(inputs))
    mqtt_opts = MqttOptions(url=mqtt, qos=mqtt_qos, queue_size=mqtt_queue, on_fail=mqtt_on_fail, username=mqtt_username,
                            password_file=mqtt_password_file, ca=mqtt_ca) if mqtt else None
    summary = run_on_line(model, specs, opts, backend, roi=new_roi, max_image_mp=max_image_mp, http=http, http_token=http_token,
                          mqtt=mqtt_opts, say=lambda m: console.print(m, markup=False, highlight=False),
                          warn=lambda m: console.print(f"warning: {m}", markup=False, highlight=False, soft_wrap=True),
                          progress=_StatusLine if console.is_terminal else None, review_dir=review_dir if review else None)
    s = summary.to_dict()
    if as_json:
        print(json.dumps(rounded(s)))
    else:
        _print_summary(s)
    if s["unreadable"]:
        console.print(f"unreadable: {', '.join(s['unreadable'])}", soft_wrap=True, markup=False, highlight=False)
    for warning in s["warnings"]:
        console.print(f"warning: {warning}", soft_wrap=True, markup=False, highlight=False)
    if summary.interrupted and stop_signal() == signal.SIGTERM:
        # ``systemctl stop``: the frame in flight was finished, outputs closed, MQTT said offline
        raise typer.Exit(exit_code())
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
        line = (f"{self.frames} frame{'' if self.frames == 1 else 's'}  {fps:5.1f} FPS  OK {self.ok}  NG {self.ng}  "
                f"last: {event.get('decision') or '--'} {score_text(event['score'])}")
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
              + (f" (stopped by {signal_label()})" if s["interrupted"] else ""))
    out.print(f"speed: {s['end_to_end_fps']:.1f} FPS end to end, {s['model_fps']:.1f} FPS model only, in {s['wall_s']:.1f} s")
    if lat:
        out.print("latency p50 / p95 ms: " + ", ".join(f"{k} {v['p50']:.1f} / {v['p95']:.1f}" for k, v in lat.items()))
    if len(s["cameras"]) > 1:
        for name, c in s["cameras"].items():
            out.print(f"  {name}: {c['ok']} OK, {c['ng']} NG, {c['fps']:.1f} FPS"
                      + (f", latency p50 {c['latency_ms']['p50']:.1f} ms" if "latency_ms" in c else "")
                      + (f", {c['dropped']} dropped" if c["dropped"] else "") + (f", failed {c['failures']}x" if c["failures"] else ""),
                      markup=False, highlight=False)
    if "mqtt" in s:
        m = s["mqtt"]
        out.print(f"mqtt: {m['published']} published, {m['dropped']} dropped" + (f", {m['disconnects']} disconnects" if m["disconnects"] else ""),
                  markup=False, highlight=False)
