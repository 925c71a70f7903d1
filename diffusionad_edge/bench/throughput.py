"""Throughput of an OpenVINO bundle with several inference requests in flight.

``dae bench`` rows measure latency: one frame at a time, as a camera loop runs. OpenVINO's own
``benchmark_app`` reports, by default, throughput: the THROUGHPUT performance hint and as many
asynchronous requests as the device likes. This row measures the same way, through the bundle's
runner opened with ``requests=0`` (OpenVINO's optimal number) and the THROUGHPUT hint — the runner
option ``dae run --requests`` uses too — and says so: model only (inputs prepared in advance),
latency per request under load.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..runtime.bundle import load_bundle, read_metadata
from .benchmark import BenchConfig, Row, _pcts, bundle_row
from .machine import peak_rss_mib, reset_peak_rss


def openvino_throughput(path: Path, cfg: BenchConfig, gflop: float | None = None) -> Row | None:
    """A throughput row for an OpenVINO bundle (None for other backends): ``cfg.iterations`` rounds
    of as many requests as OpenVINO's optimal number, or ``cfg.seconds`` of them."""
    if read_metadata(path)["backend"] != "openvino":
        return None
    reset_peak_rss()
    with load_bundle(path, requests=0, performance_hint="THROUGHPUT") as bundle:
        meta, runner = bundle.metadata, bundle.runner
        runner.activate()
        requests = runner.requests
        (h, w), batch = bundle.input_hw, int(meta["input"]["batch"])
        x = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
        runner.infer_many([x] * (max(cfg.warmup, 1) * requests))
        latencies: list[float] = []
        submitted, t0 = 0, time.perf_counter()
        # Without a time limit all inputs go in one call: the queue never drains between rounds.
        step = cfg.iterations * requests if cfg.seconds is None else requests
        while submitted < cfg.iterations * requests:
            runner.infer_many([x] * step)  # blocks while every request is busy
            latencies += runner.request_latencies_ms
            submitted += step
            if cfg.seconds is not None and time.perf_counter() - t0 > cfg.seconds:
                break
        wall = time.perf_counter() - t0
        row = bundle_row(path, meta, runner.runtime_precision, gflop, suffix=" throughput")
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
