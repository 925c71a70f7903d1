"""OpenVINO IR conversion (FP32/FP16) and NNCF post-training INT8 quantization."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ...optional import require
from . import onnxruntime_int8


def convert_to_ir(onnx_path: str | Path, xml_path: str | Path, fp16: bool = False) -> Path:
    """ONNX -> OpenVINO IR; ``fp16`` stores weights in half precision (compute precision is the device's)."""
    ov = require("openvino")
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return Path(xml_path)


def float_scope(extra_patterns: list[str] | None = None, scopes: tuple[str, ...] | None = None):
    """NNCF's ignored scope: the graph nodes that stay in float in every INT8 model
    (:data:`~.onnxruntime_int8.FLOAT_SCOPES`: the map smoothing and the segmentation net's decoder
    and head, which quantized cost the map its edges), plus ``extra_patterns`` (regular expressions
    over node names)."""
    nncf = require("nncf")
    scopes = onnxruntime_int8.FLOAT_SCOPES if scopes is None else scopes
    patterns = [f".*/{scope}.*" for scope in scopes] + list(extra_patterns or [])
    return nncf.IgnoredScope(patterns=patterns, validate=False)


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
            subset_size=len(chunks), ignored_scope=float_scope(),
        )
    else:
        quantized = nncf.quantize(model, calib, subset_size=len(chunks), preset=nncf.QuantizationPreset.MIXED,
                                  ignored_scope=float_scope())
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    return Path(xml_path)
