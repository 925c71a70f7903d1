"""Fixtures of the on-the-line tests (test_line.py, test_line_review.py)."""

import pytest

from diffusionad_edge.export.pipeline import ExportOptions, export_bundle


@pytest.fixture(scope="module")
def bundle_dir(tiny_checkpoint, tmp_path_factory):
    """A tiny ONNX Runtime FP32 bundle at 64 px (one per test module)."""
    out = tmp_path_factory.mktemp("line") / "ort"
    return export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="onnxruntime-cpu", precision="fp32", out_dir=out, input_size=64),
                         log=lambda m: None).bundle
