"""Every converter, together: from the checked FP32 ONNX to a backend's model files.

One ``build_<backend>`` function per row of the table of backends
(:data:`diffusionad_edge.runtime.backends.BACKENDS` names it in its ``converter`` field), each
writing its files into the bundle's staging folder and returning (files, entry file name). The
low-level conversions live beside this file: ``onnxruntime_int8`` (Q/DQ INT8 ONNX, also what
TensorRT builds INT8 engines from), ``onnx_fp16`` (FP16 ONNX for TensorRT) and ``openvino_ir``
(OpenVINO IR FP32/FP16 and NNCF INT8). Backends with optional dependencies are imported lazily.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class ConvertInputs:
    """What a converter gets: the FP32 ONNX, where to write, the precision and its helpers."""

    fp32_onnx: Path
    work: Path
    precision: str
    batch: int
    calibration: np.ndarray | None = None  # (N, 3, S, S) INT8 calibration images
    # NNCF accuracy control: (items, validation_fn) and the largest allowed drop
    validation: tuple[Any, Callable] | None = None
    max_drop: float | None = None
    log: Callable[[str], None] = print


Converter = Callable[[ConvertInputs], tuple[list[Path], str]]


def _onnx(c: ConvertInputs, fp16_for_tensorrt: bool = False) -> tuple[list[Path], str]:
    target = c.work / "model.onnx"
    if c.precision == "int8":
        from .onnxruntime_int8 import quantize_onnx_qdq

        c.log(f"quantizing to Q/DQ INT8 on {len(c.calibration)} calibration images ...")
        quantize_onnx_qdq(c.fp32_onnx, target, c.calibration, c.batch)
    elif c.precision == "fp16" and fp16_for_tensorrt:
        from .onnx_fp16 import convert_onnx_fp16

        c.log("converting the graph to FP16 (TensorRT builds FP16 from the ONNX's own types) ...")
        convert_onnx_fp16(c.fp32_onnx, target)
    else:
        shutil.copyfile(c.fp32_onnx, target)
    return [target], target.name


def build_onnxruntime(c: ConvertInputs) -> tuple[list[Path], str]:
    """ONNX Runtime: the FP32 ONNX, or a Q/DQ INT8 ONNX."""
    return _onnx(c)


def build_tensorrt(c: ConvertInputs) -> tuple[list[Path], str]:
    """TensorRT: the ONNX the device builds its engine from (FP32, FP16 types, or Q/DQ INT8)."""
    return _onnx(c, fp16_for_tensorrt=True)


def build_openvino(c: ConvertInputs) -> tuple[list[Path], str]:
    """OpenVINO: IR (FP32 / FP16 weights), or NNCF INT8 (accuracy-aware when ``validation`` is set)."""
    from .openvino_ir import convert_to_ir, quantize_ir_int8

    xml = c.work / "model.xml"
    if c.precision == "int8":
        if c.validation is not None and c.max_drop is not None:
            c.log(f"NNCF accuracy-aware INT8 (max image-AUROC drop {c.max_drop}) on {len(c.calibration)} calibration images ...")
            quantize_ir_int8(c.fp32_onnx, xml, c.calibration, c.batch, c.validation[0], c.validation[1], c.max_drop)
        else:
            c.log(f"NNCF INT8 post-training quantization on {len(c.calibration)} calibration images ...")
            quantize_ir_int8(c.fp32_onnx, xml, c.calibration, c.batch)
    else:
        convert_to_ir(c.fp32_onnx, xml, fp16=c.precision == "fp16")
    return [xml, xml.with_suffix(".bin")], xml.name


def converter_for(spec: Any) -> Converter:
    """The converter named by a row of the table of backends."""
    module, _, name = spec.converter.partition(":")
    return getattr(importlib.import_module(module), name)
