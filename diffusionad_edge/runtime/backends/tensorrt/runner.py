"""TensorRT runner (TensorRT 10 API): page-locked host buffers, device buffers and a stream
(``cuda_memory.py``), every I/O tensor bound by name with ``set_tensor_address``,
``execute_async_v3``, and optional CUDA-graph replay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ....errors import DaeError, MissingDependencyError
from ..runner import Runner
from .cuda_memory import open_cuda_memory
from .engine import FINGERPRINT, TRT_HINT, EngineMismatchError, build_engine, current_gpu_name, find_engine, require_real_tensorrt


class TensorRTRunner(Runner):
    """Runs a bundle's TensorRT engine (built on this device by ``dae export BUNDLE --build-engine``)."""

    backend = "tensorrt"

    def __init__(self, engine_path: Path, fixed_batch: int, precision: str, use_cuda_graph: bool = False):
        super().__init__(fixed_batch)
        self.engine_path = engine_path
        self.runtime_precision = precision
        self.use_cuda_graph = use_cuda_graph
        self._graph_exec: Any = None

    @classmethod
    def from_bundle(cls, folder: Path, meta: dict[str, Any]) -> "TensorRTRunner":
        try:
            import tensorrt as trt
        except ImportError:
            raise MissingDependencyError(TRT_HINT) from None
        require_real_tensorrt(trt)
        gpu = current_gpu_name()
        plan = meta["tensorrt"]
        try:
            engine = find_engine(folder, trt.__version__, gpu)
        except EngineMismatchError:
            if (folder / FINGERPRINT).is_file():
                raise  # an engine from another TensorRT/GPU: refuse, the message says how to rebuild
            # First run on this device: build the engine now (minutes), then use it.
            engine = build_engine(folder, plan, gpu_name=gpu)
        return cls(engine, int(meta["input"]["batch"]), plan["precision"], bool(plan.get("cuda_graph")))

    def activate_impl(self) -> None:
        import tensorrt as trt

        self.mem = open_cuda_memory(want_graphs=self.use_cuda_graph)
        logger = trt.Logger(trt.Logger.WARNING)
        self.trt_runtime = trt.Runtime(logger)
        self.engine = self.trt_runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise DaeError(f"TensorRT could not load {self.engine_path}; rebuild it with --build-engine")
        self.context = self.engine.create_execution_context()
        self.inputs: dict[str, tuple[np.ndarray, int]] = {}
        self.outputs: dict[str, tuple[np.ndarray, int]] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dims = self.engine.get_tensor_shape(name)
            shape = tuple(int(dims[j]) for j in range(len(dims)))
            if any(d < 0 for d in shape):
                raise DaeError(f"engine tensor {name!r} has a dynamic shape {shape}; bundles export fixed shapes: rebuild it")
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            host, dev = self.mem.alloc(shape, dtype)
            self.context.set_tensor_address(name, dev)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs[name] = (host, dev)
            else:
                self.outputs[name] = (host, dev)
        missing = {"image", "anomaly_map", "score"} - set(self.inputs) - set(self.outputs)
        if missing or len(self.inputs) != 1:
            raise DaeError(f"{self.engine_path} is not a DiffusionAD bundle engine (I/O {sorted(self.inputs) + sorted(self.outputs)})")
        if self.use_cuda_graph and not hasattr(self.mem, "capture"):
            self.use_cuda_graph = False  # pycuda has no graph capture: plain enqueues

    def model_input_shape(self) -> tuple[int, ...] | None:
        """The engine's input shape once active: a bundle whose metadata says another size is refused."""
        inputs = getattr(self, "inputs", None)
        return tuple(inputs["image"][0].shape) if inputs and "image" in inputs else None

    def _enqueue(self) -> None:
        for host, dev in self.inputs.values():
            self.mem.htod(dev, host)
        if not self.context.execute_async_v3(self.mem.handle):
            raise DaeError("TensorRT execute_async_v3 failed")
        for host, dev in self.outputs.values():
            self.mem.dtoh(host, dev)

    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        host_in, _ = self.inputs["image"]
        np.copyto(host_in, batch.astype(host_in.dtype, copy=False))
        if self.use_cuda_graph and self._graph_exec is None:
            # TensorRT needs one ordinary run before capture; then copies + engine replay as one graph
            # (the page-locked buffers never move, so the recorded addresses stay valid).
            self._enqueue()
            self.mem.sync()
            self._graph_exec = self.mem.capture(self._enqueue)
        if self._graph_exec is not None:
            self.mem.launch(self._graph_exec)
        else:
            self._enqueue()
        self.mem.sync()
        return self.outputs["anomaly_map"][0].astype(np.float32), self.outputs["score"][0].astype(np.float32)

    def deactivate_impl(self) -> None:
        if self._graph_exec is not None:
            self.mem.destroy_graph(self._graph_exec)
            self._graph_exec = None
        del self.context, self.engine  # releases the TensorRT objects before their buffers
        self.mem.close()
