"""OpenVINO IR conversion (FP32/FP16) and NNCF post-training INT8 quantization."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ...optional import require


def convert_to_ir(onnx_path: str | Path, xml_path: str | Path, fp16: bool = False) -> Path:
    """ONNX -> OpenVINO IR; ``fp16`` stores weights in half precision (compute precision is the device's)."""
    ov = require("openvino")
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return Path(xml_path)


#: Keep every op after the last convolution in float (see :func:`float_scope`).
TAIL_FLOAT = False


def ops_after_last_conv(model) -> list[str]:
    """Friendly names of the ops between the last convolution of each output's path and the outputs
    (for the map: the head's bias, the pixel shuffle, the sigmoid, the smoothing; for the score: the
    top-k). Walks back from every result and stops at Convolution (other than the smoothing's own),
    Parameter and Constant ops."""
    names: set[str] = set()
    stack = [r.input_value(0).get_node() for r in model.get_results()]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        is_layer = node.get_type_name() == "Convolution" and "map_smoothing" not in name
        if is_layer or node.get_type_name() in ("Parameter", "Constant") or name in names:
            continue
        names.add(name)
        stack += [v.get_node() for v in node.input_values()]
    return sorted(names)


def float_scope(model, tail_float: bool = True):
    """NNCF's ignored scope: the map smoothing always (probabilities in 8 bits tie most normal
    pixels), and with ``tail_float`` every op after the last convolution."""
    nncf = require("nncf")
    names = ops_after_last_conv(model) if tail_float else []
    return nncf.IgnoredScope(names=names, patterns=[".*map_smoothing.*"], validate=False)


def quantize_ir_int8(
    onnx_path: str | Path,
    xml_path: str | Path,
    calibration: np.ndarray,
    batch: int = 1,
    validation: list | None = None,
    validation_fn: Callable | None = None,
    max_drop: float | None = None,
) -> Path:
    """INT8 IR with NNCF. With ``validation`` items and ``validation_fn(compiled_model, items) -> metric``
    and ``max_drop``, NNCF's accuracy-controlled flow keeps the most sensitive layers in float until
    the metric drop is within ``max_drop``."""
    ov = require("openvino")
    nncf = require("nncf")
    model = ov.convert_model(str(onnx_path))
    chunks = [calibration[i : i + batch] for i in range(0, len(calibration) - batch + 1, batch)]
    calib = nncf.Dataset(chunks)
    if validation is not None and validation_fn is not None and max_drop is not None:
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration_dataset=calib,
            validation_dataset=nncf.Dataset(validation),
            validation_fn=validation_fn, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(chunks), ignored_scope=float_scope(model, TAIL_FLOAT),
        )
    else:
        quantized = nncf.quantize(model, calib, subset_size=len(chunks), preset=nncf.QuantizationPreset.MIXED,
                                  ignored_scope=float_scope(model, TAIL_FLOAT))
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    return Path(xml_path)
