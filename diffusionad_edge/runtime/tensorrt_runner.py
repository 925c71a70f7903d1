"""TensorRT runner (TensorRT 10 API): page-locked host buffers, device buffers and a stream,
every I/O tensor bound by name with ``set_tensor_address``, ``execute_async_v3``, and optional
CUDA-graph replay. Uses pycuda when present, cuda-python otherwise.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DaeError, MissingDependencyError
from .runners import Runner
from .tensorrt_engine import (FINGERPRINT, TRT_HINT, EngineMismatchError, build_engine, current_gpu_name, find_engine,
                              require_real_tensorrt)


class _PyCudaMemory:
    """Host/device buffers and a stream through pycuda."""

    def __init__(self) -> None:
        import pycuda.autoinit  # type: ignore[import-not-found]  # noqa: F401  (creates the context)
        import pycuda.driver as cuda  # type: ignore[import-not-found]

        self.cuda = cuda
        self.stream = cuda.Stream()
        self.handle = self.stream.handle

    def alloc(self, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, int, Any]:
        host = self.cuda.pagelocked_empty(shape, dtype)
        dev = self.cuda.mem_alloc(host.nbytes)
        return host, int(dev), dev

    def htod(self, dev: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(dev, host, self.stream)

    def dtoh(self, host: np.ndarray, dev: int) -> None:
        self.cuda.memcpy_dtoh_async(host, dev, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()


class _CudaPythonMemory:
    """The same through cuda-python's runtime API (and CUDA graphs, which pycuda lacks)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
        except ImportError:
            from cuda import cudart  # type: ignore[import-not-found,no-redef]
        self.rt = cudart
        err, self.stream = cudart.cudaStreamCreate()
        self._check(err)
        self.handle = int(self.stream)

    def _check(self, err: Any) -> None:
        if int(err) != 0:
            raise DaeError(f"CUDA error {err}")

    def alloc(self, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, int, Any]:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        err, host_ptr = self.rt.cudaMallocHost(nbytes)
        self._check(err)
        host = np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(host_ptr)).view(dtype).reshape(shape)
        err, dev = self.rt.cudaMalloc(nbytes)
        self._check(err)
        return host, int(dev), dev

    def htod(self, dev: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dev, host.ctypes.data, host.nbytes, kind, self.stream)[0])

    def dtoh(self, host: np.ndarray, dev: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, dev, host.nbytes, kind, self.stream)[0])

    def sync(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream)[0])


def _memory() -> Any:
    try:
        return _PyCudaMemory()
    except ImportError:
        pass
    try:
        return _CudaPythonMemory()
    except ImportError:
        raise MissingDependencyError(
            "neither pycuda nor cuda-python is importable: pip install 'diffusionad_edge[jetson]' (pycuda) or cuda-python"
        ) from None


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

        self.mem = _memory()
        logger = trt.Logger(trt.Logger.WARNING)
        self.trt_runtime = trt.Runtime(logger)
        self.engine = self.trt_runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise DaeError(f"TensorRT could not load {self.engine_path}; rebuild it with --build-engine")
        self.context = self.engine.create_execution_context()
        self.inputs: dict[str, tuple[np.ndarray, int]] = {}
        self.outputs: dict[str, tuple[np.ndarray, int]] = {}
        self._keep: list[Any] = []  # device allocations live as long as the runner
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dims = self.engine.get_tensor_shape(name)
            shape = tuple(int(dims[j]) for j in range(len(dims)))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            host, dev, handle = self.mem.alloc(shape, dtype)
            self._keep.append(handle)
            self.context.set_tensor_address(name, dev)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs[name] = (host, dev)
            else:
                self.outputs[name] = (host, dev)

    def _enqueue(self) -> None:
        for host, dev in self.inputs.values():
            self.mem.htod(dev, host)
        if not self.context.execute_async_v3(self.mem.handle):
            raise DaeError("TensorRT execute_async_v3 failed")
        for host, dev in self.outputs.values():
            self.mem.dtoh(host, dev)

    def _capture_graph(self) -> None:
        """Record one enqueue as a CUDA graph (cuda-python only) and replay it afterwards."""
        rt = getattr(self.mem, "rt", None)
        if rt is None:
            self.use_cuda_graph = False  # pycuda has no graph capture: plain enqueues
            return
        rt.cudaStreamBeginCapture(self.mem.stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal)
        self._enqueue()
        _, graph = rt.cudaStreamEndCapture(self.mem.stream)
        _, self._graph_exec = rt.cudaGraphInstantiate(graph, 0)

    def infer_impl(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (host_in, _), = self.inputs.values()
        np.copyto(host_in, batch.astype(host_in.dtype, copy=False))
        if self.use_cuda_graph and self._graph_exec is None:
            self.context.execute_async_v3(self.mem.handle)  # TensorRT needs one run before capture
            self.mem.sync()
            self._capture_graph()
        if self._graph_exec is not None:
            self.mem.rt.cudaGraphLaunch(self._graph_exec, self.mem.stream)
        else:
            self._enqueue()
        self.mem.sync()
        return self.outputs["anomaly_map"][0].astype(np.float32), self.outputs["score"][0].astype(np.float32)

    def deactivate_impl(self) -> None:
        self._graph_exec = None
        del self.context, self.engine  # releases the TensorRT objects before their buffers
        self._keep = []
