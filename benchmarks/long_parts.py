"""Small defects on long parts: squashed square vs rectangular input vs full-resolution tiles.

Trains one model per pipeline for the same number of training minutes (the training steps' own
wall time, measured in the process) on the same data, then evaluates every model at the same
resolution, each image's own full resolution (maps resized bilinearly, masks by nearest neighbour),
so that pixel AP measures what a user sees on the frame:

* ``squashed``: the whole image resized to the preset's square (256x256), as before issue 17;
* ``rect``: resized to a rectangle of the data's aspect (``--rect``, default 256x640);
* ``tiled``: tiles of ``--tile`` (default 256, overlap 32) cut from the full-resolution image;
* ``roi-tiled``: the same tiles, only inside ``--roi`` (default: the part's band of the frame).

Data: the built-in ``long-part`` category (1:2.5 images, 2-4 px scratches and cracks at full
resolution), generated with ``--height`` (default 768: 768x1920 images, 1.5 megapixels, the small
end of a production camera; at 384x960 a squashed 256x256 input still keeps most of a 2-4 px
defect, see ``--contrast``), or any MVTec-layout category with ``--data`` (e.g. Magnetic Tile, whose
images differ in size, the smallest side 103 px: pass a ``--tile`` that fits it, e.g. 96). Every
pipeline uses the preset's recommended recipe (for ``edge``: random 128 px training crops, so a
training step costs the same in every pipeline; only where the crops come from differs).

Usage (a fair comparison needs an otherwise idle machine; minutes are per pipeline)::

    python benchmarks/long_parts.py --minutes 10 --out benchmarks/results/long_parts
    python benchmarks/long_parts.py --data ../shared/data/magnetic_tile --pipelines squashed,tiled \
        --tile 96 --overlap 16 --minutes 10 --out benchmarks/results/long_parts_mt

Writes ``long_parts.json`` and ``long_parts.md`` (a table) into ``--out``.

``--latency`` measures instead, with untrained weights (speed does not depend on them), the
frame-to-map latency of each pipeline in PyTorch on a frame of the generated size, through the same
``Bundle`` frame path ``dae run`` takes (median of ``--iterations``, rounds interleaved so that a
changing machine load hits every pipeline alike).

``--contrast`` measures instead, with no training, what each input keeps of the generated defects:
the peak gray-level change a defect causes, after resizing the defective and the defect-free image
alike to each pipeline's input, as a share of its change at full resolution (seconds of CPU).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _pipelines(args) -> dict[str, dict]:
    from diffusionad_edge.data.framing import parse_input_size
    from diffusionad_edge.data.roi import parse_roi

    rect = parse_input_size(args.rect)
    roi = parse_roi(args.roi) if args.roi else None
    return {
        "squashed": dict(hw=None, roi=None, tile=None),
        "rect": dict(hw=rect, roi=None, tile=None),
        "tiled": dict(hw=(args.tile, args.tile), roi=None, tile=args.tile),
        "roi-tiled": dict(hw=(args.tile, args.tile), roi=roi, tile=args.tile),
    }


def _train(name: str, spec: dict, args, dataset, out: Path) -> tuple[Path, dict]:
    from diffusionad_edge.config import RECOMMENDED_TRAINING, TrainConfig, preset
    from diffusionad_edge.data.framing import Preprocessing
    from diffusionad_edge.train.trainer import Trainer

    mc = preset(args.preset)
    if spec["hw"] is not None:
        mc = mc.with_input(spec["hw"]).validate()
    prep = Preprocessing(*mc.input_hw, roi=spec["roi"], tile=spec["tile"], overlap=args.overlap if spec["tile"] else 0,
                         blend=args.blend, top_k=mc.diffusion.top_k)
    recipe = dict(RECOMMENDED_TRAINING.get(args.preset, {}))
    if (recipe.get("crop_size") or 0) >= min(mc.input_hw):
        recipe["crop_size"] = None
    cfg = TrainConfig(steps=10**7, seed=args.seed, checkpoint_every=0, **recipe)
    path = out / f"{name}.pt"
    trainer = Trainer(mc, cfg, dataset, path, device="cpu", overwrite=True, preprocessing=prep)
    print(f"[{name}] training {prep.describe()} for {args.minutes} min ...", flush=True)
    result = trainer.fit(time_budget_s=args.minutes * 60)
    return path, {"steps": result.step, "train_minutes": trainer.train_seconds / 60, "preprocessing": prep.describe()}


def _evaluate(path: Path, dataset, limit) -> dict:
    from diffusionad_edge.data.framing import preprocessing_of
    from diffusionad_edge.evaluate.evaluator import evaluate
    from diffusionad_edge.models.checkpoint_io import load_model
    from diffusionad_edge.runtime.backends.torch import TorchRunner

    model, payload = load_model(path)
    prep = preprocessing_of(model.config, payload)
    t0 = time.perf_counter()
    res = evaluate(dataset, TorchRunner(model), prep, batch_size=8, limit=limit, metric_hw="native")
    return {"overall": res.overall, "per_type": res.per_type, "seconds_per_image": res.seconds_per_image,
            "eval_seconds": time.perf_counter() - t0}


def defect_contrast(height: int, n: int, sizes: dict[str, tuple[int, int] | None], seed: int = 0) -> dict[str, float]:
    """Mean over generated long-part defects of (peak |defective - clean| after resizing to each size)
    / (the same at full resolution); None = full resolution (1.0 by definition)."""
    import numpy as np

    from diffusionad_edge.data.builtin import ALL_CATEGORIES, LONG_PART
    from diffusionad_edge.data.long_part import LONG_PART_DEFECTS, long_part
    from diffusionad_edge.data.preprocess import resize_to

    cat_id = ALL_CATEGORIES.index(LONG_PART)
    kept: dict[str, list[float]] = {name: [] for name in sizes}
    for k, draw in enumerate(LONG_PART_DEFECTS.values()):
        for i in range(n):
            rng = np.random.default_rng([seed, cat_id, 100 + k, i])
            clean, box = long_part(height, rng)
            bad, mask = draw(clean, box, rng)
            if not mask.any():
                continue
            full = float(np.abs(bad - clean)[..., 0].max())
            for name, hw in sizes.items():
                a, b = (clean, bad) if hw is None else (resize_to(clean, *hw), resize_to(bad, *hw))
                kept[name].append(float(np.abs(b - a)[..., 0].max()) / full)
    return {name: float(np.mean(v)) for name, v in kept.items()}


def latency(args) -> dict[str, dict[str, float]]:
    import numpy as np
    import torch

    from diffusionad_edge.bench.benchmark import time_pipeline
    from diffusionad_edge.config import preset
    from diffusionad_edge.data.framing import Preprocessing
    from diffusionad_edge.data.long_part import long_part_shape
    from diffusionad_edge.models.detector import DiffusionAD
    from diffusionad_edge.runtime.bundle import checkpoint_bundle

    frame_hw = long_part_shape(args.height)
    bundles = {}
    torch.manual_seed(0)
    for name, spec in _pipelines(args).items():
        if name not in args.pipelines.split(","):
            continue
        mc = preset(args.preset) if spec["hw"] is None else preset(args.preset).with_input(spec["hw"]).validate()
        prep = Preprocessing(*mc.input_hw, roi=spec["roi"], tile=spec["tile"], overlap=args.overlap if spec["tile"] else 0,
                             top_k=mc.diffusion.top_k)
        bundles[name] = checkpoint_bundle(DiffusionAD(mc).eval(), {"preprocessing": prep.to_dict()}, Path(name))
    times: dict[str, list[float]] = {n: [] for n in bundles}
    for b in bundles.values():  # warm-up
        time_pipeline(b, 1, 1, 1, frame_hw=frame_hw)
    for _ in range(args.iterations):
        for name, b in bundles.items():
            lat, _ = time_pipeline(b, 1, 0, 1, frame_hw=frame_hw)
            times[name].append(lat["total"]["mean"])
    out = {}
    for name, b in bundles.items():
        frame = np.zeros((*frame_hw, 3), np.uint8)
        passes = b.prepare_frame(frame).layout.count if not b.preprocessing.is_plain else 1
        out[name] = {"ms_per_frame": float(np.median(times[name])), "passes": passes}
    return out


def _table(rows: dict, meta: dict) -> str:
    lines = [f"Data: {meta['data']}; preset {meta['preset']}, {meta['minutes']} training minutes per pipeline; "
             f"pixel metrics at each image's full resolution ({meta['image_sizes']}); {meta['machine']}.", "",
             "| pipeline | input | steps | image AUROC | pixel AP | pixel AUROC | AUPRO | PyTorch ms / image |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        o = r["overall"]
        lines.append(f"| {name} | {r['preprocessing']} | {r['steps']} | {o['image_auroc']:.3f} | {o['pixel_ap']:.3f} | "
                     f"{o['pixel_auroc']:.3f} | {o['aupro']:.3f} | {1000 * r['seconds_per_image']:.0f} |")
    base = rows.get("squashed", {}).get("overall", {}).get("pixel_ap")
    if base:
        lines += ["", "Pixel AP relative to squashed: " + ", ".join(
            f"{n} {r['overall']['pixel_ap'] / base:.1f}x" for n, r in rows.items() if n != "squashed")]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="MVTec-layout category folder (default: generate long-part)")
    ap.add_argument("--height", type=int, default=768, help="height of the generated long-part images (width 2.5x)")
    ap.add_argument("--n-train", type=int, default=60)
    ap.add_argument("--n-test", type=int, default=10, help="generated test images per defect type (and good)")
    ap.add_argument("--preset", default="edge")
    ap.add_argument("--minutes", type=float, default=10.0, help="training minutes per pipeline")
    ap.add_argument("--rect", default="256x640", help="input HxW of the rect pipeline")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--blend", default="mean", choices=("mean", "max"))
    ap.add_argument("--roi", default=None, help="x,y,w,h of roi-tiled (default for long-part: the part's band)")
    ap.add_argument("--pipelines", default="squashed,rect,tiled", help="comma-separated, of squashed, rect, tiled, roi-tiled")
    ap.add_argument("--limit", type=int, default=None, help="evaluate at most N test images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/long_parts"))
    ap.add_argument("--latency", action="store_true", help="only measure frame latency per pipeline (untrained weights, PyTorch)")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--contrast", action="store_true", help="only measure the defect contrast each input keeps (no training)")
    args = ap.parse_args()
    if args.latency:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        if args.roi is None:
            args.roi = "0,0,1,1"  # unused unless roi-tiled is asked for
        res = latency(args)
        print(f"| pipeline | network passes per frame | PyTorch ms per frame (median of {args.iterations}) |\n|---|---:|---:|")
        for name, r in res.items():
            print(f"| {name} | {r['passes']} | {r['ms_per_frame']:.0f} |")
        return
    if args.contrast:
        from diffusionad_edge.data.framing import parse_input_size
        from diffusionad_edge.data.long_part import long_part_shape

        sizes = {"squashed 256x256": (256, 256), f"rect {args.rect}": parse_input_size(args.rect),
                 f"tiles (full resolution, {'x'.join(map(str, long_part_shape(args.height)))})": None}
        kept = defect_contrast(args.height, args.n_test, sizes, args.seed)
        print("| input | defect contrast kept |\n|---|---:|")
        for name, v in kept.items():
            print(f"| {name} | {100 * v:.0f}% |")
        return

    import torch

    from diffusionad_edge.bench.machine import describe_machine
    from diffusionad_edge.data.builtin import LONG_PART, generate_dataset
    from diffusionad_edge.data.long_part import long_part_shape
    from diffusionad_edge.data.mvtec import MVTecCategory
    from diffusionad_edge.data.preprocess import read_image

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        root = args.out / "data"
        generate_dataset(root, category=LONG_PART, n_train=args.n_train, n_test_good=args.n_test,
                         n_test_per_defect=args.n_test, size=args.height, seed=args.seed)
        dataset = MVTecCategory(root, LONG_PART)
        if args.roi is None:  # the band the part can occupy (see data/long_part.py), with a margin
            h, w = long_part_shape(args.height)
            band = min(h, max(int(0.68 * h), args.tile))  # at least one tile tall
            args.roi = f"0,{min(int(0.16 * h), h - band)},{w},{band}"
    else:
        dataset = MVTecCategory(args.data)
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    specs = _pipelines(args) if args.roi or "roi-tiled" not in names else None
    if specs is None:
        raise SystemExit("roi-tiled needs --roi x,y,w,h for your data")
    sizes = sorted({read_image(s.image_path).shape[:2] for s in dataset.test_samples})
    smallest = min(min(read_image(p).shape[:2]) for p in dataset.train_images)
    smallest = min(smallest, *(min(hw) for hw in sizes))
    if any(specs[n]["tile"] for n in names) and args.tile > smallest:
        raise SystemExit(f"--tile {args.tile} is larger than the smallest image side ({smallest} px): pass a smaller --tile")
    image_sizes = f"{sizes[0][0]}x{sizes[0][1]}" if len(sizes) == 1 else f"{len(sizes)} sizes, {smallest} px smallest side"
    rows = {}
    for name in names:
        path, info = _train(name, specs[name], args, dataset, args.out)
        info.update(_evaluate(path, dataset, args.limit))
        rows[name] = info
        print(f"[{name}] {info['steps']} steps: {json.dumps({k: round(v, 4) for k, v in info['overall'].items()})}", flush=True)
    machine = describe_machine()
    meta = {"data": str(dataset.path), "preset": args.preset, "minutes": args.minutes, "image_sizes": image_sizes,
            "machine": f"{machine.get('cpu', 'CPU')}, torch threads {torch.get_num_threads()}"}
    (args.out / "long_parts.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "long_parts.md").write_text(_table(rows, meta))
    print(_table(rows, meta))


if __name__ == "__main__":
    main()
