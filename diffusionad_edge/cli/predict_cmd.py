"""``dae predict``: score images and folders, write overlays and a results table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..runtime.thresholds import score_text
from .common import console, out, plural, print_table


def predict(
    paths: list[Path] = typer.Argument(..., metavar="IMAGE", help="Images, folders (searched recursively) or globs."),
    model: Path = typer.Option(..., "--model", "-m", help="Bundle folder or checkpoint (.pt)."),
    backend: Optional[str] = typer.Option(None, help="Override the bundle's backend (e.g. onnxruntime for a TensorRT bundle's ONNX)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Write overlays and results.csv/results.json here."),
    threshold: Optional[float] = typer.Option(None, help="Override the bundle's image threshold."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON lines on stdout (for scripts)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="Region of interest x,y,w,h in image pixels, replacing the model's."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the results of an earlier run in --out (only a folder dae wrote)."),
    max_image_mp: Optional[float] = typer.Option(None, "--max-image-mp", min=0.001, help="Largest image in megapixels, read from "
                                                 "the file's header before decoding (larger ones are skipped, never decoded). "
                                                 "Default: 256x the model's input area, at least 16.8 (4096x4096)."),
) -> None:
    """Score images: anomaly score, OK/NG, and overlays. Unreadable files are listed, not fatal
    (exit code 1 when any failed)."""
    from ..runtime.predict import predict_images

    report = predict_images(model, paths, out_dir, backend, threshold, roi or None, overwrite, max_image_mp,
                            on_row=(lambda row: print(json.dumps(row), flush=True)) if as_json else None,
                            on_failure=lambda fail: console.print(f"skipped: {fail['error']}", markup=False, highlight=False,
                                                                  soft_wrap=True),
                            warn=lambda m: console.print(f"warning: {m}"))
    if not as_json:
        _print_rows(report.rows)
        ok = sum(r["decision"] == "OK" for r in report.rows)
        out.print(f"{plural(len(report.rows), 'image')} scored: {ok} OK, {report.ng} NG"
                  + (f", {len(report.failed)} unreadable" if report.failed else "")
                  + (f"; overlays and results.csv/results.json in {out_dir}" if out_dir else ""))
        for fail in report.failed:
            out.print(f"  unreadable: {fail['path']}")
    if report.failed:
        raise typer.Exit(1)


def _print_rows(rows: list[dict]) -> None:
    """One line per image: path, decision, score and normalised score (0.5 = the threshold)."""
    from rich.table import Table

    table = Table(title=None, box=None, pad_edge=False)
    for col, justify in (("image", "left"), ("decision", "left"), ("score", "right"), ("normalised", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        norm = r["normalised_score"]
        table.add_row(r["path"], r["decision"] or "--", score_text(r['score']), "-" if norm != norm else f"{norm:.3f}")
    print_table(table)
