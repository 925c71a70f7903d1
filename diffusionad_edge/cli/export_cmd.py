"""``dae export`` and ``dae targets``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import ConfigError
from ..export.checks import DEFAULT_MAX_DROP, DEFAULT_MAX_MAP_DROP, METRIC_LABELS
from ..export.targets import list_targets, load_target
from ..files import fmt
from ..interrupts import interrupt_guard
from ..runtime.thresholds import DEFAULT_MARGIN_SD, MARGIN_FLOOR_LOGIT, MAX_MARGIN_SD, RULES, score_text
from .common import console, out, print_table


def targets(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the built-in target profiles (a .toml file of your own works wherever a target is asked)."""
    profiles = list_targets()
    if as_json:
        out.print_json(json.dumps([p.to_dict() for p in profiles]))
        return
    table = Table(title="target profiles")
    for col in ("name", "backend", "device", "default", "precisions", "input", "description"):
        table.add_column(col)
    for p in profiles:
        table.add_row(p.name, p.backend, p.device, p.precision, ", ".join(p.precisions), str(p.input_size), p.description)
    print_table(table)


def export(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="Checkpoint written by `dae train` (or, with --build-engine, a TensorRT bundle folder)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Target profile name (see `dae targets`) or a .toml profile file."),
    precision: Optional[str] = typer.Option(None, help="fp32, fp16 or int8 (default: the profile's)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Bundle folder (default: exports/<checkpoint>-<target>-<precision>)."),
    input_size: Optional[str] = typer.Option(None, help="Override the fixed input size: N or HxW (height x width), e.g. 256x640; "
                                              "sides multiples of the model's divisor. Default: the profile's (rectangular or tiled model: its own)."),
    calibration: Optional[Path] = typer.Option(None, help="Calibration manifest (JSON, see calibration/README.md). "
                                               "Default: a seeded subset of the training normals."),
    calibration_count: int = typer.Option(64, min=1, help="Images in the default calibration set."),
    eval_data: Optional[Path] = typer.Option(None, help="MVTec-layout folder whose test split measures accuracy against FP32."),
    eval_category: Optional[str] = typer.Option(None, help="Category under --eval-data."),
    eval_limit: Optional[int] = typer.Option(None, min=1, help="Use at most N evaluation images."),
    threshold_data: Optional[Path] = typer.Option(None, help="MVTec-layout folder of labelled images (test/good, test/<defect>, "
                                                  "ground_truth) from your line: its good images place the OK/NG and pixel "
                                                  "thresholds, its defective ones give the expected miss rate "
                                                  "(default: the checkpoint's held-out normals; synthetic anomalies as a check)."),
    threshold_category: Optional[str] = typer.Option(None, help="Category under --threshold-data."),
    threshold_rule: str = typer.Option("normals", help=f"How the thresholds are placed: {' or '.join(RULES)}. normals: above the "
                                       "highest normal score (pixel: the highest pixel of a normal map) by a margin in logit space; "
                                       "best-f1: best F1 on normals + anomalies, never below the highest normal."),
    threshold_margin: Optional[float] = typer.Option(None, help=f"normals rule: the margin in standard deviations of the normal "
                                                     f"logits, 0-{MAX_MARGIN_SD:g} (default {DEFAULT_MARGIN_SD:g}; never less "
                                                     f"than {MARGIN_FLOOR_LOGIT:g} in logits)."),
    false_alarm_rate: Optional[float] = typer.Option(None, help="Target fraction of good parts rejected in [0, 1) "
                                                     "(e.g. 0.01): the lowest OK/NG threshold within it, instead of the rule."),
    max_drop: float = typer.Option(DEFAULT_MAX_DROP, min=0.0, help="Largest image-AUROC drop against FP32 a reduced precision may cause."),
    max_pixel_auroc_drop: float = typer.Option(DEFAULT_MAX_MAP_DROP, min=0.0, help="Largest pixel-AUROC drop against FP32 (needs --eval-data)."),
    max_pixel_ap_drop: float = typer.Option(DEFAULT_MAX_MAP_DROP, min=0.0, help="Largest pixel-AP drop against FP32 (needs --eval-data)."),
    max_aupro_drop: float = typer.Option(DEFAULT_MAX_MAP_DROP, min=0.0, help="Largest AUPRO drop against FP32 (needs --eval-data)."),
    accuracy_aware: bool = typer.Option(False, help="OpenVINO INT8: NNCF accuracy-controlled quantization within --max-drop (needs --eval-data)."),
    keep_failed: bool = typer.Option(False, help="Write the bundle even when a check fails (marked as failed)."),
    overwrite: bool = typer.Option(False, help="Replace an existing bundle folder."),
    build_engine: bool = typer.Option(False, "--build-engine",
                                      help="On the device: build the TensorRT engine of a jetson-* bundle (given as the first argument)."),
    set_threshold: Optional[float] = typer.Option(None, "--set-threshold",
                                                  help="Change the image (OK/NG) threshold of the bundle given as the first argument."),
    set_pixel_threshold: Optional[float] = typer.Option(None, "--set-pixel-threshold",
                                                        help="Change the pixel (defect outline) threshold of the bundle given as the first argument."),
    refit_threshold: Optional[Path] = typer.Option(None, "--refit-threshold", metavar="REVIEW_DIR",
                                                   help="Place the image and pixel thresholds of the bundle given as the first argument "
                                                   "again, by the rule that placed them at export, with the reviewed good frames of "
                                                   "REVIEW_DIR/good (scored by the bundle's own runner) beside the normals it recorded; "
                                                   "REVIEW_DIR/defect gives the recall on confirmed defects. Model files untouched; the "
                                                   "previous metadata.json kept as metadata.json.<time>.bak."),
) -> None:
    """Export a checkpoint to a checked bundle for a target (ONNX Runtime, OpenVINO, TensorRT)."""
    if build_engine:
        _build_engine(checkpoint)
        return
    if refit_threshold is not None:
        if set_threshold is not None or set_pixel_threshold is not None:
            raise ConfigError("give --refit-threshold or --set-threshold/--set-pixel-threshold, not both")
        _refit(checkpoint, refit_threshold)
        return
    if set_threshold is not None or set_pixel_threshold is not None:
        from ..runtime.bundle import set_thresholds

        thr = set_thresholds(checkpoint, image=set_threshold, pixel=set_pixel_threshold)["thresholds"]
        console.print(f"{checkpoint}: thresholds now image {score_text(thr['image'])}, pixel {score_text(thr['pixel'])} "
                      "(metadata.json rewritten with a new integrity record)")
        return
    if target is None:
        raise ConfigError("--target is required (see `dae targets`)")
    if out_dir is None:
        out_dir = default_bundle_dir(checkpoint, target, precision)
    previous = out_dir.is_dir() and any(out_dir.iterdir())
    # Ctrl-C from here on: one line and exit code 130 within seconds, never a hang in native code or an import
    with interrupt_guard(f"interrupted; {'previous bundle kept: ' if previous else 'nothing written: '}{out_dir}"):
        result = _export(checkpoint, target, precision, out_dir, input_size, calibration, calibration_count, eval_data,
                         eval_category, eval_limit, threshold_data, threshold_category, max_drop, accuracy_aware, keep_failed,
                         overwrite, false_alarm_rate, threshold_rule, threshold_margin,
                         (max_pixel_auroc_drop, max_pixel_ap_drop, max_aupro_drop))
    print_report(result.metadata)
    console.print(f"bundle: {result.bundle}" + ("" if result.passed else " [red](checks FAILED, kept on request)"))
    if not result.passed:
        raise typer.Exit(3)


def default_bundle_dir(checkpoint: Path, target: str, precision: str | None) -> Path:
    """``exports/<checkpoint stem>-<target name>-<precision>``, the precision as the export resolves it (the
    profile's own without --precision), so two exports of one model in different precisions never share a folder
    by accident."""
    name = Path(target).stem if target.endswith(".toml") else target
    return Path("exports") / f"{checkpoint.stem}-{name}-{load_target(target).check_precision(precision)}"


def _export(checkpoint, target, precision, out_dir, input_size, calibration, calibration_count, eval_data, eval_category,
            eval_limit, threshold_data, threshold_category, max_drop, accuracy_aware, keep_failed, overwrite, false_alarm_rate,
            threshold_rule, threshold_margin, map_drops):
    from ..export.pipeline import ExportOptions, export_bundle

    opts = ExportOptions(
        checkpoint=checkpoint, target=target, out_dir=out_dir, precision=precision, input_size=input_size,
        calibration=calibration, calibration_count=calibration_count, eval_data=eval_data, eval_category=eval_category,
        eval_limit=eval_limit, threshold_data=threshold_data, threshold_category=threshold_category, max_drop=max_drop,
        accuracy_aware=accuracy_aware, keep_failed=keep_failed, overwrite=overwrite, false_alarm_rate=false_alarm_rate,
        threshold_rule=threshold_rule, threshold_margin=threshold_margin, max_pixel_auroc_drop=map_drops[0],
        max_pixel_ap_drop=map_drops[1], max_aupro_drop=map_drops[2],
    )
    return export_bundle(opts, log=lambda msg: console.print(msg))


def _refit(bundle: Path, review_dir: Path) -> None:
    from ..runtime.refit import refit_thresholds

    # Ctrl-C while the frames are scored: one line, exit code 130, the bundle as it was
    with interrupt_guard(f"interrupted; bundle unchanged: {bundle}"):
        result = refit_thresholds(bundle, review_dir, log=lambda msg: console.print(msg))
    print_refit(result)


def _change(old: float | None, new: float | None) -> str:
    """``0.754 -> 0.761``, with as many digits as it takes to see a change (up to 6), or ``0.754 (unchanged)``."""
    if old == new or old is None or new is None:
        return f"{score_text(new)} (unchanged)" if old == new else f"{score_text(old)} -> {score_text(new)}"
    digits = next((d for d in range(3, 7) if f"{old:#.{d}g}" != f"{new:#.{d}g}"), 6)
    return f"{old:#.{digits}g} -> {new:#.{digits}g}"


def print_refit(result) -> None:
    """What a refit did: the old and new thresholds, the reviewed frames whose decision changed, the
    recall on the confirmed defects, the notes, and where the previous metadata went."""
    old, new = result.old, result.new
    out.print(f"refit {result.bundle} from {len(result.good)} good + {len(result.defects)} defect reviewed frames "
              f"(beside {result.recorded_normals} normals recorded at export)")
    out.print(f"image threshold {_change(old.get('image'), new.get('image'))}, pixel threshold {_change(old.get('pixel'), new.get('pixel'))}")
    for line in threshold_lines(new):
        out.print(line)
    changed = result.changed
    if changed:
        table = Table(title=f"{len(changed)} reviewed frame(s) change decision")
        for col in ("frame", "reviewed as", "score", "before", "after"):
            table.add_column(col)
        for f in changed:
            table.add_row(f.path.name, f.verdict, score_text(f.score), str(f.old), str(f.new))
        out.print(table)
    else:
        out.print("no reviewed frame changes decision")
    still = [f for f in result.good if f.new == "NG"]
    if still:
        out.print(f"[yellow]{len(still)} good frame(s) still NG after the refit (the bundle's target false-alarm rate allows "
                  f"some good parts above the threshold): {', '.join(f.path.name for f in still[:5])}[/]")
    recall_old, recall_new = result.recall("old"), result.recall("new")
    if recall_new is None:
        out.print("recall on confirmed defects: - (no frames in defect/)")
    else:
        n = len(result.defects)
        out.print(f"recall on the {n} confirmed defects: {100 * recall_old:.1f} % -> {100 * recall_new:.1f} % "
                  f"({round(recall_new * n)}/{n} NG after the refit)")
        if recall_new < recall_old:
            lost = round((recall_old - recall_new) * n)
            out.print(f"[yellow]warning: the refit lets {lost} confirmed defect(s) through that were NG before: the reviewed good "
                      f"frames score as high as defects; fine-tuning (dae train --init ... --add-normals REVIEW_DIR/good) teaches "
                      f"the model the new normals instead; to undo, put {result.backup.name} back as metadata.json[/]")
    for note in result.notes:
        out.print(f"note: {note}")
    console.print(f"bundle: {result.bundle} (metadata.json rewritten with a new integrity record; model files unchanged; "
                  f"previous metadata: {result.backup.name})")


def _build_engine(bundle: Path) -> None:
    from ..runtime.bundle import build_tensorrt_engine

    engine = build_tensorrt_engine(bundle, log=lambda m: console.print(m))
    console.print(f"engine: {engine}")


def threshold_lines(thr: dict) -> list[str]:
    """What the OK/NG threshold is expected to do, and one warning line (in yellow) when the normal
    and anomalous scores it was chosen on overlap (:func:`~diffusionad_edge.runtime.thresholds.expected_lines`)."""
    from ..runtime.thresholds import expected_lines

    return [f"[yellow]{line}[/]" if line.startswith("warning:") else line for line in expected_lines(thr)]


def print_report(meta: dict) -> None:
    """The short export report: parity, thresholds, accuracy deltas."""
    c = meta["checks"]
    table = Table(title=f"export check: {meta['target']['name']} {meta['precision']} (runs as {c.get('runtime_precision')})")
    table.add_column("check")
    table.add_column("map max |err|", justify="right")
    table.add_column("score max |err|", justify="right")
    table.add_column("decisions agree", justify="right")
    for key, label in (("fp32_onnx_vs_pytorch", "FP32 ONNX vs PyTorch"), ("artifact_vs_pytorch", f"{meta['precision']} artifact vs PyTorch")):
        r = c[key]
        table.add_row(label, fmt(r["map_max_abs_error"], "auto"), fmt(r["score_max_abs_error"], "auto"),
                      f"{100 * r.get('decision_agreement', float('nan')):.1f} %")
    out.print(table)
    thr = meta["thresholds"]
    out.print(f"thresholds (from {thr['source']}): image {score_text(thr['image'])}, pixel {score_text(thr['pixel'])}")
    for line in threshold_lines(thr):
        out.print(line)
    pix = thr.get("pixel_rule") or {}
    if pix.get("name") == "normals":
        recall = pix.get("defect_pixel_recall")
        out.print(f"pixel threshold {score_text(thr['pixel'])}: the highest pixel of {pix['normals']} normal maps, "
                  f"{score_text(pix['normal_max'])}, + a margin of {pix['margin_logit']:.2f} in logit space"
                  + ("" if recall is None else f"; outlines {100 * recall:.1f} % of the anomalies' defect pixels"))
    acc = c.get("accuracy")
    if acc:
        t = Table(title=f"accuracy on {acc['dataset']}")
        t.add_column("metric")
        t.add_column("FP32 reference (ONNX)", justify="right")
        t.add_column(f"this bundle ({meta['precision'].upper()})", justify="right")
        t.add_column("delta", justify="right")
        limits = acc.get("max_drops") or {}
        if meta["precision"] != "fp32" and limits:
            t.add_column("largest drop allowed", justify="right")
        for k in acc["fp32"]:
            row = [METRIC_LABELS.get(k, k), fmt(acc["fp32"][k], "auto"), fmt(acc["artifact"][k], "auto"), fmt(acc["delta"][k], "auto")]
            if meta["precision"] != "fp32" and limits:
                row.append(fmt(limits.get(k), "g", missing="-"))
            t.add_row(*row)
        out.print(t)
        if meta["precision"] != "fp32" and max(acc["delta"].get("pixel_auroc", 0.0), acc["delta"].get("pixel_ap", 0.0)) > 0.02:
            out.print(f"note: {meta['precision'].upper()} raised a pixel metric. A weak model's map is nearly flat; quantization "
                      "noise reorders those near-tied pixels and can rank defect pixels higher by chance. It is not a better "
                      "model: judge it by image AUROC and on real defects.")
    out.print("checks: " + ("[green]passed" if c["passed"] else "[red]FAILED: " + "; ".join(c["failures"])))
