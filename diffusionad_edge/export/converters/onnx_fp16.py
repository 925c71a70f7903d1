"""FP16 copy of the exported ONNX graph, for TensorRT.

TensorRT 11 builds strongly typed networks only (no FP16 builder flag): the precision has to be in
the ONNX itself. An FP16 ONNX also builds on TensorRT 10 (with or without the FP16 flag), so FP16
bundles carry this graph for both, and the exact graph the device will build is the one that is
checked here in onnxruntime. Inputs and outputs stay FP32 (cast at the graph edges) so callers
and the bundle's I/O contract do not change.
"""

from __future__ import annotations

from pathlib import Path

from ...optional import require


def convert_onnx_fp16(fp32_onnx: str | Path, out_path: str | Path) -> Path:
    """Write an FP16 copy of ``fp32_onnx`` (FP16 weights and activations, FP32 inputs/outputs)."""
    onnx = require("onnx")
    float16 = require("onnxruntime.transformers.float16")
    model = onnx.load(str(fp32_onnx))
    # keep_io_types: Cast nodes at the edges keep the FP32 "image" input and outputs.
    converted = float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    # The converter appends its edge casts at the end of the node list; ONNX (and TensorRT's
    # parser, which reads nodes in order) need producers before consumers.
    _sort_topologically(converted.graph)
    onnx.checker.check_model(converted)
    out_path = Path(out_path)
    onnx.save(converted, str(out_path))
    return out_path


def _sort_topologically(graph) -> None:
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a missing input near node {pending[0].name!r}")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
