"""Frame sources for ``dae run``: camera index, video file, stream URL, GStreamer pipeline, image
folder or glob.

Live sources are read by a capture thread that keeps only the newest frame: a slow model never
works on a queue of stale frames (the classic lag bug), and every frame it skipped is counted.
A lost stream is reopened with exponential back-off; a source that cannot be opened at all is a
clear error naming it. Files (videos, image folders) are read in order, every frame, since there
nothing is lost by waiting; :class:`ReadAhead` decodes (and for ``dae run`` also preprocesses) the
next few on a thread of their own, so that this work overlaps inference instead of adding to it.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from ..data.imagesize import ImageTooLarge
from ..data.preprocess import IMAGE_EXTENSIONS, find_images, read_image
from ..errors import DaeError


class SourceError(DaeError):
    """A source cannot be opened or has failed for good."""


@dataclass
class Frame:
    index: int  # position in the source (frames dropped before it are not returned)
    image: np.ndarray  # (H, W, 3) uint8 from cameras and videos, or whatever the source gave (converted later)
    timestamp: float  # time.monotonic() at capture
    path: str | None = None  # for image folders
    bgr: bool = True  # OpenCV captures give BGR; image files are decoded to RGB
    camera: str = "cam0"  # the camera's name (several sources per device: runtime/line/multisource.py)
    prepared: Any = None  # the network input, when a read-ahead thread has already prepared it
    prepare_ms: float = 0.0  # the time that took (on that thread)


def describe(source: str) -> str:
    return f"camera {source}" if source.isdigit() else source


def is_live(source: str) -> bool:
    """Cameras, network streams and GStreamer pipelines are live; files are not."""
    return source.isdigit() or "://" in source or "!" in source


def _open_capture(source: str) -> cv2.VideoCapture:
    # OpenCV logs its own warnings for every backend it tries; our error says it in one line.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    if source.isdigit():
        return cv2.VideoCapture(int(source))
    if "!" in source:  # a GStreamer pipeline (Jetson CSI: nvarguscamerasrc ... ! appsink)
        return cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    return cv2.VideoCapture(source)


class ImageFolderSource:
    """Images from a folder (recursive) or a glob, in sorted order; unreadable files are skipped and listed."""

    live = False

    def __init__(self, source: str, max_pixels: int | None = None):
        files = find_images(source)
        if not files:
            raise SourceError(f"no images in source {source}")
        self.files = files
        #: larger images (read from the header) are skipped undecoded, listed as unreadable with a warning
        self.max_pixels = max_pixels
        self.dropped = 0
        self.unreadable: list[str] = []
        self.warnings: list[str] = []
        self.reconnects = 0

    def frames(self) -> Iterator[Frame]:
        for i, f in enumerate(self.files):
            try:
                rgb = read_image(f, self.max_pixels)
            except ImageTooLarge as exc:
                self.unreadable.append(str(f))
                self.warnings.append(str(exc))
                continue
            except DaeError:
                self.unreadable.append(str(f))
                continue
            yield Frame(i, rgb, time.monotonic(), str(f), bgr=False)

    def close(self) -> None:
        pass


class VideoFileSource:
    """Every frame of a video file, in order."""

    live = False

    def __init__(self, source: str, max_pixels: int | None = None):
        if not Path(source).is_file():
            raise SourceError(f"video file not found: {source}")
        self.cap = cv2.VideoCapture(source)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video {source} (corrupt or unsupported codec)")
        # The frame size comes from the container's header: refuse before the first frame is decoded.
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if max_pixels is not None and w * h > max_pixels:
            self.cap.release()
            raise SourceError(f"video {source} has frames of {w}x{h} pixels ({w * h / 1e6:.1f} MP), over the limit of "
                              f"{max_pixels / 1e6:.1f} MP (--max-image-mp); not decoded")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        #: the length the container announces (0 when it does not say)
        self.announced = max(0, int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        self.source = source
        self.dropped = 0
        self.unreadable: list[str] = []
        self.warnings: list[str] = []
        self.reconnects = 0

    def frames(self) -> Iterator[Frame]:
        i = 0
        while True:
            ok, img = self.cap.read()
            if not ok:
                if i < self.announced:  # the container promised more: truncated or corrupt
                    self.warnings.append(f"video {self.source} ended after {i} of the {self.announced} frames it "
                                         "announces (truncated or corrupt file)")
                return
            yield Frame(i, img, time.monotonic())
            i += 1

    def close(self) -> None:
        self.cap.release()


class LiveSource:
    """A camera/stream read by its own thread; :meth:`frames` yields only the newest frame.

    ``opener`` is injectable so that tests can stand in a flaky stream; by default it is OpenCV.
    """

    live = True

    def __init__(self, source: str, opener: Callable[[str], Any] = _open_capture, max_retries: int = 5,
                 backoff_s: float = 0.5, read_timeout_s: float = 10.0):
        self.source, self.opener = source, opener
        self.max_retries, self.backoff_s, self.read_timeout_s = max_retries, backoff_s, read_timeout_s
        self.dropped = 0
        self.reconnects = 0
        self.unreadable: list[str] = []
        self.warnings: list[str] = []
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._stopped = False
        self._error: Exception | None = None
        self._ended = False
        cap = opener(source)
        if cap is None or not cap.isOpened():
            hint = " (no such camera index?)" if source.isdigit() else ""
            raise SourceError(f"cannot open {describe(source)}{hint}")
        self._cap = cap
        self._thread = threading.Thread(target=self._run, name=f"capture:{source}", daemon=True)
        self._thread.start()

    def _reopen(self) -> bool:
        delay = self.backoff_s
        for _ in range(self.max_retries):
            if self._stopped:
                return False
            time.sleep(delay)
            self._cap.release()
            cap = self.opener(self.source)
            if cap is not None and cap.isOpened():
                self._cap = cap
                self.reconnects += 1
                return True
            delay = min(delay * 2, 8.0)
        return False

    def _run(self) -> None:
        index = 0
        failures = 0  # reopen attempts since the last good frame: a stream that opens but never
        while not self._stopped:  # delivers must still end in an error
            ok, img = self._cap.read()
            if not ok:
                failures += 1
                if failures > self.max_retries or not self._reopen():
                    with self._cond:
                        self._error = SourceError(f"lost {describe(self.source)} and could not reopen it after {self.max_retries} tries")
                        self._ended = True
                        self._cond.notify_all()
                    return
                continue
            failures = 0
            with self._cond:
                if self._latest is not None:
                    self.dropped += 1  # the consumer never saw the previous frame
                self._latest = Frame(index, img, time.monotonic())
                self._cond.notify_all()
            index += 1

    def frames(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.read_timeout_s
                while self._latest is None and not self._ended and not self._stopped:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise SourceError(f"no frame from {describe(self.source)} for {self.read_timeout_s:.0f} s")
                    self._cond.wait(remaining)
                if self._latest is None:
                    if self._error is not None:
                        raise self._error
                    return
                frame, self._latest = self._latest, None
            yield frame

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()  # a reader waiting in frames() returns now
        self._thread.join(timeout=5)
        self._cap.release()


class ReadAhead:
    """Iterate ``frames`` on a background thread, ``depth`` frames ahead, in order, none dropped.

    For files: the next frames are decoded, and with ``prepare`` (frame -> network input) also
    preprocessed, while the current one is inferred (set as ``frame.prepared``, with the time it
    took as ``frame.prepare_ms``). Errors raised by either are raised again from :meth:`__iter__`
    at the frame where they happened. :meth:`close` stops the thread within a fraction of a second
    (call it before closing the source it reads)."""

    _END = object()

    def __init__(self, frames: Iterator[Frame], depth: int = 4, prepare: Callable[[Frame], Any] | None = None):
        self._frames = frames
        self._prepare = prepare
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for frame in self._frames:
                if self._prepare is not None:
                    t0 = time.perf_counter()
                    frame.prepared = self._prepare(frame)
                    frame.prepare_ms = (time.perf_counter() - t0) * 1000
                if not self._put(frame):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
            return
        self._put(self._END)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def open_source(source: str, max_pixels: int | None = None):
    """The right source class for a camera index, URL, GStreamer pipeline, video file, folder or glob.
    ``max_pixels``: image files and videos with larger frames (read from their headers) are refused
    undecoded (live sources are the device's own cameras and are not limited)."""
    if is_live(source):
        return LiveSource(source)
    p = Path(source)
    if p.is_dir() or any(c in source for c in "*?["):
        return ImageFolderSource(source, max_pixels)
    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
        return _SingleImage(p, max_pixels)
    return VideoFileSource(source, max_pixels)


class _SingleImage(ImageFolderSource):
    def __init__(self, path: Path, max_pixels: int | None = None):
        self.files = [path]
        self.max_pixels = max_pixels
        self.dropped = 0
        self.unreadable = []
        self.warnings = []
        self.reconnects = 0
