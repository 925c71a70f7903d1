"""One rank of a test training job, started by torchrun from test_distributed.py (not a test itself).

It trains exactly as ``dae train`` does (Trainer + the process group torchrun set up) and writes,
per rank, what the test needs to see: the steps it took with the loss it saw, its final weights'
digest and how many checkpoint files it wrote.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.data.mvtec import MVTecCategory
from diffusionad_edge.train import distributed
from diffusionad_edge.train.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True, help="folder for rank<N>.json")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--preset", default="tiny")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ctx = distributed.init_from_env(torch.device("cpu"))
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, checkpoint_every=0, seed=0, precision="fp32")
    trainer = Trainer(preset(args.preset), cfg, MVTecCategory(args.data), args.out, device="cpu", dist=ctx)
    steps: list[list[float]] = []
    trainer.fit(lambda step, total, losses, elapsed: steps.append([step, losses["total"]]))
    digest = float(sum(p.detach().double().sum() for p in trainer.model.parameters()))
    report = {
        "rank": ctx.rank, "world_size": ctx.world_size, "backend": ctx.backend, "steps": steps,
        "param_digest": digest, "checkpoint_writes": trainer.checkpoint_writes,
        "pid": os.getpid(),
    }
    with open(os.path.join(args.report, f"rank{ctx.rank}.json"), "w") as f:
        json.dump(report, f)
    distributed.shutdown()


if __name__ == "__main__":
    main()
