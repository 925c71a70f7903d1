"""The ``dae run`` loop: source -> preprocess -> inference -> overlay/outputs, with per-stage timing.

Three stages overlap: capture (its own thread for live sources, keeping only the newest frame;
for files a read-ahead thread that also preprocesses the next frames), inference (this thread,
with preprocessing for live sources), and drawing + writing outputs (an output thread with a
short queue). With ``requests`` > 1 (OpenVINO bundles), that many frames are preprocessed and kept in
flight together in the runner's asynchronous queue: more frames per second on many-core CPUs, at
the cost of latency. Ctrl-C stops cleanly: queued frames are written and the video file is finalised, so
it stays playable.

On the line (``dae run --http``, ``--mqtt``, several sources): the output thread also feeds the live
view's :class:`~.line.livestate.LiveState` (counts, and an overlay JPEG a few times a second) and queues
each decision for the MQTT publisher; neither waits for the network. With several sources
(:class:`~.line.multisource.MultiSource`) every frame carries its camera's name, the frames that are ready
together run as one batch, and the summary has per-camera counts and FPS.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .. import interrupts
from ..data.preprocess import to_bgr
from ..paths import OVERWRITE_HINT, OutputPathError, check_apart, check_output_file, check_results_dir, fresh_output_dir
from .bundle import Bundle, BundleResult
from .overlay import draw_overlay
from .sources import Frame, ReadAhead, open_source


@dataclass
class RunOptions:
    save_video: Path | None = None
    save_frames: Path | None = None
    events: Path | None = None
    max_frames: int | None = None
    show: bool = False
    image_threshold: float | None = None
    pixel_threshold: float | None = None
    #: frames in flight together (the bundle's runner must have been opened with as many requests)
    requests: int = 1
    #: replace existing output files (--overwrite; only regular files, and only a --save-frames folder dae wrote)
    overwrite: bool = False
    #: the cameras' names when there are several: ``--save out.mp4`` then writes ``out-NAME.mp4`` for each
    cameras: tuple[str, ...] = ()
    #: what the run reads, as ``(description, path)``: no output may be one of them, inside one or hold one
    inputs: tuple[tuple[str, Path], ...] = ()
    #: image files and videos with more pixels per frame are refused from their headers, undecoded (None: no limit)
    max_pixels: int | None = None


@dataclass
class RunSummary:
    frames: int = 0
    ng: int = 0
    dropped: int = 0
    reconnects: int = 0
    unreadable: list[str] = field(default_factory=list)
    #: what the source says went wrong without stopping the run (e.g. a video that ended early)
    warnings: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"preprocess": [], "inference": [], "output": [], "total": []})
    interrupted: bool = False
    #: per camera: frames, ng, fps, dropped, reconnects, failures, latency (several sources)
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the MQTT publisher's counters at the end (published, dropped, ...), when --mqtt
    mqtt: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        stats = {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))} for k, v in self.latencies_ms.items() if v}
        infer = self.latencies_ms["inference"]
        return {
            "frames": self.frames, "ng": self.ng, "dropped": self.dropped, "reconnects": self.reconnects,
            "unreadable": self.unreadable, "warnings": self.warnings, "wall_s": round(self.wall_s, 3),
            "end_to_end_fps": self.frames / self.wall_s if self.wall_s > 0 else 0.0,
            "model_fps": 1000.0 / float(np.mean(infer)) if infer else 0.0,
            "latency_ms": stats, "interrupted": self.interrupted,
            "cameras": self.cameras, **({"mqtt": self.mqtt} if self.mqtt is not None else {}),
        }

    @property
    def incomplete(self) -> bool:
        """Some input was lost: unreadable files or a video that ended before its announced length."""
        return bool(self.unreadable or self.warnings)


def _probe_video_writer(path: Path) -> None:
    """Open (and discard) a video writer beside ``path`` with its extension: OpenCV refuses some
    containers or codecs only when the writer is opened, and says nothing unless asked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".dae-probe-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        writer = _video_writer(Path(probe), 25.0, (64, 64))
        ok = writer.isOpened()
        writer.release()
    finally:
        cv2.utils.logging.setLogLevel(level)
        Path(probe).unlink(missing_ok=True)
    if not ok:
        raise OutputPathError(f"cannot write video (--save) {path}: OpenCV cannot open an mp4v video writer for "
                              f"{path.suffix or 'a file without extension'} (use .mp4 or .avi)")


def _video_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    return cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)


def check_outputs(opts: RunOptions) -> None:
    """Every output of ``dae run`` can be written, checked before any source or model is opened:
    :class:`OutputPathError` (one line naming the path and the reason) otherwise. An existing file
    is refused without ``opts.overwrite``, and no output is an input or another output."""
    videos = []
    if opts.save_video is not None:
        save = Path(opts.save_video)
        videos = [camera_path(save, c) for c in opts.cameras] if len(opts.cameras) > 1 else [save]
    outputs: list[tuple[str, Path]] = []
    for video in videos:
        check_apart(video, "video (--save)", [*opts.inputs, *outputs])
        check_output_file(video, "video (--save)", overwrite=opts.overwrite, hint=OVERWRITE_HINT)
        outputs.append(("the video", video))
    if opts.events is not None:
        check_apart(opts.events, "events file (--events)", [*opts.inputs, *outputs])
        check_output_file(opts.events, "events file (--events)", overwrite=opts.overwrite, hint=OVERWRITE_HINT)
        outputs.append(("the events file", Path(opts.events)))
    if opts.save_frames is not None:
        check_apart(opts.save_frames, "NG frames folder (--save-frames)", [*opts.inputs, *outputs])
        check_results_dir(opts.save_frames, "NG frames folder (--save-frames)", opts.overwrite)
    if opts.save_video is not None:
        _probe_video_writer(Path(opts.save_video))


class _Outputs:
    """Output thread: overlay, video, NG frames, events, live view and MQTT, in frame order."""

    def __init__(self, opts: RunOptions, fps_hint: float, several: bool = False, state: Any = None, publisher: Any = None):
        self.opts, self.fps_hint, self.several = opts, fps_hint, several
        self.state, self.publisher = state, publisher
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.writers: dict[str, cv2.VideoWriter] = {}
        if opts.events:
            Path(opts.events).parent.mkdir(parents=True, exist_ok=True)
        self.events = open(opts.events, "w") if opts.events else None
        self.output_ms: list[float] = []
        self.error: Exception | None = None
        if opts.save_frames:
            fresh_output_dir(opts.save_frames, "dae run --save-frames")  # checked by check_outputs
        self.thread = threading.Thread(target=self._run, name="outputs", daemon=True)
        self.thread.start()

    def put(self, item: tuple) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # after the first error, only drain: the next frame would hide it behind another
            try:
                self._write(*item)
            except Exception as exc:  # surfaced to the main loop on the next put()
                self.error = exc

    def _write(self, frame: Frame, result: Any, event: dict, overlay: np.ndarray | None, fps: float) -> None:
        t0 = time.perf_counter()
        camera = frame.camera
        live_frame = self.state is not None and self.state.wants_frame(camera)
        thumb = self.state is not None and result.is_anomalous and self.state.wants_thumbnail()
        if overlay is None and (self.opts.save_video or (self.opts.save_frames and result.is_anomalous) or live_frame or thumb):
            overlay = draw_overlay(to_bgr(frame.image, frame.bgr), result.anomaly_map, result.defect_mask, result.score, result.is_anomalous, fps,
                                   threshold=event.get("threshold"))
        if self.opts.save_video and overlay is not None:
            writer = self.writers.get(camera)
            if writer is None:
                h, w = overlay.shape[:2]
                path = camera_path(self.opts.save_video, camera) if self.several else self.opts.save_video
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = self.writers[camera] = _video_writer(path, self.fps_hint, (w, h))
                if not writer.isOpened():
                    raise OutputPathError(f"cannot open the video writer for --save {path} ({w}x{h} at {self.fps_hint:g} FPS)")
            writer.write(overlay)
        if self.opts.save_frames and result.is_anomalous and overlay is not None:
            name = self.opts.save_frames / (f"ng_{camera}_{event['frame']:06d}.png" if self.several else f"ng_{event['frame']:06d}.png")
            if not cv2.imwrite(str(name), overlay):
                raise OutputPathError(f"cannot write NG frame {name}")
        # The original frame (not the overlay) for the live view's review buttons: a reference to the
        # frame the loop made anyway, kept by the state only while review is on.
        held = self.state.held_frame(frame.image, frame.bgr, camera, event["frame"], result.score, event["decision"]) \
            if self.state is not None else None
        if self.state is not None and overlay is not None:
            if live_frame:
                self.state.set_frame(camera, overlay)
            if thumb:
                self.state.add_thumbnail(camera, event["frame"], overlay, result.score, held)
        out_ms = (time.perf_counter() - t0) * 1000
        self.output_ms.append(out_ms)
        event["latency_ms"]["output"] = round(out_ms, 3)
        if self.events:
            self.events.write(json.dumps(event) + "\n")
            self.events.flush()
        if self.state is not None:
            self.state.record(camera, event, held)
        if self.publisher is not None:
            self.publisher.publish_event(event)  # a bounded queue: never waits for the broker

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        for writer in self.writers.values():
            writer.release()  # finalises the container: the file plays even after Ctrl-C
        if self.events:
            self.events.close()
        if self.error is not None:
            raise self.error


def camera_path(path: Path, camera: str) -> Path:
    """``out.mp4`` -> ``out-top.mp4``: one video per camera when there are several."""
    return path.with_name(f"{path.stem}-{camera}{path.suffix}")


def _groups(frames: Any, n: int) -> Any:
    """Consecutive groups of up to ``n`` frames."""
    group: list[Frame] = []
    for frame in frames:
        group.append(frame)
        if len(group) == n:
            yield group
            group = []
    if group:
        yield group


def run_stream(bundle: Bundle, source: str, opts: RunOptions, on_frame: Callable[[dict], None] | None = None,
               src: Any = None, state: Any = None, publisher: Any = None) -> RunSummary:
    """Run the detector over a source until it ends, ``max_frames`` or Ctrl-C.

    ``src``: an opened source (default: ``open_source(source)``), or a
    :class:`~.line.multisource.MultiSource` for several cameras. ``state``: the live view's
    :class:`~.line.livestate.LiveState`; ``publisher``: an MQTT publisher (``publish_event(event)``)."""
    check_outputs(opts)
    bundle.override_thresholds(opts.image_threshold, opts.pixel_threshold)
    src = src if src is not None else open_source(source, opts.max_pixels)
    several = hasattr(src, "groups")
    summary = RunSummary()
    outputs = _Outputs(opts, float(getattr(src, "fps", 0) or 25.0), several, state, publisher)
    cams: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    # Files: decode and preprocess ahead on a thread, overlapping inference. Live sources are not:
    # a frame prepared ahead would wait for the model and be one inference older when it is used.
    ahead = None
    if not several and not getattr(src, "live", True):
        ahead = ReadAhead(src.frames(), prepare=lambda f: bundle.prepare_frame(f.image, bgr=f.bgr))
    groups = src.groups() if several else _groups(ahead if ahead is not None else src.frames(), max(1, opts.requests))
    stopper = _StopAtFrameBoundary()
    try:
        stopper.__enter__()
        for group in groups:
            stopper.busy = True
            t0 = time.perf_counter()
            # One batch per frame: one input, or all tiles of a tiled bundle's frame.
            if all(frame.prepared is not None for frame in group):  # prepared ahead (files)
                prepared = [frame.prepared for frame in group]
                pre_ms = sum(frame.prepare_ms for frame in group) / len(group)
            else:
                prepared = [bundle.prepare_frame(frame.image, bgr=frame.bgr) for frame in group]
                pre_ms = (time.perf_counter() - t0) * 1000 / len(group)
            t1 = time.perf_counter()
            if several and len(prepared) > 1 and all(p.layout is None for p in prepared):
                # one frame of each ready camera: one batch
                results = bundle.predict_batch(np.concatenate([p.batch for p in prepared]))
            else:
                results = bundle.predict_frames(prepared)
            t2 = time.perf_counter()
            # per frame: the group's inference time shared out (one frame when requests == 1)
            infer_ms = (t2 - t1) * 1000 / len(group)
            stop = False
            for frame, result in zip(group, results):
                t_out = time.perf_counter()
                cam = cams.setdefault(frame.camera, {"frames": 0, "ng": 0, "total_ms": []})
                summary.frames += 1
                summary.ng += int(result.is_anomalous)
                cam["frames"] += 1
                cam["ng"] += int(result.is_anomalous)
                elapsed = t2 - start
                fps = cam["frames"] / elapsed if elapsed > 0 else 0.0
                event = _event(bundle, summary.frames - 1, frame, result, t0, pre_ms, infer_ms)
                overlay = None
                if opts.show:
                    overlay = draw_overlay(to_bgr(frame.image, frame.bgr), result.anomaly_map, result.defect_mask, result.score,
                                           result.is_anomalous, fps, threshold=bundle.image_threshold,
                                           pixel_threshold=bundle.thresholds.pixel_or_default)
                    cv2.imshow(f"dae run {frame.camera}" if several else "dae run", overlay)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        stop = True
                        break
                outputs.put((frame, result, event, overlay, fps))
                total_ms = pre_ms + infer_ms + (time.perf_counter() - t_out) * 1000
                summary.latencies_ms["preprocess"].append(pre_ms)
                summary.latencies_ms["inference"].append(infer_ms)
                summary.latencies_ms["total"].append(total_ms)
                cam["total_ms"].append(total_ms)
                if on_frame is not None:
                    on_frame(event)
                if opts.max_frames is not None and summary.frames >= opts.max_frames:
                    stop = True
                    break
            if stop:
                break
            stopper.busy = False
            if stopper.requested:  # Ctrl-C or SIGTERM came during this frame: it has been finished
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        stopper.__exit__()
        if ahead is not None:
            ahead.close()  # before the source it reads is released
        src.close()
        outputs.close()
        if opts.show:
            cv2.destroyAllWindows()
    summary.wall_s = time.perf_counter() - start
    summary.latencies_ms["output"] = outputs.output_ms
    summary.dropped = src.dropped
    summary.reconnects = src.reconnects
    summary.unreadable = list(src.unreadable)
    summary.warnings = list(getattr(src, "warnings", []))
    counters = src.counters() if several else {}
    for name in (src.names if several else list(cams) or ["cam0"]):
        cam = cams.get(name, {"frames": 0, "ng": 0, "total_ms": []})
        row: dict[str, Any] = {"frames": cam["frames"], "ng": cam["ng"], "ok": cam["frames"] - cam["ng"],
                               "fps": cam["frames"] / summary.wall_s if summary.wall_s > 0 else 0.0}
        if cam["total_ms"]:
            row["latency_ms"] = {"p50": float(np.percentile(cam["total_ms"], 50)), "p95": float(np.percentile(cam["total_ms"], 95))}
        c = counters.get(name)
        row.update({"dropped": c.dropped, "reconnects": c.reconnects, "failures": c.failures} if c is not None
                   else {"dropped": summary.dropped, "reconnects": summary.reconnects, "failures": 0})
        summary.cameras[name] = row
    return summary


class _StopAtFrameBoundary:
    """While ``busy`` (a frame between inference and its outputs), Ctrl-C, and SIGTERM which the CLI
    forwards to it, only set ``requested``: the loop finishes the frame and stops. While the loop waits
    for a frame (a live source that delivers nothing) it stops at once (``KeyboardInterrupt``), as does
    a second signal. Main thread only; elsewhere it does nothing."""

    def __init__(self) -> None:
        self.busy = False
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        interrupts.note_stop(signum)
        if self.busy and not self.requested:
            self.requested = True
            return
        raise KeyboardInterrupt

    def __enter__(self) -> "_StopAtFrameBoundary":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _event(bundle: Bundle, index: int, frame: Frame, result: BundleResult, t0: float, pre_ms: float, infer_ms: float) -> dict:
    """One line of ``--events``."""
    return {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        "frame": index, "camera": frame.camera, "source_index": frame.index, "path": frame.path,
        "score": round(result.score, 6), "normalised_score": round(result.normalised_score, 6),
        "decision": bundle.decision(result),
        "threshold": bundle.image_threshold,
        "latency_ms": {"capture_age": round((t0 - frame.timestamp) * 1000, 3) if frame.timestamp else None,
                       "preprocess": round(pre_ms, 3), "inference": round(infer_ms, 3)},
    }


def display_available() -> bool:
    """True when OpenCV can open a window (a GUI build and a display)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.name == "nt"):
        return False
    try:
        cv2.namedWindow("dae-probe")
        cv2.destroyWindow("dae-probe")
        return True
    except cv2.error:
        return False
