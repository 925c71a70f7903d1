"""``dae serve``: the bundle behind ``POST /predict`` (an image in, JSON out), for a line
controller or an MES to call; :func:`serve_bundle` is the whole command (the CLI parses the options,
calls it and prints what was served).

Decoding and preprocessing run in the request's own thread; the runner is used by one request at a
time (a lock: runners keep state, such as OpenVINO's infer requests or TensorRT's buffers), so
concurrent requests queue in front of it. At most ``max_waiting`` requests may be in the predictor
at once (decoding, waiting for the runner or running); more get ``503`` with ``Retry-After`` at once,
before anything is decoded, rather than piling up. The image's size is read from its header before
decoding: one over ``max_pixels`` gets ``413`` and is never decoded (a small PNG can decode to
gigabytes). Together the two bound the memory requests can take: about ``max_waiting`` decoded images
of at most ``max_pixels`` each.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ...data.imagesize import ImageTooLarge, check_image_size, default_max_pixels, max_pixels_from_mp
from ...data.preprocess import to_bgr, to_rgb
from ...errors import DaeError
from ..bundle import Bundle, open_bundle
from ..overlay import draw_overlay
from .livestate import LiveState
from .reviewing import check_line_review, line_review
from .webserver import RequestError, backlog_for, start_server

#: the camera name ``dae serve``'s requests are counted under in /stats and /metrics
CAMERA = "predict"
#: seconds a stopping server waits for the requests it is answering
DRAIN_S = 30.0


def model_info(bundle: Bundle, name: str) -> dict[str, Any]:
    """What the status message, the page title and /stats say about the model."""
    meta = bundle.metadata
    return {"model": name, "backend": meta.get("backend"), "precision": meta.get("precision"),
            "version": (meta.get("versions") or {}).get("diffusionad_edge"), "exported": meta.get("created"),
            "input_size": bundle.size, "input_hw": list(bundle.input_hw), "preprocessing": bundle.preprocessing.describe(),
            "thresholds": {"image": bundle.image_threshold, "pixel": bundle.pixel_threshold}}


class Predictor:
    """One image at a time through the bundle, for any number of request threads."""

    #: seconds a client told 503 is asked to wait before it retries
    RETRY_AFTER_S = 1

    def __init__(self, bundle: Bundle, state: LiveState, max_waiting: int = 32, max_pixels: int | None = None):
        self.bundle, self.state, self.max_waiting = bundle, state, max_waiting
        self.max_pixels = default_max_pixels(bundle.input_hw) if max_pixels is None else max_pixels
        self._runner_lock = threading.Lock()
        self._count_lock = threading.Lock()
        #: requests in the predictor now (decoding, waiting for the runner, or running)
        self.waiting = 0
        self.served = 0
        state.add_camera(CAMERA)

    def predict(self, data: bytes, overlay: bool = False) -> dict[str, Any]:
        """One request's image (the file's bytes) through the bundle; :class:`RequestError` with the
        status to answer (503 busy, 413 too many pixels, 400 unreadable) otherwise."""
        with self._count_lock:
            if self.waiting >= self.max_waiting:
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"busy: {self.waiting} requests are already in progress "
                                   "(--max-waiting); retry later", {"Retry-After": str(self.RETRY_AFTER_S)})
            self.waiting += 1
        try:
            return self._predict(data, overlay)
        finally:
            with self._count_lock:
                self.waiting -= 1

    def _predict(self, data: bytes, overlay: bool) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:  # the header only: an image over the limit is never decoded
            check_image_size(data, self.max_pixels, f"in the request ({len(data)} bytes)")
        except ImageTooLarge as exc:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc)) from None
        except DaeError:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unreadable image ({len(data)} bytes): not a supported image format, "
                               "or corrupt") from None
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unreadable image ({len(data)} bytes): not a supported image format, or corrupt")
        try:
            rgb = to_rgb(img, bgr=True)
        except DaeError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unusable image: {exc}") from None
        t1 = time.perf_counter()
        try:  # a ROI that does not fit this image, or a tile larger than it: the client's mistake
            frame = self.bundle.prepare_frame(rgb)
        except DaeError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unusable image: {exc}") from None
        t2 = time.perf_counter()
        with self._runner_lock:
            t3 = time.perf_counter()
            output = self.bundle.infer(frame.batch)
            if frame.layout is None:
                result = self.bundle.postprocess(output, frame_hw=rgb.shape[:2] if overlay else None)[0]
            else:  # ROI / tiles: the map is at frame size already
                result = self.bundle.finish_frame(output, frame)
            decision = self.bundle.decision(result)
            thresholds = {"image": self.bundle.image_threshold, "pixel": self.bundle.pixel_threshold}
            self.served += 1
            index = self.served - 1
            t4 = time.perf_counter()
        latency = {"decode": (t1 - t0) * 1000, "preprocess": (t2 - t1) * 1000, "queue": (t3 - t2) * 1000, "inference": (t4 - t3) * 1000}
        reply: dict[str, Any] = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), "request": index,
            "score": round(result.score, 6), "normalised_score": round(result.normalised_score, 6), "decision": decision,
            "thresholds": thresholds, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
        }
        # The request's image as it came (decoded, before any conversion) for the review buttons.
        held = self.state.held_frame(img, True, CAMERA, index, result.score, decision)
        if overlay or self.state.wants_frame(CAMERA):
            t5 = time.perf_counter()
            if not overlay:  # the live page's frame: the map at the model's size is enough
                result = self.bundle.postprocess(output)[0]
            drawn = draw_overlay(to_bgr(rgb, bgr=False), result.anomaly_map, result.defect_mask, result.score, result.is_anomalous,
                                 threshold=thresholds["image"], pixel_threshold=self.bundle.thresholds.pixel_or_default)
            self.state.set_frame(CAMERA, drawn)
            if result.is_anomalous and self.state.wants_thumbnail():
                self.state.add_thumbnail(CAMERA, index, drawn, result.score, held)
            if overlay:
                ok, png = cv2.imencode(".png", drawn)
                reply["overlay_png"] = base64.b64encode(png.tobytes()).decode() if ok else None
            latency["overlay"] = (time.perf_counter() - t5) * 1000
        latency["total"] = (time.perf_counter() - t0) * 1000
        reply["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
        self.state.record(CAMERA, {"decision": decision, "score": reply["score"], "frame": index, "latency_ms": latency}, held)
        return reply


def serve_bundle(model: str | Path, bind: str = ":8080", token: str | None = None, backend: str | None = None,
                 image_threshold: float | None = None, pixel_threshold: float | None = None, max_body: int = 16 << 20,
                 max_waiting: int = 32, max_image_mp: float | None = None, say: Callable[[str], None] = print,
                 warn: Callable[[str], None] | None = None, review_dir: str | Path | None = None) -> dict[str, Any]:
    """Serve the model at ``model`` (bundle folder or checkpoint) at ``bind`` (``[HOST]:PORT``) until
    Ctrl-C or SIGTERM (a :class:`KeyboardInterrupt`); the requests already accepted are answered first
    (up to ``DRAIN_S`` seconds). Returns the final ``/stats``.

    ``token``: every request must carry it; ``max_body``: the largest request body in bytes (413
    above); ``max_waiting``: requests in progress at once (503 above; the accept backlog is sized from
    it); ``max_image_mp``: the largest image in megapixels (default from the model's input). ``say``:
    the address once serving; ``warn``: a server exposed without a token; ``review_dir``: the page's
    review buttons save the images an operator judges into this folder (checked before the model
    opens; None: no buttons)."""
    review_dir = check_line_review(review_dir, [("the model", model)])
    with open_bundle(model, backend) as bundle:
        bundle.override_thresholds(image_threshold, pixel_threshold)
        review = line_review(review_dir, bundle, model)
        state = LiveState(model_info(bundle, Path(model).name), hold_frames=review is not None)
        predictor = Predictor(bundle, state, max_waiting=max_waiting, max_pixels=max_pixels_from_mp(max_image_mp, bundle.input_hw))
        bundle.infer(np.zeros((1, 3, *bundle.input_hw), np.float32))  # activate the runner before the first request
        server = start_server(bind, state, token=token, predictor=predictor, max_body=max_body, warn=warn,
                              backlog=backlog_for(max_waiting), review=review)
        say(f"serving {model} ({bundle.metadata.get('backend')}, {bundle.metadata.get('precision')}) at {server.url}: "
            "POST /predict, GET /stats, /metrics; Ctrl-C to stop"
            + (f"; the page's review buttons save into {review.root}" if review is not None else ""))
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (forwarded by the CLI)
            pass
        finally:
            server.close(drain_s=DRAIN_S)  # requests already accepted are answered, not cut
        return state.stats()
