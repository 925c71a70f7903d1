"""What the live view and ``/stats`` / ``/metrics`` show: counts, FPS, latencies, the newest overlay
JPEG per camera and the last NG thumbnails; with review on, the original frames behind those
thumbnails and each camera's newest frame (what the review buttons save).

The run loop's output thread writes here (cheap: counters and, a few times a second, one JPEG);
the web server's threads read. A JPEG is encoded only when someone watches (at most ``stream_fps``
a second per camera) or once a second otherwise, so that a page opened later starts on a fresh
frame: the live view costs the inference loop almost nothing, and a slow browser only ever gets the
newest frame (the ones it missed are skipped, never queued).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

#: stages whose latency is shown (the keys of an event's ``latency_ms``)
STAGES = ("capture_age", "queue", "decode", "preprocess", "inference", "output")


@dataclass(frozen=True)
class HeldFrame:
    """A frame kept for the review buttons: the original image as the source gave it (not the
    overlay), and what the model said of it."""

    image: np.ndarray
    bgr: bool
    camera: str
    frame: int
    score: float | None
    decision: str | None


@dataclass
class _Camera:
    frames: int = 0
    ng: int = 0
    ok: int = 0
    decision: str | None = None
    score: float | None = None
    frame: int | None = None
    times: deque = field(default_factory=lambda: deque(maxlen=60))
    jpeg: bytes | None = None
    jpeg_seq: int = 0
    jpeg_time: float = 0.0
    viewers: int = 0
    status: str = "running"
    held: HeldFrame | None = None

    def fps(self, now: float) -> float:
        t = self.times
        if len(t) < 2 or now - t[-1] > 5.0:  # nothing for 5 s: stopped, not slow
            return 0.0
        return (len(t) - 1) / max(t[-1] - t[0], 1e-9)


class LiveState:
    """Thread-safe counters and frames of a running ``dae run`` (or ``dae serve``)."""

    def __init__(self, info: dict[str, Any], stream_fps: float = 15.0, thumbnails: int = 8, thumb_width: int = 200,
                 hold_frames: bool = False):
        self.info = dict(info)
        #: keep the original frames behind the thumbnails and each camera's newest one (review on);
        #: only references to frames the loop made anyway, at most ``thumbnails`` + one per camera
        self.hold_frames = hold_frames
        self.thumbnails = thumbnails
        self.stream_period = 1.0 / max(stream_fps, 0.1)
        self.thumb_width = thumb_width
        self._cond = threading.Condition()
        self._cameras: dict[str, _Camera] = {}
        self._thumbs: deque = deque(maxlen=thumbnails)
        self._thumb_seq = 0
        self._last_thumb = 0.0
        self._latency: dict[str, deque] = {s: deque(maxlen=300) for s in STAGES}
        self.started = time.time()
        self.closed = False
        #: extra sections of /stats (e.g. the MQTT publisher's counters), read when asked
        self.providers: dict[str, Callable[[], dict[str, Any]]] = {}

    # -- writers (the run loop's output thread, or a /predict request) ---------------------------

    def add_camera(self, name: str) -> None:
        with self._cond:
            self._cameras.setdefault(name, _Camera())

    def set_camera_status(self, name: str, status: str) -> None:
        with self._cond:
            self._cameras.setdefault(name, _Camera()).status = status

    def record(self, camera: str, event: dict[str, Any], held: HeldFrame | None = None) -> None:
        """Count one decision (an ``--events`` line) of ``camera``; ``held``: its original frame, kept
        as the camera's newest when frames are held (the "save the current frame" button)."""
        now = time.monotonic()
        with self._cond:
            cam = self._cameras.setdefault(camera, _Camera())
            if held is not None and self.hold_frames:
                cam.held = held
            cam.frames += 1
            cam.ng += event.get("decision") == "NG"
            cam.ok += event.get("decision") == "OK"
            cam.decision, cam.score, cam.frame = event.get("decision"), event.get("score"), event.get("frame")
            cam.times.append(now)
            for stage, ms in (event.get("latency_ms") or {}).items():
                if ms is not None and stage in self._latency:
                    self._latency[stage].append(float(ms))

    def wants_frame(self, camera: str) -> bool:
        """True when a new overlay of ``camera`` should be encoded now (someone watches and the last
        one is older than the stream period, or nobody watches and it is older than a second)."""
        with self._cond:
            cam = self._cameras.get(camera)
            if cam is None:
                return True
            period = self.stream_period if cam.viewers else 1.0
            return time.monotonic() - cam.jpeg_time >= period

    def wants_thumbnail(self) -> bool:
        """NG thumbnails at most 4 a second: a line that goes all NG does not slow the outputs."""
        return time.monotonic() - self._last_thumb >= 0.25

    def set_frame(self, camera: str, overlay_bgr: np.ndarray, quality: int = 80) -> None:
        ok, buf = cv2.imencode(".jpg", overlay_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            return
        with self._cond:
            cam = self._cameras.setdefault(camera, _Camera())
            cam.jpeg, cam.jpeg_seq, cam.jpeg_time = buf.tobytes(), cam.jpeg_seq + 1, time.monotonic()
            self._cond.notify_all()

    def add_thumbnail(self, camera: str, frame: int, overlay_bgr: np.ndarray, score: float,
                      held: HeldFrame | None = None) -> int | None:
        """Add an NG thumbnail (the overlay, made small); ``held``: the original frame behind it, kept
        while the thumbnail is (frames are held). Returns the thumbnail's id."""
        h, w = overlay_bgr.shape[:2]
        scale = min(1.0, self.thumb_width / max(w, 1))
        small = cv2.resize(overlay_bgr, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 75])
        if not ok:
            return None
        with self._cond:
            self._last_thumb = time.monotonic()
            self._thumb_seq += 1
            self._thumbs.appendleft({"id": self._thumb_seq, "camera": camera, "frame": frame, "score": round(score, 6),
                                     "time": time.time(), "reviewed": None, "jpeg": buf.tobytes(),
                                     "held": held if self.hold_frames else None})
            return self._thumb_seq

    def held_frame(self, image: np.ndarray, bgr: bool, camera: str, frame: int, score: float | None,
                   decision: str | None) -> HeldFrame | None:
        """A :class:`HeldFrame` for :meth:`record` / :meth:`add_thumbnail` when frames are held, else None."""
        return HeldFrame(image, bgr, camera, frame, score, decision) if self.hold_frames else None

    def mark_reviewed(self, thumb_id: int, verdict: str) -> None:
        """Show a thumbnail as reviewed (``good`` or ``defect``) on the page."""
        with self._cond:
            for t in self._thumbs:
                if t["id"] == thumb_id:
                    t["reviewed"] = verdict

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # -- readers (the web server's threads) ------------------------------------------------------

    @property
    def camera_names(self) -> list[str]:
        with self._cond:
            return list(self._cameras)

    def watch(self, camera: str, delta: int) -> None:
        with self._cond:
            self._cameras.setdefault(camera, _Camera()).viewers += delta

    def newest_frame(self, camera: str, after: int = 0, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """The newest JPEG of ``camera`` once its sequence number passes ``after`` (or the current one
        at ``timeout``): (sequence number, JPEG bytes or None)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            cam = self._cameras.setdefault(camera, _Camera())
            while cam.jpeg_seq <= after and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return cam.jpeg_seq, cam.jpeg

    def thumbnail(self, thumb_id: int) -> bytes | None:
        with self._cond:
            return next((t["jpeg"] for t in self._thumbs if t["id"] == thumb_id), None)

    def held_thumbnail(self, thumb_id: int) -> HeldFrame | None:
        """The original frame behind thumbnail ``thumb_id``; None once it has dropped out of the last
        ``thumbnails`` NG frames (or when frames are not held)."""
        with self._cond:
            return next((t["held"] for t in self._thumbs if t["id"] == thumb_id), None)

    def held_current(self, camera: str) -> HeldFrame | None:
        """The newest frame of ``camera`` (None before its first frame, or when frames are not held)."""
        with self._cond:
            cam = self._cameras.get(camera)
            return cam.held if cam is not None else None

    def stats(self) -> dict[str, Any]:
        """Everything the page shows, as JSON values."""
        now = time.monotonic()
        with self._cond:
            cameras = {name: {"frames": c.frames, "ok": c.ok, "ng": c.ng, "fps": round(c.fps(now), 2), "decision": c.decision,
                              "score": c.score, "frame": c.frame, "status": c.status} for name, c in self._cameras.items()}
            latency = {s: {"p50": round(float(np.percentile(v, 50)), 3), "p95": round(float(np.percentile(v, 95)), 3)}
                       for s, v in self._latency.items() if v}
            thumbs = [{k: v for k, v in t.items() if k not in ("jpeg", "held")} for t in self._thumbs]
        out = {"info": self.info, "uptime_s": round(time.time() - self.started, 1), "cameras": cameras,
               "frames": sum(c["frames"] for c in cameras.values()), "ok": sum(c["ok"] for c in cameras.values()),
               "ng": sum(c["ng"] for c in cameras.values()), "fps": round(sum(c["fps"] for c in cameras.values()), 2),
               "latency_ms": latency, "ng_thumbnails": thumbs}
        for key, provider in list(self.providers.items()):
            out[key] = provider()
        return out


def prometheus(stats: dict[str, Any]) -> str:
    """``/stats`` in Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{label}}} {float(value):g}" if label else f"{name} {float(value):g}")

    cams = stats["cameras"]
    metric("dae_frames_total", "counter", "Decisions made.", [({"camera": n}, c["frames"]) for n, c in cams.items()])
    metric("dae_ng_total", "counter", "NG decisions.", [({"camera": n}, c["ng"]) for n, c in cams.items()])
    metric("dae_ok_total", "counter", "OK decisions.", [({"camera": n}, c["ok"]) for n, c in cams.items()])
    metric("dae_fps", "gauge", "Decisions per second over the last frames.", [({"camera": n}, c["fps"]) for n, c in cams.items()])
    metric("dae_last_score", "gauge", "Image score of the last decision.",
           [({"camera": n}, c["score"]) for n, c in cams.items() if c["score"] is not None])
    metric("dae_latency_ms", "gauge", "Per-stage latency over the last 300 decisions.",
           [({"stage": s, "quantile": q}, v[p]) for s, v in stats["latency_ms"].items() for q, p in (("0.5", "p50"), ("0.95", "p95"))])
    mqtt = stats.get("mqtt")
    if mqtt:
        metric("dae_mqtt_connected", "gauge", "1 while connected to the broker.", [({}, int(bool(mqtt["connected"])))])
        metric("dae_mqtt_published_total", "counter", "Event messages the broker acknowledged (QoS 1/2) or that were sent (QoS 0).",
               [({}, mqtt["published"])])
        metric("dae_mqtt_dropped_total", "counter", "Event messages dropped (queue full, or unsent at exit).", [({}, mqtt["dropped"])])
        metric("dae_mqtt_queued", "gauge", "Event messages waiting for the broker.", [({}, mqtt["queued"])])
    review = stats.get("review")
    if review:
        metric("dae_reviewed_total", "counter", "Frames an operator reviewed on the live page, by verdict.",
               [({"verdict": v}, review[v]) for v in ("good", "defect")])
        metric("dae_review_refused_total", "counter", "Review clicks refused (frame no longer held, already reviewed, not written).",
               [({}, review["refused"])])
    serve = stats.get("requests")
    if serve:
        metric("dae_requests_total", "counter", "POST /predict requests by HTTP status.",
               [({"code": str(code)}, n) for code, n in serve["by_status"].items()])
    return "\n".join(lines) + "\n"


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
