"""Localisation study: what limits the anomaly map, judged on real defects per defect type.

Runs each checkpoint once over a dataset's test split (PyTorch, one-step mode, the fixed noise the
bundles bake in), keeps the maps, the guided reconstructions x0_g and the scores, and then reports
for every checkpoint and every smoothing sigma of the map (a Gaussian blur before the metrics; 0 =
the raw map, this toolkit's and the paper's code's protocol; 4 = the common protocol of the field)
image AUROC, pixel AUROC, pixel AP and AUPRO@0.3, overall and per defect type. With a blur the
image score is recomputed from the blurred map (mean of its top-k pixels), as a graph that blurred
would compute it.

For each checkpoint it also saves a grid picture per defect type: for the first few defective
images, the image, the ground-truth mask, x0_g, |image - x0_g| and the raw map, so that one can
look at *why* a map misses part of a defect (the reconstruction kept the defect, or the
segmentation net did not mark it).

A variant may change the one-step reconstruction at inference only (the weights are the
checkpoint's): ``name=path.pt@t_b=600,w=2`` evaluates it with guidance timestep t_b = 600 and
guidance scale w = 2 (also ``t_s``). A study tool: the exported graph's t_s / t_b are the
product's constants.

Usage:
    python benchmarks/localisation_study.py --data ../shared/data/toothbrush --out study/tb \\
        control=runs/tb_ctrl.pt nodice=runs/tb_nodice.pt --sigmas 0,4,8
    python benchmarks/localisation_study.py --data ../shared/data/toothbrush --out study/tb_guidance \\
        w1=runs/tb.pt w2=runs/tb.pt@w=2 tb600=runs/tb.pt@t_b=600

Writes OUT/study.json, OUT/study.md and OUT/<name>-<defect>.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from diffusionad_edge.data.mvtec import MVTecCategory, load_test_sample
from diffusionad_edge.errors import DaeError
from diffusionad_edge.evaluate.metrics import all_metrics
from diffusionad_edge.models.checkpoint_io import load_model

METRICS = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")
# Inference-only overrides a variant may carry after "@": key -> DiffusionConfig field.
GUIDANCE_KEYS = {"t_s": "t_s", "t_b": "t_b", "w": "guidance_w"}


def parse_variant(spec: str) -> tuple[str, Path, dict[str, float]]:
    """``name=path.pt[@key=value,...]`` -> (name, path, {DiffusionConfig field: value}); ValueError if malformed."""
    name, rest = spec.split("=", 1)
    path, _, extra = rest.partition("@")
    overrides: dict[str, float] = {}
    for item in filter(None, extra.split(",")):
        key, value = item.split("=", 1)
        if key not in GUIDANCE_KEYS:
            raise ValueError(f"unknown override {key!r} (choose from {', '.join(GUIDANCE_KEYS)})")
        overrides[GUIDANCE_KEYS[key]] = int(value) if key != "w" else float(value)
    if not name or not path:
        raise ValueError(spec)
    return name, Path(path), overrides


def blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each (H, W) map, truncated at 4 sigma (as scipy's gaussian_filter)."""
    if sigma <= 0:
        return maps
    k = 2 * int(round(4 * sigma)) + 1
    return np.stack([cv2.GaussianBlur(m, (k, k), sigma, borderType=cv2.BORDER_REFLECT) for m in maps])


def top_k_scores(maps: np.ndarray, k: int) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    return np.sort(flat, axis=1)[:, -k:].mean(axis=1)


def load_variant(ckpt: Path, overrides: dict[str, float]):
    """(model, payload) of a checkpoint with ``overrides`` replacing DiffusionConfig fields (t_s, t_b,
    guidance_w) for inference; DaeError if the file is not a checkpoint or an override is out of range."""
    model, payload = load_model(ckpt)
    for field, value in overrides.items():
        setattr(model.config.diffusion, field, value)
    model.config.validate()
    return model, payload


@torch.no_grad()
def run_model(model, payload: dict, samples, batch: int = 8):
    """(maps (N, H, W), scores (N,), reconstructions (N, 3, H, W) in [0, 1], images, masks, top_k, meta)."""
    # The raw map: a checkpoint's own map_sigma (2 px for `edge` since round 1) would otherwise be added to
    # every --sigmas blur below, and "sigma 0" would not be the raw map.
    stored_sigma = model.config.diffusion.map_sigma
    model.set_map_sigma(0.0)
    hw = model.config.input_hw
    maps, scores, recons, images, masks = [], [], [], [], []
    for start in range(0, len(samples), batch):
        loaded = [load_test_sample(s, hw) for s in samples[start:start + batch]]
        x = torch.from_numpy(np.stack([img for img, _ in loaded]).astype(np.float32))
        det = model.detect(x)
        maps.append(det.anomaly_map[:, 0].float().numpy())
        scores.append(det.score.float().numpy())
        recons.append(det.reconstruction.clamp(0, 1).float().numpy())
        images.append(x.numpy())
        masks += [m > 0.5 for _, m in loaded]
    meta = {"step": int(payload.get("step", 0)), "train_minutes": round(float(payload.get("train_seconds", 0.0)) / 60, 1),
            "preset": model.config.preset, "train_config": payload.get("train_config", {}), "model_map_sigma": stored_sigma,
            "inference": {k: getattr(model.config.diffusion, k) for k in ("t_s", "t_b", "guidance_w")}}
    return (np.concatenate(maps), np.concatenate(scores), np.concatenate(recons), np.concatenate(images),
            np.stack(masks), model.config.diffusion.top_k, meta)


def metrics_by_type(labels, types, scores, masks, maps) -> dict[str, dict[str, float]]:
    out = {"overall": all_metrics(labels, scores, masks, maps)}
    for defect in sorted(set(types.tolist()) - {"good"}):
        sel = (types == defect) | (types == "good")
        out[defect] = all_metrics(labels[sel], scores[sel], masks[sel], maps[sel])
    return out


def residual_ratio_by_type(types, images, recons, masks) -> dict[str, float]:
    """Per defect type, the mean over its images of mean |image - x0_g| on the defect's pixels divided by
    the same on the image's normal pixels: about 1 where the guided reconstruction kept the defect (the
    segmentation net then has nothing to see inside it), well above 1 where it removed it."""
    diff = np.abs(images - recons).mean(axis=1)  # (N, H, W), gray
    out = {}
    for defect in sorted(set(types.tolist()) - {"good"}):
        ratios = [float(diff[i][masks[i]].mean() / max(diff[i][~masks[i]].mean(), 1e-6))
                  for i in np.flatnonzero(types == defect) if masks[i].any() and (~masks[i]).any()]
        out[defect] = float(np.mean(ratios)) if ratios else float("nan")
    return out


def _tile(rgb01: np.ndarray) -> np.ndarray:
    return (np.clip(rgb01, 0, 1) * 255).astype(np.uint8)


def save_grids(out: Path, name: str, types, images, masks, recons, maps, per_type: int) -> list[str]:
    """One PNG per defect type: rows = defective images; columns = image, mask, x0_g, |x0 - x0_g|, map."""
    written = []
    for defect in sorted(set(types.tolist()) - {"good"}):
        idx = np.flatnonzero(types == defect)[:per_type]
        rows = []
        for i in idx:
            img = images[i].transpose(1, 2, 0)
            rec = recons[i].transpose(1, 2, 0)
            diff = np.abs(img - rec).mean(axis=2)
            diff = diff / max(diff.max(), 1e-6)
            mask = np.repeat(masks[i][..., None].astype(np.float32), 3, axis=2)
            heat = cv2.applyColorMap(_tile(maps[i]), cv2.COLORMAP_JET)[..., ::-1] / 255.0
            row = [img, mask, rec, np.repeat(diff[..., None], 3, axis=2), heat]
            sep = np.ones((img.shape[0], 4, 3))
            rows.append(np.concatenate(sum(([c, sep] for c in row), [])[:-1], axis=1))
        grid = np.concatenate(sum(([r, np.ones((4, r.shape[1], 3))] for r in rows), [])[:-1], axis=0)
        path = out / f"{name}-{defect}.png"
        cv2.imwrite(str(path), cv2.cvtColor(_tile(grid), cv2.COLOR_RGB2BGR))
        written.append(path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="name=path.pt[@t_b=600,w=2], one per variant (the first is the control)")
    ap.add_argument("--data", type=Path, required=True, help="MVTec-layout category folder (test split + ground_truth)")
    ap.add_argument("--out", type=Path, required=True, help="folder for study.json, study.md and the grid pictures")
    ap.add_argument("--sigmas", default="0,4", help="comma-separated blur sigmas of the map before the metrics")
    ap.add_argument("--per-type", type=int, default=4, help="defective images per type in each grid picture")
    args = ap.parse_args(argv)
    try:
        variants = [parse_variant(c) for c in args.checkpoints]
        sigmas = [float(s) for s in args.sigmas.split(",") if s.strip()]
    except ValueError as exc:
        print(f"error: checkpoints are name=path.pt[@t_b=N,w=X] and --sigmas a comma-separated list of numbers ({exc})",
              file=sys.stderr)
        return 2
    missing = [str(p) for _, p, _ in variants if not p.is_file()]
    if missing:
        print(f"error: no such checkpoint: {', '.join(missing)}", file=sys.stderr)
        return 2
    # The data and every checkpoint (with its overrides) are checked before anything is written or run.
    try:
        samples = list(MVTecCategory(args.data).test_samples)
        models = [(name, ckpt, *load_variant(ckpt, overrides)) for name, ckpt, overrides in variants]
    except DaeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    labels = np.array([s.is_anomalous for s in samples], dtype=np.uint8)
    types = np.array([s.defect_type for s in samples], dtype=object)
    results: dict = {"data": str(args.data), "variants": {}}
    for name, ckpt, model, payload in models:
        t0 = time.perf_counter()
        maps, scores, recons, images, masks, top_k, meta = run_model(model, payload, samples)
        rows = {}
        for sigma in sigmas:
            m = blur(maps, sigma)
            s = scores if sigma <= 0 else top_k_scores(m, top_k)
            rows[f"{sigma:g}"] = metrics_by_type(labels, types, s, masks, m)
        # How much of each defect the raw map marks at all: the share of defect pixels scored
        # below 0.01 (a map that marks "a spot at one corner" has most of them there).
        defect_px = maps[masks]
        near_zero = float((defect_px < 0.01).mean()) if defect_px.size else float("nan")
        grids = save_grids(args.out, name, types, images, masks, recons, maps, args.per_type)
        results["variants"][name] = {"checkpoint": str(ckpt), **meta, "by_sigma": rows,
                                     "defect_pixels_below_0.01": near_zero, "grids": grids,
                                     "residual_ratio": residual_ratio_by_type(types, images, recons, masks)}
        print(f"{name}: step {meta['step']}, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    (args.out / "study.json").write_text(json.dumps(results, indent=1))
    (args.out / "study.md").write_text(to_markdown(results))
    print(to_markdown(results))
    return 0


def to_markdown(results: dict) -> str:
    lines = [f"Data: `{results['data']}` (test split, one-step, fixed noise)", ""]
    lines += ["| variant | steps | t_b | w | sigma | image AUROC | pixel AUROC | pixel AP | AUPRO | defect px < 0.01 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in results["variants"].items():
        for sigma, rows in v["by_sigma"].items():
            o = rows["overall"]
            inf = v.get("inference", {})
            head = f"| {name} | {v['step']} | {inf.get('t_b', '')} | {inf.get('guidance_w', '')} | {sigma} | "
            lines.append(head + " | ".join(f"{o[k]:.3f}" for k in METRICS) + f" | {v['defect_pixels_below_0.01']:.2f} |")
    lines += ["", "Per defect type (pixel AUROC / pixel AP / AUPRO; image AUROC):", ""]
    first = next(iter(results["variants"].values()))
    types = [t for t in next(iter(first["by_sigma"].values())) if t != "overall"]
    lines += ["| variant | sigma | " + " | ".join(types) + " |", "|---|---|" + "---|" * len(types)]
    for name, v in results["variants"].items():
        for sigma, rows in v["by_sigma"].items():
            cells = [f"{rows[t]['pixel_auroc']:.3f} / {rows[t]['pixel_ap']:.3f} / {rows[t]['aupro']:.3f}; "
                     f"{rows[t]['image_auroc']:.3f}" for t in types]
            lines.append(f"| {name} | {sigma} | " + " | ".join(cells) + " |")
    lines += ["", "Mean |image - x0_g| on defect pixels / on normal pixels, per type (about 1: the reconstruction "
              "kept the defect):", "", "| variant | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
    for name, v in results["variants"].items():
        ratio = v.get("residual_ratio", {})
        lines.append(f"| {name} | " + " | ".join(f"{ratio.get(t, float('nan')):.2f}" for t in types) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
