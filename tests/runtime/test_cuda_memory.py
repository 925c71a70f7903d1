"""The CUDA side of the TensorRT runner, checked against the real cuda-python bindings.

cuda-python imports without a GPU; every call then returns an error code. So here we check (1)
that every cudart function our code calls exists with the number of arguments we pass, and (2)
that on a machine without a GPU the runner's CUDA start fails with one clear line, not a traceback.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from diffusionad_edge.errors import DaeError

cudart = pytest.importorskip("cuda.bindings.runtime", reason="needs cuda-python ([dev] extra)")

ROOT = Path(__file__).resolve().parents[2]
CUDA_MODULES = [ROOT / "diffusionad_edge/runtime/backends/tensorrt/cuda_memory.py", ROOT / "diffusionad_edge/runtime/backends/tensorrt/engine.py"]
#: How our code names the cudart module: ``self.rt.X``, ``rt.X`` or ``cudart.X``.
RUNTIME_NAMES = {"rt", "cudart"}


def _runtime_attr_chain(node: ast.AST) -> list[str] | None:
    """``self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice`` -> ['cudaMemcpyKind', 'cudaMemcpyHostToDevice']."""
    chain: list[str] = []
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
        if isinstance(node, ast.Attribute) and node.attr in RUNTIME_NAMES and isinstance(node.value, ast.Name) and node.value.id == "self":
            return chain[::-1]
        if isinstance(node, ast.Name) and node.id in RUNTIME_NAMES:
            return chain[::-1]
    return None


def _documented_arity(func) -> int:
    """Parameter count from the binding's docstring signature, e.g. ``cudaMemcpyAsync(dst, src, size_t count, ...)``."""
    first = (func.__doc__ or "").strip().splitlines()[0]
    params = re.fullmatch(r"\w+\((.*)\)", first.strip())
    assert params, f"no signature in the docstring of {func.__name__}: {first!r}"
    return len([p for p in params.group(1).split(",") if p.strip()])


def cudart_problems(source: str, seen: set[str] | None = None) -> list[str]:
    """Every cudart use in ``source`` that the installed cuda-python does not have, or calls with
    the wrong number of arguments. The functions checked are added to ``seen``."""
    problems: list[str] = []
    seen = set() if seen is None else seen
    tree = ast.parse(source)  # one tree: the node ids below must be of the nodes walked
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (chain := _runtime_attr_chain(node.func)) and len(chain) == 1:
            func = getattr(cudart, chain[0], None)
            seen.add(chain[0])
            if func is None:
                problems.append(f"cudart has no {chain[0]}")
            elif len(node.args) != _documented_arity(func) or node.keywords:
                problems.append(f"{chain[0]} called with {len(node.args)} arguments, cudart takes {_documented_arity(func)}")
        elif isinstance(node, ast.Attribute) and id(node) not in calls and (chain := _runtime_attr_chain(node)):
            obj = cudart
            for part in chain:
                obj = getattr(obj, part, None)
                if obj is None:
                    problems.append(f"cudart has no {'.'.join(chain)}")
                    break
    return problems


def test_cuda_calls_match_the_installed_bindings():
    seen: set[str] = set()
    for module in CUDA_MODULES:
        assert cudart_problems(module.read_text(), seen) == [], module.name
    # The scan really reached our calls, the ones the runner depends on among them.
    assert {"cudaStreamCreate", "cudaMallocHost", "cudaMalloc", "cudaMemcpyAsync", "cudaStreamSynchronize",
            "cudaStreamBeginCapture", "cudaStreamEndCapture", "cudaGraphInstantiate", "cudaGraphLaunch",
            "cudaFree", "cudaFreeHost", "cudaGetDeviceProperties", "cudaGetErrorString"} <= seen


def test_checker_catches_misspelt_and_misused_calls():
    bad = ("def f(self, rt):\n"
           "    rt.cudaMemcpyAsyn(1, 2, 3, 4, 5)\n"            # misspelt
           "    self.rt.cudaGraphInstantiate(1)\n"             # CUDA 11 / 12 arity mix-up
           "    x = rt.cudaMemcpyKind.cudaMemcpyHostToDevce\n")  # misspelt enum value
    problems = cudart_problems(bad)
    assert any("cudaMemcpyAsyn" in p for p in problems)
    assert any("cudaGraphInstantiate called with 1" in p for p in problems)
    assert any("cudaMemcpyHostToDevce" in p for p in problems)


def _gpu_present() -> bool:
    err, count = cudart.cudaGetDeviceCount()
    return err == cudart.cudaError_t.cudaSuccess and count > 0


@pytest.mark.skipif(_gpu_present(), reason="checks the behaviour on a machine without a usable GPU")
def test_without_a_gpu_cuda_start_fails_in_one_line():
    from diffusionad_edge.runtime.backends.tensorrt.cuda_memory import _CudaPythonMemory, cuda_check

    with pytest.raises(DaeError) as info:
        _CudaPythonMemory()
    message = str(info.value)
    assert "cudaStreamCreate failed" in message and "\n" not in message
    assert "no usable NVIDIA driver/GPU" in message
    from diffusionad_edge.runtime.backends.tensorrt.cuda_memory import open_cuda_memory

    for want_graphs in (True, False):  # whichever binding is tried first, the failure reads the same
        with pytest.raises(DaeError, match="failed|could not start"):
            open_cuda_memory(want_graphs)
    # A success passes its values through unchanged.
    assert cuda_check(cudart, (cudart.cudaError_t.cudaSuccess, 42), "x") == 42


@pytest.mark.skipif(_gpu_present(), reason="checks the behaviour on a machine without a usable GPU")
def test_without_a_gpu_the_device_name_lookup_fails_in_one_line():
    import importlib.util

    if importlib.util.find_spec("pycuda") is not None:
        pytest.skip("pycuda is installed: it is asked first")
    from diffusionad_edge.runtime.backends.tensorrt.engine import current_gpu_name

    with pytest.raises(DaeError, match="cudaGetDeviceProperties failed"):
        current_gpu_name()
