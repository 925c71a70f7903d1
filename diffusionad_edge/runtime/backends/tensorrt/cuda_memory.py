"""Page-locked host buffers, device buffers, a stream and CUDA graphs for the TensorRT runner.

Two interchangeable back-ends with the same small interface (``alloc``, ``htod``, ``dtoh``,
``sync``, ``close``): pycuda, which JetPack users usually have, and NVIDIA's cuda-python, which
also captures CUDA graphs (``capture`` / ``launch``). Both are imported only when a runner starts.
Every cuda-python call is checked: a CUDA error becomes one :class:`DaeError` line naming it.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable

import numpy as np

from ....errors import DaeError, MissingDependencyError

CUDA_HINT = ("neither pycuda nor cuda-python is importable: pip install 'diffusionad_edge[jetson]' (pycuda, "
             "on the device) or 'diffusionad_edge[cuda]' (cuda-python)")
#: CUDA errors that mean "no GPU here" rather than a bug.
_NO_GPU_ERRORS = {"cudaErrorInsufficientDriver", "cudaErrorNoDevice"}


class _PyCudaMemory:
    """Host/device buffers and a stream through pycuda."""

    def __init__(self) -> None:
        import pycuda.driver as cuda  # type: ignore[import-not-found]

        try:
            import pycuda.autoinit  # type: ignore[import-not-found]  # noqa: F401  (creates the context)
        except ImportError:
            raise
        except Exception as exc:  # pycuda's own driver errors: no GPU, no driver
            raise DaeError(f"CUDA (pycuda) could not start on this machine: {exc}") from None
        self.cuda = cuda
        self.stream = cuda.Stream()
        self.handle = self.stream.handle
        self._device: list[Any] = []

    def alloc(self, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, int]:
        host = self.cuda.pagelocked_empty(shape, dtype)
        dev = self.cuda.mem_alloc(host.nbytes)
        self._device.append(dev)
        return host, int(dev)

    def htod(self, dev: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(dev, host, self.stream)

    def dtoh(self, host: np.ndarray, dev: int) -> None:
        self.cuda.memcpy_dtoh_async(host, dev, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        for dev in self._device:
            dev.free()
        self._device = []  # page-locked host arrays are freed with their last reference


def import_cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
    except ImportError:
        from cuda import cudart  # type: ignore[import-not-found,no-redef]
    return cudart


def cuda_check(rt: Any, result: Any, what: str) -> Any:
    """Unpack a cuda-python result tuple ``(err, *values)``; a CUDA error becomes one DaeError line."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        name = getattr(err, "name", str(err))
        _, text = rt.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else str(text)
        hint = " (no usable NVIDIA driver/GPU here: TensorRT engines run on the device)" if name in _NO_GPU_ERRORS else ""
        raise DaeError(f"CUDA {what} failed: {name}: {text}{hint}")
    return values[0] if len(values) == 1 else tuple(values)


class _CudaPythonMemory:
    """The same through cuda-python's runtime API (and CUDA graphs, which pycuda lacks)."""

    def __init__(self) -> None:
        self.rt = import_cudart()
        self._host: list[int] = []
        self._device: list[int] = []
        self.stream = cuda_check(self.rt, self.rt.cudaStreamCreate(), "cudaStreamCreate")
        self.handle = int(self.stream)

    def alloc(self, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, int]:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        host_ptr = int(cuda_check(self.rt, self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._host.append(host_ptr)
        host = np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(host_ptr)).view(dtype).reshape(shape)
        dev = int(cuda_check(self.rt, self.rt.cudaMalloc(nbytes), "cudaMalloc"))
        self._device.append(dev)
        return host, dev

    def htod(self, dev: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda_check(self.rt, self.rt.cudaMemcpyAsync(dev, host.ctypes.data, host.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def dtoh(self, host: np.ndarray, dev: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(self.rt, self.rt.cudaMemcpyAsync(host.ctypes.data, dev, host.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def sync(self) -> None:
        cuda_check(self.rt, self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def capture(self, enqueue: Callable[[], None]) -> Any:
        """Record ``enqueue`` on the stream as a CUDA graph; returns the instantiated graph.
        Thread-local capture: CUDA calls from other threads (capture, output) stay legal."""
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_check(self.rt, self.rt.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        finally:
            graph = cuda_check(self.rt, self.rt.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
        graph_exec = cuda_check(self.rt, self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        cuda_check(self.rt, self.rt.cudaGraphDestroy(graph), "cudaGraphDestroy")  # the executable graph is independent
        return graph_exec

    def launch(self, graph_exec: Any) -> None:
        cuda_check(self.rt, self.rt.cudaGraphLaunch(graph_exec, self.stream), "cudaGraphLaunch")

    def destroy_graph(self, graph_exec: Any) -> None:
        cuda_check(self.rt, self.rt.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")

    def close(self) -> None:
        for dev in self._device:
            self.rt.cudaFree(dev)
        for host in self._host:
            self.rt.cudaFreeHost(host)
        self._device, self._host = [], []
        self.rt.cudaStreamDestroy(self.stream)


def open_cuda_memory(want_graphs: bool = False) -> Any:
    """Buffers and a stream through pycuda (JetPack's usual choice) or cuda-python, whichever is
    importable; cuda-python first when CUDA graphs are wanted, since only it can capture them."""
    order = [_CudaPythonMemory, _PyCudaMemory] if want_graphs else [_PyCudaMemory, _CudaPythonMemory]
    for backend in order:
        try:
            return backend()
        except ImportError:
            continue
    raise MissingDependencyError(CUDA_HINT)
