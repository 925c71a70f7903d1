"""Several cameras on one device: ``dae run --source A --source B`` or ``--sources cameras.toml``.

One reader thread per source keeps that source's newest frame in its slot (live sources: a frame
the loop had no time for is replaced and counted as dropped) or waits for the slot to empty (files:
nothing is skipped). :meth:`MultiSource.groups` hands the run loop every frame that is ready, one per
camera, which it runs as one batch. A live camera that fails is reported in one line and reopened
with back-off while the others go on; a file source that cannot be opened is an error at start.

The sources file (TOML)::

    [[camera]]
    name = "top"                        # letters, digits, - _ . (used in topics and file names)
    source = "rtsp://10.0.0.21/stream1"

    [[camera]]
    name = "side"
    source = 0                          # a camera index
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ...errors import ConfigError
from ..sources import Frame, SourceError, describe, is_live, open_source

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass
class SourceSpec:
    name: str
    source: str


def default_names(sources: list[str]) -> list[SourceSpec]:
    """``cam0``, ``cam1``, ... for sources given on the command line."""
    return [SourceSpec(f"cam{i}", s) for i, s in enumerate(sources)]


def read_sources_file(path: str | Path) -> list[SourceSpec]:
    """The cameras of a TOML sources file; :class:`ConfigError` (one line naming the file) when it is malformed."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read sources file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sources file {path} is not valid TOML: {exc}") from None
    cams = data.get("camera")
    if not isinstance(cams, list) or not cams:
        raise ConfigError(f"sources file {path}: expected one or more [[camera]] tables with name and source")
    specs: list[SourceSpec] = []
    for i, cam in enumerate(cams):
        where = f"sources file {path}, camera {i + 1}"
        if not isinstance(cam, dict):
            raise ConfigError(f"{where}: expected a table with name and source")
        unknown = set(cam) - {"name", "source"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (expected name and source)")
        name, source = cam.get("name", f"cam{i}"), cam.get("source")
        if isinstance(source, bool) or not isinstance(source, (str, int)) or str(source).strip() == "":
            raise ConfigError(f"{where}: source must be a camera index, a URL, a pipeline, a video file or a folder (found {source!r})")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: name must be 1-64 letters, digits, '-', '_' or '.' (found {name!r})")
        specs.append(SourceSpec(name, str(source)))
    check_names(specs, f"sources file {path}")
    return specs


def check_names(specs: list[SourceSpec], where: str = "--source") -> None:
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ConfigError(f"{where}: camera name {s.name!r} is used twice")
        seen.add(s.name)


@dataclass
class CameraCounters:
    dropped: int = 0
    reconnects: int = 0
    failures: int = 0
    last_error: str | None = None
    unreadable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Reader:
    """One source's thread and slot."""

    def __init__(self, spec: SourceSpec, owner: "MultiSource"):
        self.spec, self.owner = spec, owner
        self.live = is_live(spec.source)
        self.counters = CameraCounters()
        self.slot: Frame | None = None
        self.done = False
        self.streak = 0  # failures since the last frame
        self.src: Any = None
        if not self.live:  # a missing file is a mistake to report now, not to retry
            self.src = owner.opener(spec.source)
        self.thread = threading.Thread(target=self._run, name=f"capture:{spec.name}", daemon=True)

    def _fail(self, exc: Exception) -> None:
        c = self.counters
        c.failures += 1
        c.last_error = str(exc)
        self.streak += 1
        if self.streak == 1:  # one line per outage, not one per retry
            self.owner.warn(f"camera {self.spec.name} ({describe(self.spec.source)}): {exc}; retrying with back-off, the other cameras go on")
        self.owner.on_status(self.spec.name, "reconnecting")

    def _retry_after(self, exc: Exception, backoff: float) -> float:
        """Record a failure, wait ``backoff`` seconds and return the next (doubled, capped) wait."""
        self._fail(exc)
        self.owner.sleep(backoff)
        return min(backoff * 2, self.owner.max_backoff_s)

    def _recovered(self) -> None:
        if self.streak:
            self.owner.warn(f"camera {self.spec.name} is back after {self.streak} failed attempt(s)")
            self.streak = 0
        self.owner.on_status(self.spec.name, "running")

    def _run(self) -> None:
        owner = self.owner
        backoff = owner.backoff_s
        while not owner.stopped:
            if self.src is None:
                try:
                    self.src = owner.opener(self.spec.source)
                    if self.counters.failures:
                        self.counters.reconnects += 1
                except SourceError as exc:
                    if owner.stopped:
                        break
                    backoff = self._retry_after(exc, backoff)
                    continue
            try:
                for frame in self.src.frames():
                    if self.streak:
                        self._recovered()
                    backoff = owner.backoff_s
                    frame.camera = self.spec.name
                    if not owner.deliver(self, frame):
                        break
                else:
                    if self.live:  # a live stream that ends is a failure: reopen it
                        raise SourceError("stream ended")
                    break
            except SourceError as exc:
                self._collect()
                self._close_src()
                if owner.stopped:
                    break
                backoff = self._retry_after(exc, backoff)
                continue
            break
        self._collect()
        owner.finished(self)

    def _collect(self) -> None:
        """Move the source's own counters into the camera's (a reopened source starts from zero)."""
        src, c = self.src, self.counters
        if src is None:
            return
        c.dropped += getattr(src, "dropped", 0)
        c.reconnects += getattr(src, "reconnects", 0)
        c.unreadable += list(getattr(src, "unreadable", []))
        c.warnings += list(getattr(src, "warnings", []))
        src.dropped, src.reconnects, src.unreadable, src.warnings = 0, 0, [], []

    def _close_src(self) -> None:
        if self.src is not None:
            try:
                self.src.close()
            finally:
                self.src = None


class MultiSource:
    """Several sources read in parallel; :meth:`groups` yields the ready frames, one per camera."""

    live = True

    def __init__(self, specs: list[SourceSpec], opener: Callable[[str], Any] = open_source, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, warn: Callable[[str], None] | None = None,
                 on_status: Callable[[str, str], None] | None = None):
        check_names(specs)
        self.opener, self.backoff_s, self.max_backoff_s = opener, backoff_s, max_backoff_s
        self.warn = warn or (lambda m: None)
        self.on_status = on_status or (lambda name, status: None)
        self.stopped = False
        self._cond = threading.Condition()
        self._stop_event = threading.Event()
        self.readers: list[_Reader] = []
        try:
            for spec in specs:
                self.readers.append(_Reader(spec, self))
        except Exception:
            self.close()
            raise
        self.fps = max((float(getattr(r.src, "fps", 0) or 0) for r in self.readers), default=0.0) or 25.0
        for r in self.readers:
            r.thread.start()

    @property
    def names(self) -> list[str]:
        return [r.spec.name for r in self.readers]

    def sleep(self, seconds: float) -> None:
        self._stop_event.wait(seconds)

    def deliver(self, reader: _Reader, frame: Frame) -> bool:
        """Put ``frame`` in the reader's slot: replacing an unseen live frame (counted), or waiting
        for a file's previous frame to be taken. False when the run stops."""
        with self._cond:
            if reader.live:
                if reader.slot is not None:
                    reader.counters.dropped += 1
            else:
                while reader.slot is not None and not self.stopped:
                    self._cond.wait(0.5)
            if self.stopped:
                return False
            reader.slot = frame
            self._cond.notify_all()
            return True

    def finished(self, reader: _Reader) -> None:
        with self._cond:
            reader.done = True
            self._cond.notify_all()

    def groups(self) -> Iterator[list[Frame]]:
        while True:
            with self._cond:
                while not any(r.slot is not None for r in self.readers) and not all(r.done for r in self.readers):
                    self._cond.wait(0.5)
                group = [r.slot for r in self.readers if r.slot is not None]
                if not group:
                    return
                for r in self.readers:
                    r.slot = None
                self._cond.notify_all()
            yield group  # type: ignore[misc]

    def counters(self) -> dict[str, CameraCounters]:
        return {r.spec.name: r.counters for r in self.readers}

    @property
    def dropped(self) -> int:
        return sum(c.dropped for c in self.counters().values())

    @property
    def reconnects(self) -> int:
        return sum(c.reconnects for c in self.counters().values())

    @property
    def unreadable(self) -> list[str]:
        return [u for c in self.counters().values() for u in c.unreadable]

    @property
    def warnings(self) -> list[str]:
        out = [w for c in self.counters().values() for w in c.warnings]
        out += [f"camera {name} failed {c.failures} time(s) (last: {c.last_error})" for name, c in self.counters().items() if c.failures]
        return out

    def close(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()
        self._stop_event.set()
        for r in self.readers:
            # a reader blocked inside its source (a live read) ends when the source is closed
            if r.thread.is_alive():
                r.thread.join(timeout=1.0)
            try:
                r._close_src()
            except Exception:  # noqa: BLE001  (closing must not hide the run's result)
                pass
            if r.thread.is_alive():
                r.thread.join(timeout=5.0)
            r._collect()
