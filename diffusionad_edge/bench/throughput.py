"""Throughput of an OpenVINO bundle with several inference requests in flight.

``dae bench`` rows measure latency: one frame at a time, as a camera loop runs. OpenVINO's own
``benchmark_app`` reports, by default, throughput: the THROUGHPUT performance hint and as many
asynchronous requests as the device likes. This row measures the same way, so the two can be
compared, and says so: model only (inputs prepared in advance), latency per request under load.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from ..export.bundle import load_artifact
from ..optional import require
from ..runtime.runners import openvino_precision_name
from .benchmark import BenchConfig, Row, _pcts, bundle_row
from .machine import peak_rss_mib, reset_peak_rss


def openvino_throughput(path: Path, cfg: BenchConfig, gflop: float | None = None) -> Row | None:
    """A throughput row for an OpenVINO bundle (None for other backends): ``cfg.iterations`` rounds
    of as many requests as OpenVINO's optimal number, or ``cfg.seconds`` of them."""
    reset_peak_rss()
    with load_artifact(path) as art:  # verifies the bundle; its runner is not started
        meta, runner = art.metadata, art.runner
        if meta["backend"] != "openvino":
            return None
        ov = require("openvino")
        config = {**runner.config, "PERFORMANCE_HINT": "THROUGHPUT"}
        compiled = ov.Core().compile_model(str(runner.path), runner.device, config)
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, requests)
    latencies: list[float] = []
    lock = threading.Lock()

    def finished(request, started: float) -> None:  # called on OpenVINO's threads
        with lock:
            latencies.append((time.perf_counter() - started) * 1000)

    queue.set_callback(finished)
    size, batch = int(meta["input"]["size"]), int(meta["input"]["batch"])
    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    for _ in range(max(cfg.warmup, 1) * requests):
        queue.start_async({0: x}, time.perf_counter())
    queue.wait_all()
    latencies.clear()

    submitted, t0 = 0, time.perf_counter()
    while submitted < cfg.iterations * requests:
        queue.start_async({0: x}, time.perf_counter())  # blocks while every request is busy
        submitted += 1
        if cfg.seconds is not None and time.perf_counter() - t0 > cfg.seconds:
            break
    queue.wait_all()
    wall = time.perf_counter() - t0

    try:
        runtime = openvino_precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    except RuntimeError:  # not every device reports it
        runtime = None
    row = bundle_row(path, meta, runtime, gflop, suffix=" throughput")
    zeros = _pcts([0.0])
    row.latency_ms = {"preprocess": zeros, "inference": _pcts(latencies), "postprocess": zeros, "total": _pcts(latencies)}
    row.iterations = submitted
    row.fps = submitted * batch / wall
    if row.gflop_per_image is not None:
        row.gflops_achieved = row.gflop_per_image * row.fps
    row.peak_rss_mib = peak_rss_mib()
    row.mode = "throughput"
    row.note = (f"throughput: {requests} requests in flight (THROUGHPUT hint, as benchmark_app), inputs prepared in advance; "
                "FPS = images / wall time, latency per request under load")
    return row
