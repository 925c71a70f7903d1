"""Benchmark output: rich table, JSON, Markdown and PNG charts (matplotlib): latency per row split by
stage, and accuracy against model-only latency when accuracy was measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..files import fmt, to_json


def _f(v: Any, spec: str = ".1f") -> str:
    return fmt(v, spec, missing="-")


COLUMNS = ("row", "runs as", "batch", "p50 ms", "p90 ms", "p99 ms", "infer p50", "FPS", "speed-up vs PyTorch FP32", "GFLOP/img",
           "GFLOP/s", "peak MiB", "size MiB", "img AUROC", "pix AUROC", "pix AP", "d img AUROC", "speed-up vs iterative")


#: What fits an 80-100 column terminal; the full table is in bench.md.
COMPACT_COLUMNS = ("row", "runs as", "p50 ms", "infer p50", "FPS", "speed-up vs PyTorch FP32", "img AUROC", "pix AP")


def row_cells(r: dict) -> list[str]:
    lat = r["latency_ms"]
    acc, delta = r.get("accuracy") or {}, r.get("accuracy_delta_vs_fp32") or {}
    speed = ", ".join(f"{v:.3g}x {k.replace('pytorch ', '')}" for k, v in r["speedup_vs"].items())
    vs_fp32 = r.get("speedup_vs_pytorch_fp32")
    return [r["name"], r["runtime_precision"], str(r["batch"]), _f(lat["total"]["p50"]), _f(lat["total"]["p90"]), _f(lat["total"]["p99"]),
            _f(lat["inference"]["p50"]), _f(r["fps"]), "-" if vs_fp32 is None else f"{vs_fp32:.2f}x", _f(r["gflop_per_image"]),
            _f(r["gflops_achieved"]), _f(r["peak_rss_mib"], ".0f"), _f(r["size_mib"]), _f(acc.get("image_auroc"), ".3f"),
            _f(acc.get("pixel_auroc"), ".3f"), _f(acc.get("pixel_ap"), ".3f"), _f(delta.get("image_auroc"), "+.3f"), speed]


def to_markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# dae bench", "", f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, ISA {' '.join(m['isa']) or 'n/a'}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in result["rows"]]
    lines += ["", "Latency: preprocess (a 640x480 frame) + inference + postprocess, ms. `runs as`: the precision the backend "
              "really computed in. `infer p50`: model only (the backend's inference call on a prepared batch, one request "
              "at a time; `dae eval`'s model-only figure is instead a mean over its evaluation batches). "
              "Speed-ups are ratios of measured mean inference times per image; `speed-up vs PyTorch FP32`: over PyTorch "
              "eager FP32 one-step at its first batch size."]
    notes = [f"- {r['name']}: {r['note']}" for r in result["rows"] if r.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


#: stages of a row's latency, in the order a frame goes through them, and their bar colours
STAGES = (("preprocess", "#8da0cb"), ("inference", "#fc8d62"), ("postprocess", "#66c2a5"))


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    from ..optional import require

    matplotlib = require("matplotlib")
    matplotlib.use("Agg", force=True)
    return require("matplotlib.pyplot")


def _wrap(name: str, width: int = 30) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(name, width)) or name


def latency_figure(result: dict):
    """Bars of each row's median latency per image, split into preprocess / inference / postprocess,
    with the total and the speed-up over PyTorch FP32 at the end of the bar. Rows far slower than the
    rest (the iterative ones) are cut at the axis edge and their time written there. Returns the figure."""
    plt = _pyplot()
    rows = result["rows"]
    per_image = [{st: r["latency_ms"][st]["p50"] / r["batch"] for st, _ in STAGES} for r in rows]
    totals = np.array([sum(p.values()) for p in per_image])
    median = float(np.median(totals))
    in_scale = totals[totals <= 10 * median]
    cap = float(in_scale.max() if in_scale.size else totals.max()) * 1.45
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.55 * len(rows)), dpi=110)
    y = np.arange(len(rows))[::-1]
    for stage, colour in STAGES:
        left = np.array([sum(p[s] for s, _ in STAGES[: [s for s, _ in STAGES].index(stage)]) for p in per_image])
        width = np.array([p[stage] for p in per_image])
        ax.barh(y, np.clip(left + width, 0, cap) - np.clip(left, 0, cap), left=np.clip(left, 0, cap), color=colour,
                label=f"{stage} (median)", height=0.6)
    for yi, total, r in zip(y, totals, rows):
        vs = r.get("speedup_vs_pytorch_fp32")
        text = f"{total:.1f} ms" + (f"  ({vs:.2f}x PyTorch FP32)" if vs is not None and "pytorch" not in r["name"] else "")
        if r.get("mode") == "throughput":
            text += "  (model only, per request under load)"
        if total > cap:
            ax.text(cap * 0.99, yi, f"off scale: {total:.0f} ms ", va="center", ha="right", fontsize=8, color="white", fontweight="bold")
        else:
            ax.text(total + cap * 0.01, yi, text, va="center", ha="left", fontsize=8)
    ax.set_yticks(y, [_wrap(r["name"]) for r in rows], fontsize=8)
    ax.set_xlim(0, cap)
    ax.set_xlabel("ms per image (median of each stage; batch rows divided by their batch size)")
    ax.grid(axis="x", color="#dddddd")
    ax.set_axisbelow(True)
    ax.set_title("Latency per image, by stage", pad=22)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_figure(result: dict):
    """Model-only inference time per image (x) against image AUROC (y), one marker per row with the
    names in a legend beside the plot; both ranges fitted to the data. None when no row has accuracy."""
    rows = [r for r in result["rows"] if (r.get("accuracy") or {}).get("image_auroc") is not None and r.get("mode", "latency") == "latency"]
    if not rows:
        return None
    plt = _pyplot()
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    xs = np.array([r["latency_ms"]["inference"]["p50"] / r["batch"] for r in rows])
    ys = np.array([r["accuracy"]["image_auroc"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    markers = "osD^vP*Xh<>p"
    colours = plt.get_cmap("tab10").colors
    for i, (x, yv, r) in enumerate(zip(xs, ys, rows)):
        ax.scatter([x], [yv], s=70, marker=markers[i % len(markers)], color=colours[i % len(colours)], label=_wrap(r["name"], 36), zorder=3)
    lo, hi = float(xs.min()), float(xs.max())
    if hi / max(lo, 1e-9) > 20:  # a wide range: log axis with 1-2-5 ticks written as plain numbers
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.6, hi * 1.6)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        pad = max(0.12 * (hi - lo), 0.08 * hi)
        ax.set_xlim(max(0.0, lo - pad), hi + pad)
    span = float(ys.max() - ys.min())
    pad = max(0.15 * span, 0.02)
    ax.set_ylim(max(0.0, ys.min() - pad), min(1.0 + pad / 4, ys.max() + pad))
    ax.set_xlabel("model-only inference, ms per image (median)")
    ax.set_ylabel("image AUROC")
    ax.grid(color="#dddddd")
    ax.set_axisbelow(True)
    ax.set_title("Accuracy against speed (up and to the left is better)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, labelspacing=1.0)
    fig.tight_layout()
    return fig


def draw_charts(result: dict, out_dir: Path) -> dict[str, Path]:
    """``bench.png`` (latency per row by stage) and, when accuracy was measured, ``bench_accuracy.png``.
    Without matplotlib (``pip install 'diffusionad_edge[charts]'``) no chart is drawn and ``{}`` returned."""
    from ..errors import MissingDependencyError

    try:
        plt = _pyplot()
    except MissingDependencyError:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, name, figure in (("chart", "bench.png", latency_figure), ("accuracy_chart", "bench_accuracy.png", accuracy_figure)):
        fig = figure(result)
        if fig is None:
            continue
        fig.savefig(out_dir / name, bbox_inches="tight")
        plt.close(fig)
        paths[key] = out_dir / name
    return paths


def write_outputs(result: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    """``bench.json``, ``bench.md`` and the charts (:func:`draw_charts`); returns their paths by kind."""
    paths = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md"}
    paths["json"].write_text(to_json(result))
    paths["markdown"].write_text(to_markdown(result))
    paths.update(draw_charts(result, out_dir))
    return paths
