"""One runner interface for every backend.

The public methods live in the base class (``activate`` / ``infer`` / ``deactivate``, and use as a
context manager); each backend implements the ``*_impl`` hooks only. Backends are imported lazily
inside ``activate_impl``, so importing this module needs none of them.

Every runner takes a preprocessed batch (B, 3, S, S) float32 in [0, 1] and returns the anomaly map
(B, S, S) and the image score (B,). Graphs exported with a fixed batch are fed in chunks (the last
one padded), so callers may pass any batch size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..optional import require


@dataclass
class Prediction:
    anomaly_map: np.ndarray  # (B, S, S) float32 in [0, 1]
    score: np.ndarray  # (B,) float32


class Runner(ABC):
    """Base runner. Subclasses set ``backend``, ``fixed_batch`` and implement the ``*_impl`` hooks."""

    backend = "base"

    def __init__(self, fixed_batch: int | None = None):
        self.fixed_batch = fixed_batch
        self.is_active = False
        #: the precision the backend really computes in, once known (e.g. OpenVINO on AMX: bf16)
        self.runtime_precision: str | None = None

    def activate(self) -> "Runner":
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    def infer(self, batch: np.ndarray) -> Prediction:
        """Anomaly maps and scores for a preprocessed batch (B, 3, S, S) float32."""
        if not self.is_active:
            self.activate()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a batch (B, 3, S, S), got shape {batch.shape}")
        n = self.fixed_batch
        if n is None or batch.shape[0] == n:
            maps, scores = self.infer_impl(batch)
            return Prediction(maps[:, 0] if maps.ndim == 4 else maps, scores)
        maps_out, scores_out = [], []
        for start in range(0, batch.shape[0], n):
            chunk = batch[start : start + n]
            real = chunk.shape[0]
            if real < n:  # pad the last chunk to the graph's fixed batch
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], n - real, axis=0)])
            maps, scores = self.infer_impl(chunk)
            maps_out.append((maps[:, 0] if maps.ndim == 4 else maps)[:real])
            scores_out.append(scores[:real])
        return Prediction(np.concatenate(maps_out), np.concatenate(scores_out))

    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def deactivate_impl(self) -> None:
        """Release backend resources; the default just drops references."""


class TorchRunner(Runner):
    """The PyTorch model itself (eager), in one of the detector's modes."""

    backend = "pytorch"

    def __init__(self, model, device: str = "cpu", mode: str = "one-step", ddim_steps: int = 30):
        super().__init__(None)
        self.model, self.device, self.mode, self.ddim_steps = model, device, mode, ddim_steps
        self.runtime_precision = "fp32"

    def activate_impl(self) -> None:
        self.model = self.model.to(self.device).eval()

    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        g = torch.Generator().manual_seed(0)
        det = self.model.detect(torch.from_numpy(batch).to(self.device), mode=self.mode, generator=g, ddim_steps=self.ddim_steps)
        return det.anomaly_map.float().cpu().numpy(), det.score.float().cpu().numpy()


class OnnxRuntimeRunner(Runner):
    """An ONNX file (FP32 or Q/DQ INT8) in ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(self, onnx_path: str | Path, providers: list[str] | None = None, options: dict[str, Any] | None = None, fixed_batch: int | None = 1):
        super().__init__(fixed_batch)
        self.path = Path(onnx_path)
        self.providers = providers or ["CPUExecutionProvider"]
        self.options = options or {}
        self.session: Any = None

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

    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps, scores = self.session.run(["anomaly_map", "score"], {self.input_name: batch})
        return maps, scores

    def deactivate_impl(self) -> None:
        self.session = None


class OpenVINORunner(Runner):
    """An OpenVINO IR (.xml + .bin) compiled for a device (CPU, GPU, NPU)."""

    backend = "openvino"

    def __init__(self, xml_path: str | Path, device: str = "CPU", config: dict[str, Any] | None = None, fixed_batch: int | None = 1):
        super().__init__(fixed_batch)
        self.path = Path(xml_path)
        self.device = device
        self.config = {k: str(v) for k, v in (config or {}).items()}
        self.compiled: Any = None

    def activate_impl(self) -> None:
        ov = require("openvino")
        core = ov.Core()
        self.compiled = core.compile_model(str(self.path), self.device, self.config)
        self.request = self.compiled.create_infer_request()
        try:
            self.runtime_precision = openvino_precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        except RuntimeError:  # not every device reports it
            self.runtime_precision = None

    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.request.infer({0: batch})
        return np.asarray(out["anomaly_map"]), np.asarray(out["score"])

    def deactivate_impl(self) -> None:
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
