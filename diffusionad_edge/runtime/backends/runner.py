"""One runner interface for every backend.

The public methods live in the base class (``activate`` / ``infer`` / ``deactivate``, and use as a
context manager); each backend implements the ``*_impl`` hooks only. Backends are imported lazily
inside ``activate_impl``, so importing this module needs none of them.

Every runner takes a preprocessed batch (B, 3, S, S) float32 in [0, 1] and returns the anomaly map
(B, S, S) and the image score (B,) as a :class:`RunnerOutput`. Graphs exported with a fixed batch are
fed in chunks (the last one padded), so callers may pass any batch size. :meth:`Runner.infer_many`
runs several batches; a runner with an asynchronous queue (OpenVINO with ``requests``) keeps them in
flight together.

Every inference in the toolkit goes through a runner: the bundle backends beside this module
(``onnxruntime.py``, ``openvino.py``, ``tensorrt/``), and the PyTorch model itself
(:class:`~.torch.TorchRunner`, used by ``dae eval``, ``dae bench``, the noise study and the export's
references). Which runner a bundle gets is decided by the table of backends (:mod:`.table`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...errors import DaeError


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
