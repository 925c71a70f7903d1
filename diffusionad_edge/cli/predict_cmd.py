"""``dae predict``: score images and folders, write overlays and a results table."""

from __future__ import annotations

import csv
import glob
import json
from pathlib import Path
from typing import Optional

import typer

from ..data.preprocess import IMAGE_EXTENSIONS
from ..errors import ConfigError, DaeError
from .common import console, out


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True)) if any(c in str(p) for c in "*?[") else []
            if not matches:
                raise ConfigError(f"no such file, folder or glob match: {p}")
            files += [m for m in matches if m.is_file()]
    return files


def predict(
    paths: list[Path] = typer.Argument(..., help="Images, folders (searched recursively) or globs."),
    model: Path = typer.Option(..., "--model", "-m", help="Export bundle folder or checkpoint (.pt)."),
    backend: Optional[str] = typer.Option(None, help="Override the bundle's backend (e.g. onnxruntime for a TensorRT bundle's ONNX)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Write overlays and results.csv/results.json here."),
    threshold: Optional[float] = typer.Option(None, help="Override the image threshold from the bundle."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON lines on stdout (for scripts)."),
) -> None:
    """Score images: anomaly score, OK/NG, and overlays. Unreadable files are listed, not fatal
    (exit code 1 when any failed)."""
    import cv2

    from ..runtime.overlay import draw_overlay
    from ..runtime.predictor import open_predictor

    files = _expand(paths)
    if not files:
        raise ConfigError("no images found in the given paths")
    rows, failed = [], []
    with open_predictor(model, backend) as predictor:
        if threshold is not None:
            predictor.image_threshold = threshold
        if predictor.image_threshold is None:
            console.print("warning: no image threshold in this model: decisions are not available (use --threshold)")
        if out_dir is not None:
            (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
        for f in files:
            try:
                frame = predictor.preprocess(f)
                r = predictor.predict_batch(frame[None])[0]
            except DaeError as exc:
                failed.append({"path": str(f), "error": str(exc)})
                console.print(f"[red]skipped[/] {exc}")
                continue
            row = {"path": str(f), "score": round(r.score, 6), "normalised_score": round(r.normalised_score, 6),
                   "decision": None if predictor.image_threshold is None else ("NG" if r.is_anomalous else "OK")}
            rows.append(row)
            if as_json:
                print(json.dumps(row), flush=True)
            if out_dir is not None:
                bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
                overlay = draw_overlay(bgr, r.anomaly_map, r.defect_mask, r.score, r.is_anomalous)
                name = f"{len(rows):05d}_{f.stem}.png"
                cv2.imwrite(str(out_dir / "overlays" / name), overlay)
                row["overlay"] = str(out_dir / "overlays" / name)
    if out_dir is not None:
        with open(out_dir / "results.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["path", "score", "normalised_score", "decision", "overlay"])
            w.writeheader()
            w.writerows(rows)
        (out_dir / "results.json").write_text(json.dumps({"results": rows, "failed": failed}, indent=2))
    if not as_json:
        ng = sum(r["decision"] == "NG" for r in rows)
        out.print(f"{len(rows)} images scored, {ng} NG, {len(failed)} unreadable" + (f"; results in {out_dir}" if out_dir else ""))
        for fail in failed:
            out.print(f"  unreadable: {fail['path']}")
    if failed:
        raise typer.Exit(1)
