"""Static INT8 quantization of the ONNX graph as Q/DQ (QuantizeLinear/DequantizeLinear) pairs.

Symmetric INT8 for weights (per channel) and activations, Q/DQ format: the form ONNX Runtime runs
on the CPU and TensorRT builds as explicit quantization. Only Conv/MatMul/Gemm inputs are
quantized; the sigmoid, top-k and guidance arithmetic stay in float.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ...optional import require

QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]

#: Graph nodes that stay in float whatever their type: the anomaly map's smoothing convolutions
#: (models/map_smoothing.py) work on probabilities, where 8 bits would tie most normal pixels.
FLOAT_SCOPES = ("map_smoothing",)


def float_nodes(model) -> list[str]:
    """Names of the nodes of an ONNX model that :data:`FLOAT_SCOPES` keeps in float."""
    return [n.name for n in model.graph.node if any(f"/{scope}/" in n.name for scope in FLOAT_SCOPES)]


class _Reader:
    """onnxruntime CalibrationDataReader over an in-memory set, one image per call."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int):
        self.items = iter([{input_name: images[i : i + batch]} for i in range(0, len(images) - batch + 1, batch)])

    def get_next(self):
        return next(self.items, None)


def quantize_onnx_qdq(fp32_onnx: str | Path, out_path: str | Path, calibration: np.ndarray, batch: int = 1, method: str = "minmax") -> Path:
    """Write a Q/DQ INT8 copy of ``fp32_onnx`` calibrated on ``calibration`` (N, 3, S, S)."""
    quant = require("onnxruntime.quantization")
    onnx = require("onnx")
    methods = {"minmax": quant.CalibrationMethod.MinMax, "percentile": quant.CalibrationMethod.Percentile,
               "entropy": quant.CalibrationMethod.Entropy}
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference and graph clean-up first, as onnxruntime recommends for static quantization.
        quant.shape_inference.quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        pre_model = onnx.load(str(pre))
        input_name = pre_model.graph.input[0].name
        quant.quantize_static(
            str(pre), str(out_path), _Reader(input_name, calibration, batch),
            quant_format=quant.QuantFormat.QDQ,
            activation_type=quant.QuantType.QInt8, weight_type=quant.QuantType.QInt8,
            per_channel=True, op_types_to_quantize=QUANTIZED_OPS, calibrate_method=methods[method],
            nodes_to_exclude=float_nodes(pre_model),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
    onnx.checker.check_model(onnx.load(str(out_path)))
    return out_path
