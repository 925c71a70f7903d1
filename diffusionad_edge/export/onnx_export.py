"""PyTorch -> ONNX for the fixed-step graph: export, check, simplify."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..models.detector import DiffusionAD
from ..optional import require
from .graph import FixedStepDetector

OPSET = 17


def export_onnx(model: DiffusionAD, path: str | Path, batch: int = 1, with_reconstruction: bool = False, noise_seed: int = 0, simplify: bool = True) -> Path:
    """Write the fixed-step detector as ONNX (fixed input shape), validated by the onnx checker
    and simplified with onnxslim. Returns ``path``."""
    onnx = require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = FixedStepDetector(model.cpu().float(), noise_seed, with_reconstruction).eval()
    h, w = model.config.input_hw
    dummy = torch.rand(batch, 3, h, w)
    outputs = ["anomaly_map", "score"] + (["reconstruction"] if with_reconstruction else [])
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter handles this static graph well and fast; silence its
        # deprecation chatter so the user sees our report, not torch's.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (dummy,), str(path), input_names=["image"], output_names=outputs,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    if simplify:
        onnxslim = require("onnxslim")
        proto = onnxslim.slim(proto)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(path))
    return path
