"""Summarise a learning-curve run (benchmarks/learning_curve.sh): one table and one chart of test
metrics against training minutes, per recipe.

``python -m diffusionad_edge.bench.learning_curve OUT_DIR --recipes "edge-v1 edge" --budgets "10 20 40"``
reads ``OUT_DIR/<recipe>.b<minutes>.pt`` (for the step count and training time) and
``OUT_DIR/<recipe>.b<minutes>.eval.json`` and writes ``learning_curve.md``, ``.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np

METRICS = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")

#: Published reference rows, shown beside a dataset's measured rows (name of the data folder -> row).
#: DiffusionAD paper, Table (MVTec AD toothbrush): image AUROC 100, pixel AUROC 98.8, PRO 93.7, pixel AP 61.1.
REFERENCES = {
    "toothbrush": {"recipe": "paper (DiffusionAD, GPU, full training)", "image_auroc": 1.0, "pixel_auroc": 0.988,
                   "pixel_ap": 0.611, "aupro": 0.937},
}
COLOURS = [(200, 90, 30), (40, 40, 200), (40, 150, 40), (150, 40, 150)]


def collect(out: Path, recipes: list[str], budgets: list[float]) -> list[dict]:
    from ..models.checkpoint_io import read_checkpoint  # torch: only when summarising

    rows = []
    for recipe in recipes:
        for b in budgets:
            stem = f"{recipe}.b{b:g}"
            if not (out / f"{stem}.eval.json").is_file():
                continue  # a budget this recipe was not run for
            ev = json.loads((out / f"{stem}.eval.json").read_text())
            ck = read_checkpoint(out / f"{stem}.pt")
            tc = ck.get("train_config", {})
            rows.append({
                "recipe": recipe, "budget_min": b, "steps": int(ck.get("step", 0)),
                "train_min": round(float(ck.get("train_seconds", 0.0)) / 60, 1) or None,
                "preset": json.loads(ck["model_config"])["preset"],
                "recipe_config": {k: tc.get(k) for k in ("batch_size", "crop_size", "lr_denoiser", "lr_segmenter",
                                                          "lr_schedule", "timesteps", "synthesis", "ema_decay")},
                **{m: ev["overall"].get(m) for m in METRICS},
                "per_type": {t: {m: v.get(m) for m in METRICS} for t, v in ev.get("per_type", {}).items()},
            })
    return rows


def _f(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def to_markdown(rows: list[dict], mode: str, reference: dict | None = None) -> str:
    lines = ["| recipe | budget (min) | steps | image AUROC | pixel AUROC | pixel AP | AUPRO@0.3 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['budget_min']:g} | {r['steps']} | " + " | ".join(_f(r[m]) for m in METRICS) + " |")
    if reference:
        lines.append(f"| {reference['recipe']} | - | - | " + " | ".join(_f(reference.get(m)) for m in METRICS) + " |")
    note = ("Rows below the largest budget are snapshots of the same run (its schedule spans the largest budget)."
            if mode == "snapshots" else "Each row is its own training run.")
    typed = [r for r in rows if len(r.get("per_type", {})) > 1]
    if typed:
        lines += ["", "", "Per defect type (each type's images and all good test images):", "",
                  "| recipe | budget (min) | defect type | image AUROC | pixel AUROC | pixel AP | AUPRO@0.3 |",
                  "|---|---|---|---|---|---|---|"]
        for r in typed:
            for t, v in r["per_type"].items():
                lines.append(f"| {r['recipe']} | {r['budget_min']:g} | {t} | " + " | ".join(_f(v.get(m)) for m in METRICS) + " |")
    return "\n".join(lines) + "\n\n" + note + "\n"


def draw(rows: list[dict], path: Path) -> None:
    """Two panels (image AUROC, pixel AP) against minutes, one line per recipe, the legend below them."""
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    W, pad, panels_h = 1000, 60, 440  # the panels' band; the legend's rows go below it
    H = panels_h + 30 + 22 * len(recipes) + 10
    img = np.full((H, W, 3), 255, np.uint8)
    xmax = max(r["budget_min"] for r in rows)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for panel, metric in enumerate(("image_auroc", "pixel_ap")):
        x0, x1 = pad + panel * (W // 2), (panel + 1) * (W // 2) - 20
        y0, y1 = pad, panels_h - pad
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
        for t in np.linspace(0, 1, 6):
            y = int(y1 - t * (y1 - y0))
            cv2.line(img, (x0, y), (x1, y), (230, 230, 230), 1)
            cv2.putText(img, f"{t:.1f}", (x0 - 35, y + 4), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        # Budget labels: numbers only; a label that would touch its left neighbour (10 and 20 beside 120 on
        # one axis) drops to a second line instead of overlapping it.
        last_x, row = -1000, 0
        for b in sorted({r["budget_min"] for r in rows}):
            x = int(x0 + b / xmax * (x1 - x0))
            cv2.line(img, (x, y1), (x, y0), (235, 235, 235), 1)
            row = 1 - row if x - last_x < 34 else 0
            cv2.putText(img, f"{b:g}", (x - 8, y1 + 18 + 16 * row), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            last_x = x
        cv2.putText(img, "training minutes", ((x0 + x1) // 2 - 60, y1 + 54), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, metric.replace("_", " "), (x0, y0 - 12), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        for i, recipe in enumerate(recipes):
            pts = [(int(x0 + r["budget_min"] / xmax * (x1 - x0)), int(y1 - (r[metric] or 0) * (y1 - y0)))
                   for r in rows if r["recipe"] == recipe and r[metric] is not None]
            c = COLOURS[i % len(COLOURS)]
            for a, b in zip(pts, pts[1:]):
                cv2.line(img, a, b, c, 2, cv2.LINE_AA)
            for p in pts:
                cv2.circle(img, p, 5, c, -1)
    for i, recipe in enumerate(recipes):  # the legend, below both panels, off the lines
        c, y = COLOURS[i % len(COLOURS)], panels_h + 10 + 22 * i
        cv2.line(img, (pad, y), (pad + 30, y), c, 2, cv2.LINE_AA)
        cv2.circle(img, (pad + 15, y), 5, c, -1)
        cv2.putText(img, recipe, (pad + 40, y + 5), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--recipes", default="edge-v1 edge")
    ap.add_argument("--budgets", default="10 20 40")
    ap.add_argument("--mode", default="snapshots")
    ap.add_argument("--dataset", default="", help="name of the data folder, for a published reference row (e.g. toothbrush)")
    a = ap.parse_args(argv)
    rows = collect(a.out, a.recipes.split(), [float(b) for b in a.budgets.split()])
    md = to_markdown(rows, a.mode, REFERENCES.get(a.dataset))
    (a.out / "learning_curve.md").write_text(md)
    (a.out / "learning_curve.json").write_text(json.dumps({"mode": a.mode, "rows": rows}, indent=2))
    draw(rows, a.out / "learning_curve.png")
    print(md)
    print(f"table: {a.out / 'learning_curve.md'}  chart: {a.out / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
