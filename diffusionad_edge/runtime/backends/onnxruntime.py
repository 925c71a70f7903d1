"""ONNX Runtime: the runner of ``onnxruntime`` bundles (an ONNX file, FP32 or Q/DQ INT8), also used by the
exporter to check the FP32 ONNX and the ONNX a TensorRT device builds from. ``onnxruntime`` is
imported only when the runner starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...optional import require
from .runner import Runner


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
