"""``dae run`` as one call: the run loop (``runtime/live.py``) with what surrounds it on a line.

:func:`run_on_line` opens the model, starts the live view (``--http``) and the MQTT publisher
(``--mqtt``) when asked, opens several cameras as one :class:`~.multisource.MultiSource`, runs the
loop, and stops the publisher and the web server in the right order on the way out
(:class:`LineServices`). The CLI parses the options, calls it and prints the summary; a Python
caller does the same with its own ``say`` / ``warn``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, Protocol

from ...data.imagesize import max_pixels_from_mp
from ...data.roi import Roi
from ..bundle import Bundle, open_bundle
from ..live import RunOptions, RunSummary, check_outputs, run_stream
from ..sources import describe, open_source
from .livestate import LiveState
from .mqtt import MqttOptions, MqttPublisher
from .multisource import MultiSource, SourceSpec
from .reviewing import LineReview, check_line_review, line_review
from .serve import model_info
from .webserver import WebServer, start_server

Say = Callable[[str], None]


def warning_to_stderr(message: str) -> None:
    """The default ``warn``: one ``warning: ...`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Progress(Protocol):
    """What follows a run frame by frame (``dae run``'s status line on a terminal)."""

    def update(self, event: dict) -> None: ...

    def close(self) -> None: ...


class LineServices:
    """The run's web server and MQTT publisher, stopped in the right order on the way out."""

    def __init__(self, warn: Say = warning_to_stderr) -> None:
        self.warn = warn
        self.server: WebServer | None = None
        self.publisher: MqttPublisher | None = None
        self.review: LineReview | None = None

    def __enter__(self) -> "LineServices":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def info(bundle: Bundle, model: str | Path, cameras: list[str]) -> dict[str, Any]:
        return {**model_info(bundle, Path(model).name), "cameras": cameras}

    def start_http(self, bind: str, token: str | None, bundle: Bundle, model: str | Path, cameras: list[str],
                   say: Say = print, review_dir: Path | None = None) -> LiveState:
        """The live view at ``bind``; with ``review_dir``, its review buttons save into that folder."""
        review = line_review(review_dir, bundle, model)
        state = LiveState(self.info(bundle, model, cameras), hold_frames=review is not None)
        for name in cameras:
            state.add_camera(name)
        self.server = start_server(bind, state, token=token, warn=self.warn, review=review)
        self.review = review
        say(f"live view: {self.server.url}" + ("?token=..." if token else "")
            + (f" (review buttons save into {review.root})" if review is not None else ""))
        return state

    def start_mqtt(self, opts: MqttOptions, bundle: Bundle, model: str | Path, state: LiveState | None,
                   cameras: list[str]) -> MqttPublisher:
        review = self.review
        publisher = MqttPublisher(opts, self.info(bundle, model, cameras), warn=self.warn,
                                  stats=(lambda: {"review": review.stats()}) if review is not None else None)
        publisher.start()
        self.publisher = publisher
        if state is not None:
            state.providers["mqtt"] = publisher.stats
        return publisher

    def open_sources(self, specs: list[SourceSpec], state: LiveState | None, max_pixels: int | None = None) -> MultiSource:
        return MultiSource(specs, opener=functools.partial(open_source, max_pixels=max_pixels), warn=self.warn,
                           on_status=state.set_camera_status if state is not None else None)

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
        if self.server is not None:
            self.server.close()
            self.server = None


def run_on_line(model: str | Path, specs: list[SourceSpec], opts: RunOptions, backend: str | None = None,
                roi: Roi | None = None, max_image_mp: float | None = None, http: str | None = None,
                http_token: str | None = None, mqtt: MqttOptions | None = None, say: Say = print,
                warn: Say = warning_to_stderr, progress: Callable[[], Progress] | None = None,
                review_dir: str | Path | None = None) -> RunSummary:
    """Run the model at ``model`` (bundle folder or checkpoint) on the sources ``specs`` until they end,
    ``opts.max_frames`` or Ctrl-C / SIGTERM, and return the summary (with the MQTT counters when
    publishing).

    Several sources (or ``opts.cameras`` set, as for a sources file): they run together as one
    :class:`~.multisource.MultiSource`, ``opts.cameras`` naming them. ``roi`` replaces the model's region
    of interest; ``max_image_mp``: the largest frame in megapixels (default from the model's input);
    ``http``: serve the live view at ``[HOST]:PORT`` (with ``http_token``); ``mqtt``: publish each
    decision; ``review_dir``: with ``http``, the live page's review buttons save the frames an operator
    judges into this folder (checked before anything opens; None: no buttons). ``say``: the run's
    notices (the live view's address, what runs on what); ``warn``: warnings (a web server exposed
    without a token, a camera that failed, a broker away); ``progress``: called as the loop starts, it returns what is told of every frame (``update``) and
    closed when the loop ends (``dae run``'s status line). The outputs are checked before the
    model or a source is opened."""
    if len(specs) > 1 and not opts.cameras:
        opts.cameras = tuple(s.name for s in specs)
    several = bool(opts.cameras)
    requests = opts.requests if opts.requests > 1 else None
    check_outputs(opts)  # before the model and the source are opened
    review_dir = check_line_review(review_dir, opts.inputs) if http else None
    with open_bundle(model, backend, requests=requests) as bundle, LineServices(warn) as line:
        opts.max_pixels = max_pixels_from_mp(max_image_mp, bundle.input_hw)
        bundle.override_thresholds(opts.image_threshold, opts.pixel_threshold)
        bundle.set_roi(roi)
        cameras = [s.name for s in specs]
        where = ", ".join(f"{s.name}: {describe(s.source)}" for s in specs) if several else describe(specs[0].source)
        state = line.start_http(http, http_token, bundle, model, cameras, say, review_dir) if http else None
        publisher = line.start_mqtt(mqtt, bundle, model, state, cameras) if mqtt is not None else None
        src = line.open_sources(specs, state, opts.max_pixels) if several else None
        say(f"running {model} ({bundle.metadata.get('backend')}, {bundle.metadata.get('precision')}) on {where}"
            + ("" if opts.show else " (headless)") + (f", {requests} requests in flight" if requests else "")
            + "; Ctrl-C or SIGTERM to stop")
        follower = progress() if progress is not None else None
        try:
            summary = run_stream(bundle, specs[0].source, opts, on_frame=follower.update if follower is not None else None,
                                 src=src, state=state, publisher=publisher)
        finally:
            if follower is not None:
                follower.close()
        line.close()
        if publisher is not None:
            summary.mqtt = publisher.stats()
    return summary
