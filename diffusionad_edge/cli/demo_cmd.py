"""``dae demo``: the whole chain on the built-in dataset, with nothing but the install.

Generates the synthetic dataset, trains a small model on the CPU for a few minutes, evaluates it,
exports it to ONNX Runtime and OpenVINO (FP32 and INT8), benchmarks the bundles against PyTorch and
the iterative samplers, runs `dae run` on a generated video, and writes a Markdown report (with
the chart and NG overlays) whose path it prints.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import typer

from .. import __version__
from ..config import RECOMMENDED_TRAINING, TrainConfig, preset as get_preset
from ..data.builtin import generate_dataset
from ..data.mvtec import MVTecCategory
from ..train.atomic import atomic_write
from .common import console, progress_bar
from .eval_cmd import METRIC_NAMES, _fmt, _nan_to_none, _print_table

# A recipe for a few CPU minutes, not the paper's 3000 epochs: 64-px random patches (16x cheaper
# steps than whole 256-px images; the nets are fully convolutional and evaluate on whole images)
# and higher learning rates (the paper's 1e-5 barely moves the segmentation net in 200 steps).
QUICK_RECIPE = dict(batch_size=16, crop_size=64, lr_denoiser=5e-4, lr_segmenter=1e-3)
#: A fixed step count, not a time budget, so the demo trains the same model on a loaded machine as on
#: an idle one (about 4 minutes for `edge` on the 2-core reference machine).
DEMO_STEPS = 200
FAST_STEPS = 60
#: Below this held-out synthetic-anomaly AUROC the report opens with an under-training warning.
UNDERTRAINED_AUROC = 0.9


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Folder for the dataset, checkpoint and report."),
    steps: int = typer.Option(DEMO_STEPS, min=1, help=f"Training steps (fixed, so the result does not depend on machine load; {DEMO_STEPS} take about 4 minutes for `edge` on 2 cores). --fast: {FAST_STEPS}."),
    preset: str = typer.Option("edge", help="Model preset to train."),
    fast: bool = typer.Option(False, "--fast", help="A much smaller setting (tiny preset, small data, seconds) for tests and smoke runs."),
    seed: int = typer.Option(0, help="Seed for data, weights and noise."),
) -> None:
    """Generate data, train, evaluate, export (ONNX Runtime, OpenVINO; FP32, INT8), benchmark, run on a
    video, and write a report: the product end to end on the CPU."""
    import torch

    from ..bench.benchmark import BenchConfig, add_relative_numbers, bench_bundle, bench_pytorch
    from ..bench.machine import describe_machine
    from ..bench.report import to_markdown, write_outputs
    from ..bench.throughput import openvino_throughput
    from ..evaluate.evaluator import evaluate, torch_predict_fn
    from ..export.pipeline import ExportOptions, export_bundle
    from ..runtime.live import RunOptions, run_stream
    from ..runtime.predictor import open_predictor
    from ..train.trainer import Trainer
    from .export_cmd import print_report

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if fast:
        preset, steps = "tiny", min(steps, FAST_STEPS)
    model_config = get_preset(preset)
    size = model_config.image_size

    console.rule("1/6 data")
    n = dict(n_train=24, n_test_good=6, n_test_per_defect=4) if fast else dict(n_train=120, n_test_good=20, n_test_per_defect=12)
    data_root = out / "data"
    generate_dataset(data_root, category="surface", size=max(size, 64) if fast else 256, seed=seed, **n)
    dataset = MVTecCategory(data_root, "surface")
    console.print(f"built-in dataset: {len(dataset.train_images)} normal training images, {len(dataset.test_samples)} test images in {dataset.path}")

    console.rule(f"2/6 train ({preset}, {steps} steps)")
    recipe = dict(RECOMMENDED_TRAINING.get(preset, QUICK_RECIPE))
    if recipe.get("crop_size"):
        recipe["crop_size"] = min(recipe["crop_size"], size)
    recipe["warmup_steps"] = min(recipe.get("warmup_steps", 0), steps // 4)
    cfg = TrainConfig(steps=steps, seed=seed, checkpoint_every=0, **recipe).validate()
    ckpt = out / f"{preset}.pt"
    trainer = Trainer(model_config, cfg, dataset, ckpt, device="auto", overwrite=True)
    t_train = time.perf_counter()
    with progress_bar("train", steps) as bar:
        task = bar.task_ids[0]

        def report(step: int, total: int, losses: dict[str, float], elapsed: float) -> None:
            bar.update(task, completed=step, info=f"loss {losses['total']:.4f}")

        result = trainer.fit(report)
    minutes = (time.perf_counter() - t_train) / 60
    held_out = result.validation.get("synthetic_image_auroc")
    undertrained = held_out is not None and held_out < UNDERTRAINED_AUROC
    console.print(f"trained {result.step} steps in {minutes:.1f} min ({trainer.precision}); checkpoint {ckpt}")
    if undertrained:
        console.print(f"[bold red]under-trained:[/] held-out synthetic-anomaly AUROC {held_out:.3f} < {UNDERTRAINED_AUROC}")

    console.rule("3/6 evaluate")
    predict = torch_predict_fn(trainer.model, "one-step", trainer.device)
    with progress_bar("eval", len(dataset.test_samples), extra=False) as bar:
        ev = evaluate(dataset, predict, size, progress=lambda d, t: bar.update(bar.task_ids[0], completed=d))
    _print_table(ev.to_dict(), f"built-in surface: {preset} after {result.step} steps")
    atomic_write(out / "eval.json", lambda tmp: Path(tmp).write_text(json.dumps(_nan_to_none(ev.to_dict()), indent=2)))

    console.rule("4/6 export (ONNX Runtime and OpenVINO, FP32 and INT8)")
    bundles = []
    references: dict = {}  # the FP32 references are the same for all four exports: computed once
    for target, precision in (("onnxruntime-cpu", "fp32"), ("onnxruntime-cpu", "int8"), ("openvino-cpu", "fp32"), ("openvino-cpu", "int8")):
        console.print(f"export {target} {precision} ...")
        res = export_bundle(ExportOptions(
            checkpoint=ckpt, target=target, precision=precision, out_dir=out / "exports" / f"{target}-{precision}",
            input_size=size, calibration_count=8 if fast else 32, eval_data=dataset.path, keep_failed=True, overwrite=True,
        ), log=lambda m: None, reference_cache=references)
        print_report(res.metadata)
        bundles.append(res)

    console.rule("5/6 benchmark")
    bcfg = BenchConfig(warmup=2, iterations=5 if fast else 10, iterative_iterations=1, eval_data=dataset.path,
                       iterative_eval_limit=4 if fast else 0, iterative_start=20 if fast else None,
                       accuracy_from_export=True)
    rows = [bench_bundle(b.bundle, bcfg) for b in bundles]  # each bundle carries its GFLOP
    for b, latency_row in zip(bundles, list(rows)):  # OpenVINO measured as benchmark_app does, too
        if (row := openvino_throughput(b.bundle, bcfg)) is not None:
            row.accuracy = latency_row.accuracy
            rows.append(row)
    rows += bench_pytorch(ckpt, bcfg, [1], iterative=True)
    add_relative_numbers(rows)
    bench_result = {"machine": describe_machine(), "rows": [r.to_dict() for r in rows]}
    bench_paths = write_outputs(bench_result, out / "bench")
    console.print(to_markdown(bench_result))

    console.rule("6/6 dae run on a generated video")
    video, defective = _make_video(dataset, out / "line.mkv")
    run_bundle = bundles[1].bundle  # ONNX Runtime INT8
    with open_predictor(run_bundle) as predictor:
        summary = run_stream(predictor, str(video), RunOptions(save_video=out / "run_overlay.mp4", save_frames=out / "ng_frames",
                                                              events=out / "events.jsonl"))
    run_s = summary.to_dict()
    # The video's frames are test images with known labels: say how the decisions compare.
    decisions = [json.loads(line)["decision"] == "NG" for line in (out / "events.jsonl").read_text().splitlines()]
    caught = sum(d and t for d, t in zip(decisions, defective))
    false_ng = sum(d and not t for d, t in zip(decisions, defective))
    verdict = (f"{caught} of {sum(defective)} defective frames NG, {false_ng} of {len(defective) - sum(defective)} good frames NG "
               f"(image threshold {bundles[1].metadata['thresholds']['image']:.4f}, from {bundles[1].metadata['thresholds']['source']})")
    console.print(f"{run_s['frames']} frames, {run_s['ng']} NG, end-to-end {run_s['end_to_end_fps']:.1f} FPS, model {run_s['model_fps']:.1f} FPS")
    console.print(verdict)
    ng_frames = sorted((out / "ng_frames").glob("*.png"))[:3]

    report_path = out / "report.md"
    lines = [
        "# diffusionad_edge demo report",
        "",
        *([f"> **Under-trained model:** after {result.step} steps the held-out check (normal images vs synthetic "
           f"anomalies made from them) reaches only image AUROC {held_out:.3f} (< {UNDERTRAINED_AUROC}); the numbers "
           "below show the chain works, not a usable detector. Train longer (`--steps`).", ""] if undertrained else []),
        f"- toolkit {__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, device {trainer.device}",
        f"- preset `{preset}` ({size}x{size}), trained {result.step} steps (fixed) in {minutes:.1f} min ({trainer.precision}), seed {seed}, recipe {recipe}",
        f"- dataset: built-in synthetic `surface` ({len(dataset.train_images)} train, {len(dataset.test_samples)} test)",
        f"- checkpoint: `{ckpt}`",
        "",
        "| defect type | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---|" * len(METRIC_NAMES),
    ]
    for defect, m in ev.per_type.items():
        lines.append(f"| {defect} | " + " | ".join(_fmt(m[k]) for k in METRIC_NAMES) + " |")
    lines.append("| **overall** | " + " | ".join(_fmt(ev.overall[k]) for k in METRIC_NAMES) + " |")
    lines += ["", "## Exports", "", "| bundle | passed | map max err vs PyTorch | image AUROC delta vs FP32 |", "|---|---|---|---|"]
    for b in bundles:
        c = b.metadata["checks"]
        d = (c.get("accuracy") or {}).get("delta", {}).get("image_auroc")
        lines.append(f"| `{b.bundle.relative_to(out)}` | {c['passed']} | {c['artifact_vs_pytorch']['map_max_abs_error']:.2e} | {_fmt(d)} |")
    lines += ["", "## Benchmark", "", to_markdown(bench_result).split("\n", 2)[2], f"![latency vs accuracy]({bench_paths['chart'].relative_to(out)})"]
    lines += ["", "## dae run", "", f"{run_s['frames']} frames of `{video.name}`, {run_s['ng']} NG, end-to-end {run_s['end_to_end_fps']:.1f} FPS "
              f"(model only {run_s['model_fps']:.1f} FPS); overlay video `run_overlay.mp4`, events `events.jsonl`.", "",
              f"Against the frames' labels: {verdict}.", ""]
    lines += [f"![NG frame]({p.relative_to(out)})" for p in ng_frames]
    lines += ["", f"Total demo time {time.perf_counter() - t_start:.0f} s."]
    atomic_write(report_path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    console.print(f"report: {report_path}")
    print(report_path)


def _make_video(dataset: MVTecCategory, path: Path, fps: float = 5.0) -> tuple[Path, list[bool]]:
    """A short 'production line' video: the test images in a seeded order (good and defective),
    and which frames are defective. Lossless (FFV1), as an industrial camera delivers raw frames:
    a lossy codec's block artefacts are themselves a kind of anomaly and raise the scores of good parts."""
    import cv2
    import numpy as np

    samples = list(dataset.test_samples)
    order = np.random.default_rng(0).permutation(len(samples))[:30]
    first = cv2.imread(str(samples[order[0]].image_path))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path} with the FFV1 codec")
    for i in order:
        writer.write(cv2.resize(cv2.imread(str(samples[i].image_path)), (w, h)))
    writer.release()
    return path, [bool(samples[i].is_anomalous) for i in order]
