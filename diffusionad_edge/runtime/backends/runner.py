"""One runner interface for every backend.

The public methods live in the base class (``activate`` / ``infer`` / ``deactivate``, and use as a
context manager); each backend implements the ``*_impl`` hooks only. Backends are imported lazily
inside ``activate_impl``, so importing this module needs none of them.

Every runner takes a preprocessed batch (B, 3, S, S) float32 in [0, 1] and returns the anomaly map
(B, S, S) and the image score (B,) as a :class:`RunnerOutput`. Graphs exported with a fixed batch are
fed in chunks (the last one padded), so callers may pass any batch size. :meth:`Runner.infer_many`
runs several batches; a runner with an asynchronous queue (OpenVINO with ``requests``) keeps them in
flight together.

Every inference in the toolkit goes through a runner: the bundle backends here and in
``tensorrt_runner.py``, and the PyTorch model itself (:class:`TorchRunner`, used by ``dae eval``,
``dae bench``, the noise study and the export's references). Which runner a bundle gets is decided by
the table of backends (:mod:`.backends`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...errors import DaeError
from ...optional import require


class ModelInputError(DaeError):
    """A model file's input does not have the size its bundle's metadata announces."""


@dataclass
class RunnerOutput:
    """What a runner returns for a batch: raw maps and scores, before any threshold."""

    anomaly_map: np.ndarray  # (B, S, S) float32 in [0, 1]
    score: np.ndarray  # (B,) float32


class Runner(ABC):
    """Base runner. Subclasses set ``backend``, ``fixed_batch`` and implement the ``*_impl`` hooks."""

    backend = "base"

    def __init__(self, fixed_batch: int | None = None):
        self.fixed_batch = fixed_batch
        #: the input (height, width) the bundle's metadata announces; checked against the model file on activation
        self.expected_hw: tuple[int, int] | None = None
        self.is_active = False
        #: the precision the backend really computes in, once known (e.g. OpenVINO on AMX: bf16)
        self.runtime_precision: str | None = None

    def activate(self) -> "Runner":
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
            self._check_input()
        return self

    def model_input_shape(self) -> tuple[Any, ...] | None:
        """The model file's own input shape once active (None where the backend does not say)."""
        return None

    def _check_input(self) -> None:
        shape = self.model_input_shape() if self.expected_hw is not None else None
        if not shape or len(shape) != 4:
            return
        h, w = shape[2], shape[3]
        if all(isinstance(d, int) for d in (h, w)) and (h, w) != tuple(self.expected_hw):
            eh, ew = self.expected_hw
            said = f"input.size {eh}" if eh == ew else f"input {eh}x{ew} (HxW)"
            self.deactivate()
            raise ModelInputError(f"the model file takes {h}x{w} images but the bundle's metadata says {said}: "
                                  "the bundle is inconsistent, re-export it")

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    def infer(self, batch: np.ndarray) -> RunnerOutput:
        """Anomaly maps and scores for a preprocessed batch (B, 3, S, S) float32."""
        if not self.is_active:
            self.activate()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a batch (B, 3, S, S), got shape {batch.shape}")
        n = self.fixed_batch
        if n is None or batch.shape[0] == n:
            maps, scores = self.infer_impl(batch)
            return RunnerOutput(maps[:, 0] if maps.ndim == 4 else maps, scores)
        maps_out, scores_out = [], []
        for start in range(0, batch.shape[0], n):
            chunk = batch[start : start + n]
            real = chunk.shape[0]
            if real < n:  # pad the last chunk to the graph's fixed batch
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], n - real, axis=0)])
            maps, scores = self.infer_impl(chunk)
            maps_out.append((maps[:, 0] if maps.ndim == 4 else maps)[:real])
            scores_out.append(scores[:real])
        return RunnerOutput(np.concatenate(maps_out), np.concatenate(scores_out))

    def infer_many(self, batches: list[np.ndarray]) -> list[RunnerOutput]:
        """Several batches, results in order. The default runs them one after another; runners with
        an asynchronous queue override it to keep them in flight together."""
        return [self.infer(b) for b in batches]

    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def deactivate_impl(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Release backend resources; the default just drops references."""


#: noise policies of the PyTorch runner: "fixed" is the exported graph's contract (a seeded constant,
#: the same for every image); "fresh" draws new noise for every batch (the noise study)
NOISE_POLICIES = ("fixed", "fresh")


class TorchRunner(Runner):
    """The PyTorch model itself (eager), in one of the detector's modes.

    ``mode``: one-step (what bundles run), iterative (DDPM) or ddim; ``start_t``: where the iterative
    samplers start (default t_b); ``noise``: ``"fixed"`` (:meth:`DiffusionAD.fixed_noise` of
    ``noise_seed``, the graph's contract) or ``"fresh"`` (new noise per batch). One generator, seeded
    with ``seed`` when the runner is activated, drives fresh noise and the DDPM sampler's steps, so a
    run is repeatable from activation on.
    """

    backend = "pytorch"

    def __init__(self, model, device: Any = "cpu", mode: str = "one-step", ddim_steps: int = 30, start_t: int | None = None,
                 noise: str = "fixed", seed: int = 0, noise_seed: int = 0, fixed_batch: int | None = None):
        super().__init__(fixed_batch)
        from ...config import MODES

        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if noise not in NOISE_POLICIES:
            raise ValueError(f"unknown noise policy {noise!r}; choose one of {', '.join(NOISE_POLICIES)}")
        self.model, self.device, self.mode, self.ddim_steps, self.start_t = model, device, mode, ddim_steps, start_t
        self.noise, self.seed, self.noise_seed = noise, seed, noise_seed
        self.runtime_precision = "fp32"
        #: the image scores of every batch since activation (the noise study reads them)
        self.scores_seen: list[np.ndarray] = []

    def activate_impl(self) -> None:
        import torch

        self.model = self.model.to(self.device).eval()
        self.generator = torch.Generator().manual_seed(self.seed)
        self.fixed = None if self.noise == "fresh" or self.noise_seed == 0 else self.model.fixed_noise(self.noise_seed)
        self.scores_seen = []

    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x = torch.from_numpy(batch).to(self.device)
        noise = torch.randn((2, *x.shape), generator=self.generator) if self.noise == "fresh" else self.fixed
        with torch.no_grad():
            det = self.model.detect(x, mode=self.mode, noise=noise, generator=self.generator, ddim_steps=self.ddim_steps,
                                    start_t=self.start_t)
        scores = det.score.float().cpu().numpy()
        self.scores_seen.append(scores)
        return det.anomaly_map.float().cpu().numpy(), scores


class OnnxRuntimeRunner(Runner):
    """An ONNX file (FP32 or Q/DQ INT8) in ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(self, onnx_path: str | Path, providers: list[str] | None = None, options: dict[str, Any] | None = None,
                 fixed_batch: int | None = 1):
        super().__init__(fixed_batch)
        self.path = Path(onnx_path)
        self.providers = providers or ["CPUExecutionProvider"]
        self.options = options or {}
        self.session: Any = None

    @classmethod
    def from_bundle(cls, folder: Path, meta: dict[str, Any]) -> "OnnxRuntimeRunner":
        options = meta.get("runtime_options", {})
        return cls(folder / meta["entry"], options.get("providers"), options, fixed_batch=int(meta["input"]["batch"]))

    def activate_impl(self) -> None:
        ort = require("onnxruntime")
        so = ort.SessionOptions()
        level = self.options.get("graph_optimization_level", "ORT_ENABLE_ALL")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        if "intra_op_num_threads" in self.options:
            so.intra_op_num_threads = int(self.options["intra_op_num_threads"])
        self.session = ort.InferenceSession(str(self.path), so, providers=self.providers)
        self.input_name = self.session.get_inputs()[0].name
        self.runtime_precision = None  # fp32 or int8: told by the bundle, not by the session

    def model_input_shape(self) -> tuple[Any, ...] | None:
        return tuple(self.session.get_inputs()[0].shape) if self.session is not None else None

    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps, scores = self.session.run(["anomaly_map", "score"], {self.input_name: batch})
        return maps, scores

    def deactivate_impl(self) -> None:
        self.session = None


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


def runner_predict_fn(runner: Runner) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Adapt an active runner to the evaluator's and benchmark's ``batch -> (maps, scores)``."""

    def predict(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = runner.infer(batch)
        return p.anomaly_map, p.score

    return predict


def describe_runtime_precision(precision: str, runtime: str | None) -> str:
    """What a bundle really computes in: the backend's reported float precision, and for INT8
    bundles the precision of their unquantized ops (``int8 (float ops fp32)``)."""
    if precision == "int8" and runtime:
        return f"int8 (float ops {runtime})"
    return runtime or precision
