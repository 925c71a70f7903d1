"""Benchmark output: rich table, JSON, Markdown and a PNG chart (latency against accuracy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..files import fmt, to_json


def _f(v: Any, spec: str = ".1f") -> str:
    return fmt(v, spec, missing="-")


COLUMNS = ("row", "runs as", "batch", "p50 ms", "p90 ms", "p99 ms", "infer p50", "FPS", "GFLOP/img", "GFLOP/s",
           "peak MiB", "size MiB", "img AUROC", "pix AUROC", "pix AP", "d img AUROC", "speed-up vs iterative")


#: What fits an 80-100 column terminal; the full table is in bench.md.
COMPACT_COLUMNS = ("row", "runs as", "p50 ms", "infer p50", "FPS", "img AUROC", "pix AP", "speed-up vs iterative")


def row_cells(r: dict) -> list[str]:
    lat = r["latency_ms"]
    acc, delta = r.get("accuracy") or {}, r.get("accuracy_delta_vs_fp32") or {}
    speed = ", ".join(f"{v:.3g}x {k.replace('pytorch ', '')}" for k, v in r["speedup_vs"].items())
    return [r["name"], r["runtime_precision"], str(r["batch"]), _f(lat["total"]["p50"]), _f(lat["total"]["p90"]), _f(lat["total"]["p99"]),
            _f(lat["inference"]["p50"]), _f(r["fps"]), _f(r["gflop_per_image"]), _f(r["gflops_achieved"]), _f(r["peak_rss_mib"], ".0f"),
            _f(r["size_mib"]), _f(acc.get("image_auroc"), ".3f"), _f(acc.get("pixel_auroc"), ".3f"), _f(acc.get("pixel_ap"), ".3f"),
            _f(delta.get("image_auroc"), "+.3f"), speed]


def to_markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# dae bench", "", f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, ISA {' '.join(m['isa']) or 'n/a'}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in result["rows"]]
    lines += ["", "Latency: preprocess (a 640x480 frame) + inference + postprocess, ms. `runs as`: the precision the backend "
              "really computed in. Speed-ups are ratios of measured inference times per image."]
    notes = [f"- {r['name']}: {r['note']}" for r in result["rows"] if r.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def draw_chart(result: dict, path: Path) -> Path:
    """Latency (log x) against image AUROC (y) when measured, else against FPS; one labelled point per row."""
    rows = result["rows"]
    W, H, pad = 900, 560, 80
    img = np.full((H, W, 3), 255, np.uint8)
    have_acc = any(r.get("accuracy") for r in rows)
    if have_acc:  # rows measured for speed only (e.g. iterative) are left out of an accuracy chart
        rows = [r for r in rows if r.get("accuracy")]
    xs = np.array([r["latency_ms"]["inference"]["p50"] for r in rows])
    ys = np.array([r["accuracy"]["image_auroc"] if have_acc else r["fps"] for r in rows], dtype=float)
    ys = np.nan_to_num(ys, nan=0.0)
    lx = np.log10(np.maximum(xs, 1e-3))
    x0, x1 = lx.min() - 0.2, lx.max() + 0.2
    y0, y1 = (0.0, 1.0) if have_acc else (0.0, ys.max() * 1.15 + 1e-9)

    def px(x: float, y: float) -> tuple[int, int]:
        return (int(pad + (x - x0) / (x1 - x0) * (W - 2 * pad)), int(H - pad - (y - y0) / (y1 - y0) * (H - 2 * pad)))

    cv2.rectangle(img, (pad, pad), (W - pad, H - pad), (0, 0, 0), 1)
    for e in range(int(np.floor(x0)), int(np.ceil(x1)) + 1):
        if x0 <= e <= x1:
            p = px(e, y0)
            cv2.line(img, (p[0], H - pad), (p[0], pad), (225, 225, 225), 1)
            cv2.putText(img, f"{10 ** e:g} ms", (p[0] - 20, H - pad + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for t in np.linspace(y0, y1, 6):
        p = px(x0, t)
        cv2.line(img, (pad, p[1]), (W - pad, p[1]), (235, 235, 235), 1)
        cv2.putText(img, f"{t:.2f}" if have_acc else f"{t:.0f}", (10, p[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    palette = [(200, 80, 30), (30, 150, 30), (30, 30, 200), (160, 30, 160), (30, 160, 200), (100, 100, 100), (0, 120, 255), (120, 60, 0)]
    for i, (x, y, r) in enumerate(zip(lx, ys, rows)):
        p = px(x, y)
        c = palette[i % len(palette)]
        cv2.circle(img, p, 7, c, -1)
        (tw, _), _ = cv2.getTextSize(r["name"], cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)
        tx = p[0] + 9 if p[0] + 9 + tw < W - 5 else p[0] - 9 - tw  # keep labels inside the image
        cv2.putText(img, r["name"], (tx, p[1] - 6 - 12 * (i % 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.42, c, 1, cv2.LINE_AA)
    title = "inference latency p50 (log) vs image AUROC" if have_acc else "inference latency p50 (log) vs FPS"
    cv2.putText(img, title, (pad, pad - 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path


def write_outputs(result: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md", "chart": out_dir / "bench.png"}
    paths["json"].write_text(to_json(result))
    paths["markdown"].write_text(to_markdown(result))
    draw_chart(result, paths["chart"])
    return paths
