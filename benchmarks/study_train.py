"""Train one variant of the `edge` layout for the localisation study (benchmarks/localisation_study.py).

`dae train` covers recipe options (--dice-weight, --crop-size, ...); this script also changes the
*layout* of the model, one field at a time, so that a layout candidate can be measured against a
control of the same step budget before it becomes a preset. The checkpoint carries its full config,
so `dae eval`, `dae export` and the study load it like any other.

Usage:
    python benchmarks/study_train.py --data ../shared/data/toothbrush --steps 700 --out runs/tb_seg2.pt \\
        --set seg.stem_factor=2 [--recipe dice_weight=0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from diffusionad_edge.config import TrainConfig, preset
from diffusionad_edge.data.mvtec import MVTecCategory
from diffusionad_edge.train.trainer import Trainer


def _value(text: str):
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(v) if isinstance(v, list) else v


def with_overrides(config, overrides: list[str]):
    """``seg.stem_factor=2`` -> the config with that field of its ``seg`` part replaced."""
    for item in overrides:
        key, _, text = item.partition("=")
        part, _, field = key.partition(".")
        if field:
            sub = dataclasses.replace(getattr(config, part), **{field: _value(text)})
            config = dataclasses.replace(config, **{part: sub})
        else:
            config = dataclasses.replace(config, **{part: _value(text)})
    return config.validate()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--preset", default="edge")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], help="model config field, e.g. seg.stem_factor=2")
    ap.add_argument("--recipe", action="append", default=[], help="training field, e.g. dice_weight=0")
    args = ap.parse_args(argv)
    config = with_overrides(preset(args.preset), args.set)
    overrides = {key: _value(text) for key, _, text in (item.partition("=") for item in args.recipe)}
    cfg = TrainConfig.for_preset(args.preset, steps=args.steps, checkpoint_every=0, **overrides)
    trainer = Trainer(config, cfg, MVTecCategory(args.data), args.out, overwrite=True)
    print(f"layout {args.set or 'as preset'}, recipe overrides {overrides or 'none'}", file=sys.stderr)

    def report(step, total, losses, elapsed):
        if step % 25 == 0 or step == total:
            print(f"step {step}/{total} loss {losses.get('total', 0):.4f} dice {losses.get('dice', 0):.3f} "
                  f"{step / max(elapsed, 1e-9):.2f} steps/s", file=sys.stderr, flush=True)

    result = trainer.fit(report)
    print(f"checkpoint: {result.checkpoint} (step {result.step}, {result.train_seconds / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
