"""Speed against the reference of fast anomaly detection, in one process, rows interleaved.

Builds EfficientAD-S's network as its paper describes it (Batzner et al., "EfficientAD: Accurate
Visual Anomaly Detection at Millisecond-Level Latencies", WACV 2024: the PDN-S teacher and student
and the autoencoder; random weights: this measures speed only) and this toolkit's presets (random
weights), exports each through the same ONNX -> OpenVINO FP32 / NNCF INT8 path the toolkit uses,
and times them batch 1 at 256x256 in one process, one inference per model per round so that load
changes on a shared machine hit every row alike. Prints and writes (``--out``) latency p50/p90,
FPS, GFLOP/image, achieved GFLOP/s and the precision each row really ran in.

    python benchmarks/peers.py --out benchmarks/results/peers          (about 3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# -- EfficientAD-S (PDN-S teacher + student, autoencoder), as in the paper's Table 6-8 ------------
def pdn_small(out_channels: int) -> nn.Sequential:
    """Patch description network, small: 4 convolutions, two 2x2 average pools."""
    return nn.Sequential(
        nn.Conv2d(3, 128, 4, padding=3), nn.ReLU(),
        nn.AvgPool2d(2, 2, padding=1),
        nn.Conv2d(128, 256, 4, padding=3), nn.ReLU(),
        nn.AvgPool2d(2, 2, padding=1),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, out_channels, 4),
    )


class AutoEncoder(nn.Module):
    """Encoder: six strided convolutions down to a 64-d code; decoder: bilinear upsampling and
    convolutions back to the PDN's output size and 384 channels."""

    def __init__(self, out_size: int, channels: int = 384):
        super().__init__()
        enc = [nn.Conv2d(3, 32, 4, 2, 1), nn.Conv2d(32, 32, 4, 2, 1), nn.Conv2d(32, 64, 4, 2, 1),
               nn.Conv2d(64, 64, 4, 2, 1), nn.Conv2d(64, 64, 4, 2, 1)]
        self.encoder = nn.ModuleList(enc)
        self.code = nn.Conv2d(64, 64, 8)
        self.sizes = [3, 8, 15, 32, 63, 127, out_size]
        self.decoder = nn.ModuleList(nn.Conv2d(64, 64, 4, 1, 2) for _ in range(6))
        self.last = nn.Conv2d(64, 64, 3, 1, 1)
        self.out = nn.Conv2d(64, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.encoder:
            x = F.relu(conv(x))
        x = self.code(x)
        for size, conv in zip(self.sizes[:-1], self.decoder):
            x = F.relu(conv(F.interpolate(x, size=size, mode="bilinear")))
        x = F.interpolate(x, size=self.sizes[-1], mode="bilinear")
        return self.out(F.relu(self.last(x)))


class EfficientADSmall(nn.Module):
    """The deployed EfficientAD-S graph: teacher, student (768 = 384 + 384 channels), autoencoder,
    the two squared-difference maps averaged over channels, upsampled to the input size."""

    def __init__(self, size: int = 256):
        super().__init__()
        self.teacher, self.student = pdn_small(384), pdn_small(768)
        with torch.no_grad():
            out = self.teacher(torch.zeros(1, 3, size, size)).shape[-1]
        self.autoencoder = AutoEncoder(out)
        self.size = size

    def forward(self, image: torch.Tensor):
        t, s, ae = self.teacher(image), self.student(image), self.autoencoder(image)
        local = (t - s[:, :384]).pow(2).mean(1, keepdim=True)
        glob = (ae - s[:, 384:]).pow(2).mean(1, keepdim=True)
        amap = F.interpolate(0.5 * local + 0.5 * glob, size=self.size, mode="bilinear")
        return amap, amap.flatten(1).amax(1)


# -- export and timing -------------------------------------------------------------------------
def gflop(module: nn.Module, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def build_models(presets: list[str], size: int) -> dict[str, tuple[nn.Module, float]]:
    from diffusionad_edge.config import preset
    from diffusionad_edge.export.graph import FixedStepDetector
    from diffusionad_edge.models.complexity import measure_complexity
    from diffusionad_edge.models.detector import DiffusionAD

    torch.manual_seed(0)
    models = {}
    for name in presets:
        cfg = preset(name)
        cfg.image_size = size
        model = DiffusionAD(cfg.validate()).eval()
        models[name] = (FixedStepDetector(model).eval(), measure_complexity(model).one_step_gflop)
    ead = EfficientADSmall(size).eval()
    models["EfficientAD-S"] = (ead, gflop(ead, size))
    return models


def compile_rows(models: dict, size: int, precisions: list[str], work: Path, calib_n: int) -> list[dict]:
    import openvino as ov

    from diffusionad_edge.export.converters.openvino_ir import quantize_ir_int8
    from diffusionad_edge.runtime.backends.openvino import openvino_precision_name
    from diffusionad_edge.runtime.backends.runner import describe_runtime_precision

    core = ov.Core()
    rng = np.random.default_rng(0)
    calib = rng.random((calib_n, 3, size, size), dtype=np.float32)
    rows = []
    for name, (module, gf) in models.items():
        onnx_path = work / f"{name}.onnx"
        with torch.no_grad():
            torch.onnx.export(module, torch.zeros(1, 3, size, size), str(onnx_path), opset_version=17,
                              input_names=["image"], dynamo=False)
        for precision in precisions:
            if precision == "fp32":
                model = core.read_model(str(onnx_path))
                # Pinned: on CPUs with bf16 OpenVINO would otherwise run "FP32" in bf16.
                config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
            else:
                xml = quantize_ir_int8(onnx_path, work / f"{name}-int8.xml", calib)
                model = core.read_model(str(xml))
                config = {"PERFORMANCE_HINT": "LATENCY"}
            compiled = core.compile_model(model, "CPU", config)
            runs = openvino_precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
            rows.append({
                "model": name, "precision": precision,
                "runs_as": describe_runtime_precision(precision, runs),
                "gflop": round(gf, 2), "request": compiled.create_infer_request(), "times": [],
            })
    return rows


def time_rows(rows: list[dict], size: int, rounds: int, warmup: int) -> None:
    x = np.random.default_rng(1).random((1, 3, size, size), dtype=np.float32)
    for r in range(warmup + rounds):
        for row in rows:  # interleaved: a load spike hits every row, not one
            t = time.perf_counter()
            row["request"].infer({0: x})
            if r >= warmup:
                row["times"].append(time.perf_counter() - t)


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        t = np.array(row["times"]) * 1000
        p50 = float(np.percentile(t, 50))
        out.append({
            "model": row["model"], "precision": row["precision"], "runs_as": row["runs_as"], "gflop": row["gflop"],
            "p50_ms": round(p50, 1), "p90_ms": round(float(np.percentile(t, 90)), 1),
            "fps": round(1000 / p50, 1), "gflop_per_s": round(row["gflop"] / p50 * 1000, 1), "runs": len(t),
        })
    return out


def to_markdown(rows: list[dict], machine: dict) -> str:
    lines = [f"CPU: {machine.get('cpu')} ({machine.get('logical_cores')} logical cores; ISA {', '.join(machine.get('isa', []))}); "
             f"OpenVINO {machine.get('versions', {}).get('openvino')}", "",
             "| model | precision | runs as | GFLOP/image | p50 ms | p90 ms | FPS | achieved GFLOP/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['runs_as']} | {r['gflop']} | {r['p50_ms']} | "
                     f"{r['p90_ms']} | {r['fps']} | {r['gflop_per_s']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Time DiffusionAD presets beside EfficientAD-S in OpenVINO, one process.")
    ap.add_argument("--presets", default="edge-v1,edge", help="comma-separated presets")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--calibration", type=int, default=16, help="random calibration images for INT8 (speed only)")
    ap.add_argument("--out", type=Path, default=None, help="folder for peers.json and peers.md")
    a = ap.parse_args(argv)
    from diffusionad_edge.bench.machine import describe_machine

    if a.out is not None:
        from diffusionad_edge.paths import check_output_dir

        check_output_dir(a.out)
    models = build_models([p for p in a.presets.split(",") if p], a.size)
    with tempfile.TemporaryDirectory() as tmp:
        rows = compile_rows(models, a.size, a.precisions.split(","), Path(tmp), a.calibration)
        time_rows(rows, a.size, a.rounds, a.warmup)
    result = summarise(rows)
    machine = describe_machine()
    md = to_markdown(result, machine)
    print(md)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "peers.json").write_text(json.dumps({"machine": machine, "rows": result}, indent=2))
        (a.out / "peers.md").write_text(md)
        print(f"written: {a.out / 'peers.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
