"""Why does an INT8 bundle lose the anomaly map? Quantization variants of one checkpoint, side by side.

From one checkpoint: the FP32 ONNX graph `dae export` builds, then INT8 variants of it, each
scored on a dataset's test split (image AUROC, pixel AUROC, pixel AP, AUPRO) against the FP32
ONNX, and timed in the same run (batch 1, model only, rows interleaved round by round so a load
change hits every row alike; p50 of the rounds):

* ``ov-fp32``        OpenVINO IR, f32 pinned
* ``ov-int8``        NNCF INT8 as `dae export` builds it (MIXED preset; the scopes of FLOAT_SCOPES in
                     float: the map smoothing, the segmentation decoder and head)
* ``ov-int8-<name>`` NNCF INT8 with the float scopes / options of a variant (see VARIANTS);
                     ``seg-int8`` is the INT8 `dae export` built before the decoder was kept in float
* ``ort-qdq``        the Q/DQ INT8 graph (Conv/MatMul/Gemm inputs only, FLOAT_SCOPES in float) in ONNX Runtime
* ``ort-qdq-seg-int8`` the Q/DQ graph with only the map smoothing in float (before)

It also lists which operation types take quantized inputs in the default NNCF model (the ops
whose inputs pass through a FakeQuantize), the first thing that differs from the Q/DQ graph.

Usage:
    python benchmarks/int8_map.py CKPT --data ../shared/data/toothbrush --out study/int8_tb [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from diffusionad_edge.data.mvtec import MVTecCategory
from diffusionad_edge.evaluate.evaluator import evaluate
from diffusionad_edge.export.converters.onnxruntime_int8 import quantize_onnx_qdq
from diffusionad_edge.export.converters.openvino_ir import convert_to_ir, float_scope
from diffusionad_edge.export.onnx_export import export_onnx
from diffusionad_edge.models.checkpoint_io import load_model
from diffusionad_edge.quantize.calibration import from_training_images
from diffusionad_edge.runtime.backends.onnxruntime import OnnxRuntimeRunner
from diffusionad_edge.runtime.backends.openvino import OpenVINORunner
from diffusionad_edge.runtime.backends.runner import Runner

#: Elementwise arithmetic of the graph's float tail: noising, the preconditioned skip, eps -> x0,
#: the guidance blend, the clamp, the concat into the segmentation net.
ELEMENTWISE = ["Add", "Subtract", "Multiply", "Divide", "Clamp", "Concat", "Maximum", "Minimum"]

#: What stayed float before the segmentation decoder did: the map smoothing only.
BEFORE = ("map_smoothing",)

VARIANTS = {
    # the INT8 of `dae export` before this study's fix (only the map smoothing in float)
    "seg-int8": dict(scopes=BEFORE),
    # no elementwise arithmetic takes INT8 inputs (closer to what the Q/DQ graph does)
    "convonly": dict(scopes=BEFORE, ignored_types=ELEMENTWISE),
    # everything after the segmentation head's last convolution stays float: the pixel shuffle,
    # the sigmoid and the top-k (an 8-bit logit map ties most normal pixels)
    "tailfloat": dict(scopes=BEFORE, tail_float=True),
    "convonly+tailfloat": dict(scopes=BEFORE, ignored_types=ELEMENTWISE, tail_float=True),
    # the default, but with NNCF's fast bias correction off
    "nobiascorr": dict(scopes=BEFORE, fast_bias_correction=None),
    # the segmentation head's convolution in float too (its output, the logits, is otherwise quantized
    # on its way into the pixel shuffle)
    "headfloat": dict(scopes=BEFORE, tail_float=True, patterns=[".*segmenter/head.*"]),
    # the segmentation net's first convolution in float: its input is the concat of x0 and x0_g,
    # whose small differences are the signal (8 bits over [0, 1] are steps of about 1/128)
    "segstem": dict(scopes=BEFORE, patterns=[".*segmenter/encoders.0/encoders.0.0/.*"]),
    # its whole first encoder level (64x64, the finest features the skip connection carries to the head)
    "segenc0": dict(scopes=BEFORE, patterns=[".*segmenter/encoders.0/.*"]),
    # (the decoder and the head in float, the encoder in INT8, is now the default: the ov-int8 row)
    # the whole segmentation net in float: the upper bound of what its quantization costs
    "segfloat": dict(scopes=BEFORE, tail_float=True, patterns=[".*segmenter.*"]),
}


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


def nncf_int8(onnx_path: Path, xml: Path, calib: np.ndarray, ignored_types=None, fast_bias_correction=True,
              preset="mixed", tail_float=False, patterns=None, scopes=None) -> Path:
    import nncf
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    present = {op.get_type_name() for op in model.get_ops()}
    # What `dae export` keeps in float (FLOAT_SCOPES), or the variant's own scopes, plus its patterns.
    base = float_scope(patterns, scopes)
    kwargs = {"ignored_scope": nncf.IgnoredScope(
        types=[t for t in (ignored_types or []) if t in present],
        names=ops_after_last_conv(model) if tail_float else [], patterns=base.patterns, validate=False)}
    if fast_bias_correction is None:
        kwargs["fast_bias_correction"] = False
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    q = nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]), subset_size=len(calib),
                      preset=presets[preset], **kwargs)
    ov.save_model(q, str(xml), compress_to_fp16=False)
    return xml


def quantized_consumers(xml: Path) -> Counter:
    """Operation types that consume the output of a FakeQuantize (i.e. run on quantized inputs)."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    seen: Counter = Counter()
    for op in model.get_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        for out in op.outputs():
            for target in out.get_target_inputs():
                seen[target.get_node().get_type_name()] += 1
    return seen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds (each row once per round)")
    ap.add_argument("--calibration", type=int, default=64, help="calibration images (training normals)")
    ap.add_argument("--variants", default="seg-int8", help=f"NNCF variants to add, comma-separated, of: {', '.join(VARIANTS)}")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model, payload = load_model(args.checkpoint)
    hw = model.config.input_hw
    data = payload.get("data", {})
    calib = from_training_images(data.get("root", ""), data.get("train_images", []), hw[0], args.calibration).images
    dataset = MVTecCategory(args.data)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fp32 = export_onnx(model, work / "fp32.onnx")
        # The runtime's own runners, as bundles run them; rows: (runner, precision the row runs in
        # when the runner cannot tell: ONNX Runtime's sessions do not say fp32 from Q/DQ int8).
        built: dict[str, tuple[Runner, str]] = {}
        t0 = time.perf_counter()
        built["ort-fp32"] = (OnnxRuntimeRunner(fp32), "fp32")
        built["ov-fp32"] = (OpenVINORunner(convert_to_ir(fp32, work / "fp32.xml"), config={"INFERENCE_PRECISION_HINT": "f32"}), "fp32")
        default_xml = nncf_int8(fp32, work / "int8.xml", calib)
        consumers = quantized_consumers(default_xml)
        print(f"default NNCF INT8: ops taking quantized inputs: {dict(consumers)}", file=sys.stderr)
        built["ov-int8"] = (OpenVINORunner(default_xml), "int8")
        for name in [v for v in args.variants.split(",") if v]:
            xml = nncf_int8(fp32, work / f"int8-{name}.xml", calib, **VARIANTS[name])
            print(f"{name}: ops taking quantized inputs: {dict(quantized_consumers(xml))}", file=sys.stderr)
            built[f"ov-int8-{name}"] = (OpenVINORunner(xml), "int8")
        built["ort-qdq"] = (OnnxRuntimeRunner(quantize_onnx_qdq(fp32, work / "qdq.onnx", calib)), "int8 (Q/DQ)")
        built["ort-qdq-seg-int8"] = (OnnxRuntimeRunner(quantize_onnx_qdq(fp32, work / "qdq-before.onnx", calib, float_scopes=BEFORE)),
                                     "int8 (Q/DQ)")
        print(f"built {len(built)} models in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

        for name, (runner, precision) in built.items():
            res = evaluate(dataset, runner, hw)
            # OpenVINO says which float precision its INT8 model's unquantized ops ran in
            runs_as = precision if runner.runtime_precision in (None, "fp32") else f"{precision}, float ops {runner.runtime_precision}"
            rows[name] = {"precision": runs_as, **res.overall}
            print(f"{name}: {res.overall}", file=sys.stderr)
        x = calib[:1]
        times: dict[str, list[float]] = {n: [] for n in built}
        for _ in range(args.rounds):
            for name, (runner, _) in built.items():
                t = time.perf_counter()
                runner.infer(x)
                times[name].append((time.perf_counter() - t) * 1000)
        for runner, _ in built.values():
            runner.deactivate()
    ref = rows["ort-fp32"]
    metrics = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")
    lines = [f"Checkpoint `{args.checkpoint}` (step {payload.get('step')}), data `{args.data}`; "
             f"deltas against the FP32 ONNX (ONNX Runtime); p50 of {args.rounds} interleaved rounds, batch 1", "",
             "| row | runs as | p50 ms | " + " | ".join(metrics) + " | " + " | ".join(f"d {m}" for m in metrics) + " |",
             "|---|---|---|" + "---|" * (2 * len(metrics))]
    for name, r in rows.items():
        r["p50_ms"] = float(np.median(times[name]))
        lines.append(f"| {name} | {r['precision']} | {r['p50_ms']:.1f} | " + " | ".join(f"{r[m]:.4f}" for m in metrics)
                     + " | " + " | ".join(f"{r[m] - ref[m]:+.4f}" for m in metrics) + " |")
    lines += ["", f"Ops taking quantized inputs in the default NNCF model: {dict(consumers)}"]
    (args.out / "int8_map.json").write_text(json.dumps({"rows": rows, "quantized_consumers": dict(consumers)}, indent=1))
    (args.out / "int8_map.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
