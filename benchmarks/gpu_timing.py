"""PyTorch CUDA timings for benchmarks/gpu_check.sh: one training step and one one-step inference
of each preset (random weights), AMP as `dae train` uses it. Prints one JSON line per row.

    python benchmarks/gpu_timing.py --presets paper,edge --batch 16 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _sync() -> None:
    torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="paper,edge,edge-v1")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU visible to PyTorch")
    for name in a.presets.split(","):
        print(json.dumps(time_preset(name, a.batch, a.repeats)), flush=True)
        torch.cuda.empty_cache()


def time_preset(name: str, batch: int, repeats: int) -> dict:
    """Mean training-step time (AMP fp16, Adam) and batch-1 one-step inference time of a preset."""
    from diffusionad_edge.config import preset
    from diffusionad_edge.export.graph import FixedStepDetector
    from diffusionad_edge.models.detector import DiffusionAD
    from diffusionad_edge.train.losses import diffusionad_loss

    dev = torch.device("cuda")
    model = DiffusionAD(preset(name)).to(dev).to(memory_format=torch.channels_last)
    s = model.config.image_size
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.rand(batch, 3, s, s, device=dev).to(memory_format=torch.channels_last)
    mask = (torch.rand(batch, 1, s, s, device=dev) > 0.9).float()
    clean = torch.arange(batch, device=dev) < batch // 2
    t_s = torch.full((batch,), 200, device=dev)
    t_b = torch.full((batch,), 400, device=dev)

    def step() -> None:
        e_s, e_b = torch.randn_like(x), torch.randn_like(x)
        with torch.autocast("cuda", dtype=torch.float16):
            x0_g, es, eb = model.guided_reconstruction(x, t_s, t_b, e_s, e_b)
            prob = torch.sigmoid(model.segment_logits(x, x0_g))
        loss = diffusionad_loss(es, e_s, eb, e_b, clean, prob, mask)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss.total).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(3):
        step()
    _sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    _sync()
    train_ms = (time.perf_counter() - t0) / repeats * 1000
    graph = FixedStepDetector(model.eval()).to(dev)
    one = torch.rand(1, 3, s, s, device=dev)
    infer = {}
    for label, dtype in (("fp32", None), ("fp16-autocast", torch.float16)):
        ctx = torch.autocast("cuda", dtype=dtype) if dtype else torch.autocast("cuda", enabled=False)
        with torch.no_grad(), ctx:
            for _ in range(5):
                graph(one)
            _sync()
            t0 = time.perf_counter()
            for _ in range(repeats):
                graph(one)
            _sync()
        infer[label] = round((time.perf_counter() - t0) / repeats * 1000, 2)
    return {
        "preset": name, "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        "train_step_ms": round(train_ms, 2), "train_images_per_s": round(batch / train_ms * 1000, 1),
        "batch": batch, "infer_ms_batch1": infer,
    }

if __name__ == "__main__":
    main()
