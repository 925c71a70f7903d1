"""Static INT8 quantization of the ONNX graph as Q/DQ (QuantizeLinear/DequantizeLinear) pairs.

Symmetric INT8 for weights (per channel) and activations, Q/DQ format: the form ONNX Runtime runs
on the CPU and TensorRT builds as explicit quantization. Only Conv/MatMul/Gemm inputs are
quantized; the sigmoid, top-k and guidance arithmetic stay in float, and so do the graph scopes of
:data:`FLOAT_SCOPES` (the map's last layers).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ...optional import require

QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]

#: Graph scopes (module paths of the exported graph's node names) that stay in float in every INT8
#: model, whatever their op types, for both quantizers (this Q/DQ graph and OpenVINO's NNCF):
#: * the anomaly map's smoothing convolutions (models/map_smoothing.py) work on probabilities, where
#:   8 bits would tie most normal pixels;
#: * the segmentation net's decoder and head: quantized, they cost the map its sharp edges (pixel AP
#:   -0.097 with NNCF, -0.039 as Q/DQ on a model whose FP32 map scores 0.967), while the image score
#:   does not move; kept in float, every map metric is within 0.01 of FP32 for about 4 % of the INT8
#:   latency. Its encoder quantizes harmlessly (measured: benchmarks/int8_map.py, README "INT8 and
#:   the map").
FLOAT_SCOPES = ("map_smoothing", "segmenter/decoders", "segmenter/head")


def float_nodes(model, scopes: tuple[str, ...] | None = None) -> list[str]:
    """Names of the nodes of an ONNX model under one of ``scopes`` (default :data:`FLOAT_SCOPES`;
    node names such as ``/segmenter/decoders.0/fuse/fuse.0/Conv`` start with their module path)."""
    scopes = FLOAT_SCOPES if scopes is None else scopes
    return [n.name for n in model.graph.node if any(n.name.startswith(f"/{scope}") for scope in scopes)]


class _Reader:
    """onnxruntime CalibrationDataReader over an in-memory set, one image per call."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int):
        self.items = iter([{input_name: images[i : i + batch]} for i in range(0, len(images) - batch + 1, batch)])

    def get_next(self):
        return next(self.items, None)


def quantize_onnx_qdq(fp32_onnx: str | Path, out_path: str | Path, calibration: np.ndarray, batch: int = 1, method: str = "minmax",
                      float_scopes: tuple[str, ...] | None = None) -> Path:
    """Write a Q/DQ INT8 copy of ``fp32_onnx`` calibrated on ``calibration`` (N, 3, S, S); the nodes
    under ``float_scopes`` (default :data:`FLOAT_SCOPES`) stay in float."""
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
            nodes_to_exclude=float_nodes(pre_model, float_scopes),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
    onnx.checker.check_model(onnx.load(str(out_path)))
    return out_path
