"""``dae predict`` as a library function: score image files, write overlays and a results table.

:func:`predict_images` is the whole command (a model path in, its outputs checked first);
:func:`predict_files` scores files with a bundle already open."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2

from ..data.imagesize import max_pixels_from_mp
from ..data.preprocess import find_images, read_image
from ..data.roi import Roi, parse_roi
from ..errors import ConfigError, DaeError, MissingDependencyError
from ..files import write_csv, write_json
from ..paths import OutputPathError, check_apart, check_results_dir, fresh_output_dir, input_paths
from .bundle import Bundle, open_bundle
from .overlay import draw_overlay

CSV_FIELDS = ["path", "score", "normalised_score", "decision", "overlay"]


def expand_paths(paths: list[Path]) -> list[Path]:
    """Images of the given files, folders (recursive) and globs; a path that matches nothing is an error."""
    files: list[Path] = []
    for p in paths:
        found = find_images(p)
        if p.is_dir():
            files += found
            continue
        if not found and not p.is_file():
            raise ConfigError(f"no such file, folder or glob match: {p}")
        files += found if found else [p]  # an existing file with an unusual extension is still tried
    return files


@dataclass
class PredictReport:
    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    @property
    def ng(self) -> int:
        return sum(r["decision"] == "NG" for r in self.rows)


def predict_files(bundle: Bundle, files: list[Path], out_dir: Path | None = None,
                  on_row: Callable[[dict[str, Any]], None] | None = None,
                  on_failure: Callable[[dict[str, str]], None] | None = None,
                  overwrite: bool = False, max_pixels: int | None = None) -> PredictReport:
    """Score each file (decoded once); with ``out_dir``: overlays, ``results.csv`` and ``results.json``.
    Unreadable files, and images over ``max_pixels`` (read from the header, never decoded), are
    reported, not fatal. ``out_dir`` must be new or empty, or an earlier results folder and
    ``overwrite`` given (it is then replaced); it may not hold any of ``files``."""
    report = PredictReport()
    if out_dir is not None:
        check_results_dir(out_dir, "results folder", overwrite)
        check_apart(out_dir, "results folder", (("input image", f) for f in files))
        fresh_output_dir(out_dir, "dae predict")
        (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    for f in files:
        try:
            rgb = read_image(f, max_pixels)
            result = bundle.predict(rgb)
        except MissingDependencyError:  # the backend is not installed: no file can be scored
            raise
        except DaeError as exc:
            report.failed.append({"path": str(f), "error": str(exc)})
            if on_failure is not None:
                on_failure(report.failed[-1])
            continue
        row: dict[str, Any] = {"path": str(f), "score": round(result.score, 6),
                               "normalised_score": round(result.normalised_score, 6), "decision": bundle.decision(result)}
        report.rows.append(row)
        if out_dir is not None:
            overlay = draw_overlay(rgb[:, :, ::-1].copy(), result.anomaly_map, result.defect_mask, result.score, result.is_anomalous,
                                   threshold=bundle.image_threshold, pixel_threshold=bundle.thresholds.pixel_or_default)
            name = out_dir / "overlays" / f"{len(report.rows):05d}_{f.stem}.png"
            if not cv2.imwrite(str(name), overlay):
                raise OutputPathError(f"cannot write overlay {name}")
            row["overlay"] = str(name)
        if on_row is not None:
            on_row(row)
    if out_dir is not None:
        write_csv(out_dir / "results.csv", report.rows, CSV_FIELDS)
        write_json(out_dir / "results.json", {"results": report.rows, "failed": report.failed})
    return report


def predict_images(model: str | Path, paths: list[str | Path], out_dir: str | Path | None = None, backend: str | None = None,
                   threshold: float | None = None, roi: Roi | str | None = None, overwrite: bool = False,
                   max_image_mp: float | None = None, on_row: Callable[[dict[str, Any]], None] | None = None,
                   on_failure: Callable[[dict[str, str]], None] | None = None,
                   warn: Callable[[str], None] | None = None) -> PredictReport:
    """``dae predict``: score the images of ``paths`` (files, folders searched recursively, globs) with
    the model at ``model`` (bundle folder or checkpoint), as :func:`predict_files` does. ``out_dir`` is
    checked before the model is opened (never an input or the model, an earlier results folder only
    with ``overwrite``); ``threshold`` overrides the model's image threshold, ``roi`` (a :class:`Roi` or
    its ``x,y,w,h`` text) its region of interest; ``max_image_mp``: the largest image in megapixels (default from the model's input).
    ``warn``: told when the model has no image threshold (no decisions)."""
    paths = [Path(p) for p in paths]  # a script's strings as well as the CLI's paths
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        inputs = [("the input", p) for p in input_paths(paths)] + [("the model", model)]
        check_apart(out_dir, "results folder (--out)", inputs)
        check_results_dir(out_dir, "results folder (--out)", overwrite)
    if isinstance(roi, str):
        roi = parse_roi(roi)
    files = expand_paths(paths)
    if not files:
        raise ConfigError("no images found in the given paths")
    with open_bundle(model, backend) as bundle:
        bundle.override_thresholds(image=threshold)
        bundle.set_roi(roi)
        if bundle.image_threshold is None and warn is not None:
            warn("no image threshold in this model: decisions are not available (use --threshold)")
        return predict_files(bundle, files, out_dir, on_row=on_row, on_failure=on_failure, overwrite=overwrite,
                             max_pixels=max_pixels_from_mp(max_image_mp, bundle.input_hw))
