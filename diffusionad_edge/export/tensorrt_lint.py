"""Checks that an ONNX graph is one TensorRT 10's ONNX parser accepts, before it leaves the workstation.

The engine is built on the device, so a graph TensorRT cannot parse would otherwise be found only
there. These checks follow the operator support matrix of onnx-tensorrt for TensorRT 10.0
(opsets 9 to 20) and its stated restrictions on the operators such a graph can contain. They
need only ``onnx``; they prove nothing about speed or numerics (those are the device's checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..optional import require

#: Opsets TensorRT 10's ONNX parser accepts (inclusive).
OPSET_RANGE = (9, 20)
#: Operators marked supported in onnx-tensorrt's support matrix for TensorRT 10.0.
SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot
Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor
""".split())
#: TopK's K must be below this.
TOPK_LIMIT = 3840
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
#: Operators whose ``axes`` input must be a constant (an initializer or a Constant node).
CONSTANT_AXES = {"Slice": 3, "ReduceMean": 1, "Squeeze": 1, "Unsqueeze": 1}


def lint_onnx_for_tensorrt(onnx_path: str | Path) -> list[str]:
    """Problems TensorRT 10's ONNX parser would have with this graph (empty when it looks fine)."""
    onnx = require("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    problems: list[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        problems.append(f"opset {opset} is outside TensorRT 10's range {OPSET_RANGE[0]}-{OPSET_RANGE[1]}")

    constants: dict[str, Any] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                constants[node.output[0]] = numpy_helper.to_array(value.t)

    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            problems.append(f"input {value.name!r} has a dynamic shape: bundles build fixed-shape engines")

    for node in graph.node:
        where = f"{node.op_type} {node.name!r}"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r} needs a TensorRT plugin")
            continue
        if node.op_type not in SUPPORTED_OPS:
            problems.append(f"{where}: operator not supported by TensorRT's ONNX parser")
            continue
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
            zero_point = constants.get(node.input[2])
            if zero_point is None or zero_point.any():
                problems.append(f"{where}: zero point must be a constant 0 (TensorRT quantization is symmetric)")
        elif node.op_type == "TopK":
            k = constants.get(node.input[1])
            if k is None:
                problems.append(f"{where}: K must be a constant")
            elif int(k.reshape(-1)[0]) >= TOPK_LIMIT:
                problems.append(f"{where}: K={int(k.reshape(-1)[0])} must be below {TOPK_LIMIT}")
            if attrs.get("sorted", 1) != 1:
                problems.append(f"{where}: sorted must be 1")
        elif node.op_type == "Resize":
            mode = _text(attrs.get("mode", b"nearest"))
            coords = _text(attrs.get("coordinate_transformation_mode", b"half_pixel"))
            if mode not in RESIZE_MODES:
                problems.append(f"{where}: mode {mode!r} is not supported (only {sorted(RESIZE_MODES)})")
            if coords not in RESIZE_COORDINATES:
                problems.append(f"{where}: coordinate_transformation_mode {coords!r} is not supported")
            if attrs.get("antialias", 0):
                problems.append(f"{where}: antialiasing is not supported")
        elif node.op_type in ("AveragePool", "MaxPool"):
            if any(d != 1 for d in attrs.get("dilations", [])):
                problems.append(f"{where}: dilations must be all ones")
            if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
                problems.append(f"{where}: the Indices output is not supported")
        if node.op_type in CONSTANT_AXES:
            index = CONSTANT_AXES[node.op_type]
            if len(node.input) > index and node.input[index] and node.input[index] not in constants:
                problems.append(f"{where}: axes must be a constant")
    return problems


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
