"""OpenVINO: the runner of ``openvino`` bundles (an IR compiled for CPU, GPU or NPU), synchronous or
with a ring of asynchronous requests. ``openvino`` is imported only when the runner starts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ...optional import require
from .runner import Runner, RunnerOutput


class OpenVINORunner(Runner):
    """An OpenVINO IR (.xml + .bin) compiled for a device (CPU, GPU, NPU).

    ``requests``: how many asynchronous inference requests :meth:`infer_many` keeps in flight
    (0 = the number OpenVINO finds optimal for the device). With 1 (the default)
    every inference is synchronous: the right mode for a camera loop's latency. Several requests raise
    throughput on many-core CPUs at the cost of latency; pair them with ``PERFORMANCE_HINT=THROUGHPUT``.
    """

    backend = "openvino"

    def __init__(self, xml_path: str | Path, device: str = "CPU", config: dict[str, Any] | None = None,
                 fixed_batch: int | None = 1, requests: int = 1):
        super().__init__(fixed_batch)
        self.path = Path(xml_path)
        self.device = device
        self.config = {k: str(v) for k, v in (config or {}).items()}
        self.requests = requests
        self.compiled: Any = None
        self.queue: Any = None
        #: latency (ms) of every request of the last :meth:`infer_many`, from submission to completion
        self.request_latencies_ms: list[float] = []

    @classmethod
    def from_bundle(cls, folder: Path, meta: dict[str, Any], requests: int = 1, performance_hint: str | None = None) -> "OpenVINORunner":
        config = dict(meta.get("runtime_options", {}).get("config", {}))
        if performance_hint:
            config["PERFORMANCE_HINT"] = performance_hint
        return cls(folder / meta["entry"], meta["target"]["device"], config, fixed_batch=int(meta["input"]["batch"]), requests=requests)

    def activate_impl(self) -> None:
        ov = require("openvino")
        core = ov.Core()
        self.compiled = core.compile_model(str(self.path), self.device, self.config)
        self.request = self.compiled.create_infer_request()
        try:
            self.runtime_precision = openvino_precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        except RuntimeError:  # not every device reports it
            self.runtime_precision = None
        if self.requests != 1:
            n = self.requests or int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self.requests = n
            # Our own ring of requests rather than ov.AsyncInferQueue: its Python callbacks run on
            # OpenVINO's threads and can deadlock (GIL) when the compiled model is released.
            self.queue = [self.compiled.create_infer_request() for _ in range(n)]

    def model_input_shape(self) -> tuple[Any, ...] | None:
        if self.compiled is None:
            return None
        shape = self.compiled.input(0).get_partial_shape()
        return tuple(d.get_length() for d in shape) if shape.is_static else None

    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.request.infer({0: batch})
        return np.asarray(out["anomaly_map"]), np.asarray(out["score"])

    def infer_many(self, batches: list[np.ndarray]) -> list[RunnerOutput]:
        if not self.is_active:
            self.activate()
        n = self.fixed_batch
        if self.queue is None or any(b.ndim != 4 or (n is not None and b.shape[0] != n) for b in batches):
            return super().infer_many(batches)
        results: list[Any] = [None] * len(batches)
        latencies: list[float] = [0.0] * len(batches)
        pending: list[tuple[int, float] | None] = [None] * len(self.queue)

        def collect(k: int) -> None:
            request, (index, started) = self.queue[k], pending[k]
            request.wait()  # releases the GIL while the request runs
            latencies[index] = (time.perf_counter() - started) * 1000
            maps = np.array(request.get_tensor("anomaly_map").data)
            results[index] = RunnerOutput(maps[:, 0] if maps.ndim == 4 else maps, np.array(request.get_tensor("score").data))
            pending[k] = None

        for i, b in enumerate(batches):  # round robin: wait for a request's previous job before reusing it
            k = i % len(self.queue)
            if pending[k] is not None:
                collect(k)
            self.queue[k].start_async({0: np.ascontiguousarray(b, dtype=np.float32)})
            pending[k] = (i, time.perf_counter())
        for k in sorted(range(len(self.queue)), key=lambda k: pending[k][0] if pending[k] else -1):
            if pending[k] is not None:
                collect(k)
        self.request_latencies_ms = latencies
        return results

    def deactivate_impl(self) -> None:
        self.queue = None
        self.request = None
        self.compiled = None


def openvino_precision_name(ov_type: Any) -> str:
    """OpenVINO element type (f32, bf16, f16) -> fp32 / bf16 / fp16."""
    name = ov_type.get_type_name() if hasattr(ov_type, "get_type_name") else str(ov_type)
    return {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}.get(name, name)
