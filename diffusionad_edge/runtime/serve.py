"""``dae serve``: the bundle behind ``POST /predict`` (an image in, JSON out), for a line
controller or an MES to call.

Decoding and preprocessing run in the request's own thread; the runner is used by one request at a
time (a lock: runners keep state, such as OpenVINO's infer requests or TensorRT's buffers), so
concurrent requests queue in front of it. At most ``max_waiting`` may wait; more get ``503`` at once
rather than piling up.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from http import HTTPStatus
from typing import Any

import cv2
import numpy as np

from ..data.preprocess import to_bgr, to_rgb
from ..errors import DaeError
from .bundle import Bundle
from .livestate import LiveState
from .overlay import draw_overlay
from .web import RequestError

#: the camera name ``dae serve``'s requests are counted under in /stats and /metrics
CAMERA = "predict"


def model_info(bundle: Bundle, name: str) -> dict[str, Any]:
    """What the status message, the page title and /stats say about the model."""
    meta = bundle.metadata
    return {"model": name, "backend": meta.get("backend"), "precision": meta.get("precision"),
            "version": (meta.get("versions") or {}).get("diffusionad_edge"), "exported": meta.get("created"),
            "input_size": bundle.size, "input_hw": list(bundle.input_hw), "preprocessing": bundle.preprocessing.describe(),
            "thresholds": {"image": bundle.image_threshold, "pixel": bundle.pixel_threshold}}


class Predictor:
    """One image at a time through the bundle, for any number of request threads."""

    def __init__(self, bundle: Bundle, state: LiveState, max_waiting: int = 32):
        self.bundle, self.state, self.max_waiting = bundle, state, max_waiting
        self._runner_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.waiting = 0
        self.served = 0
        state.add_camera(CAMERA)

    def predict(self, data: bytes, overlay: bool = False) -> dict[str, Any]:
        t0 = time.perf_counter()
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
        with self._count_lock:
            if self.waiting >= self.max_waiting:
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"busy: {self.waiting} requests already wait for the model; retry later")
            self.waiting += 1
        try:
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
        finally:
            with self._count_lock:
                self.waiting -= 1
        latency = {"decode": (t1 - t0) * 1000, "preprocess": (t2 - t1) * 1000, "queue": (t3 - t2) * 1000, "inference": (t4 - t3) * 1000}
        reply: dict[str, Any] = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), "request": index,
            "score": round(result.score, 6), "normalised_score": round(result.normalised_score, 6), "decision": decision,
            "thresholds": thresholds, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
        }
        if overlay or self.state.wants_frame(CAMERA):
            t5 = time.perf_counter()
            if not overlay:  # the live page's frame: the map at the model's size is enough
                result = self.bundle.postprocess(output)[0]
            drawn = draw_overlay(to_bgr(rgb, bgr=False), result.anomaly_map, result.defect_mask, result.score, result.is_anomalous,
                                 threshold=thresholds["image"], pixel_threshold=self.bundle.thresholds.pixel_or_default)
            self.state.set_frame(CAMERA, drawn)
            if result.is_anomalous and self.state.wants_thumbnail():
                self.state.add_thumbnail(CAMERA, index, drawn, result.score)
            if overlay:
                ok, png = cv2.imencode(".png", drawn)
                reply["overlay_png"] = base64.b64encode(png.tobytes()).decode() if ok else None
            latency["overlay"] = (time.perf_counter() - t5) * 1000
        latency["total"] = (time.perf_counter() - t0) * 1000
        reply["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
        self.state.record(CAMERA, {"decision": decision, "score": reply["score"], "frame": index, "latency_ms": latency})
        return reply
