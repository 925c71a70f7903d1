"""``dae demo`` as one call: the whole chain on the built-in dataset, with nothing but the install.

:func:`run_demo` generates the synthetic dataset, trains a small model on the CPU for a few minutes,
evaluates it, exports it to ONNX Runtime and OpenVINO (FP32 and INT8), benchmarks the bundles
against PyTorch and the iterative samplers, runs the line loop (``dae run``) on a generated video,
and writes a Markdown report (with the chart and NG overlays) whose path it returns. What it says
on the way goes to a :class:`DemoReporter` (plain lines by default; ``dae demo`` passes one with rich
rules, bars and tables).

Nothing heavy is imported with this module (``dae --help`` imports it for the option defaults).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

from ..config import RECOMMENDED_TRAINING, TrainConfig, preset as get_preset
from ..data.builtin import generate_dataset
from ..data.mvtec import MVTecCategory
from ..files import write_json
from ..progress import no_bar

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


@dataclass
class DemoOptions:
    """What ``dae demo``'s options choose."""

    out: Path = Path("demo_out")  # the dataset, checkpoint, bundles, results and report
    steps: int = DEMO_STEPS  # training steps (a fixed count)
    preset: str = "edge"
    fast: bool = False  # the tiny preset, small data, at most FAST_STEPS steps: seconds, for tests and smoke runs
    seed: int = 0  # data, weights and noise
    overwrite: bool = False  # replace an earlier demo's folder (only one dae wrote)


class DemoReporter:
    """What :func:`run_demo` tells its caller on the way. These defaults print plain lines on stdout
    and draw no progress bars; override any of them."""

    def section(self, title: str) -> None:
        """A step of the demo begins (``1/6 data`` ... ``6/6 ...``)."""
        print(f"== {title} ==")

    def log(self, message: str) -> None:
        """A line of what happened (counts, times, the benchmark table as Markdown)."""
        print(message)

    def bars(self, label: str, total: int, with_info: bool = True):
        """The progress bars of training and evaluation (:class:`~diffusionad_edge.progress.Bars`)."""
        return no_bar(label, total, with_info)

    def evaluation(self, result: dict[str, Any], title: str) -> None:
        """The test metrics (``EvalResult.to_dict()``), overall and per defect type."""
        print(f"{title}: " + ", ".join(f"{k} {v:.3f}" for k, v in result["overall"].items()))

    def export_report(self, metadata: dict[str, Any]) -> None:
        """One bundle's export checks (its ``metadata.json``)."""
        checks = metadata["checks"]
        print(f"export checks {'passed' if checks['passed'] else 'FAILED: ' + '; '.join(checks['failures'])}")


def _no_guard(message: str) -> ContextManager[Any]:
    return contextlib.nullcontext()


def run_demo(opts: DemoOptions | None = None, reporter: DemoReporter | None = None,
             guard: Callable[[str], ContextManager[Any]] = _no_guard) -> Path:
    """Run the demo into ``opts.out`` (checked first: new, empty, or an earlier demo's folder with
    ``opts.overwrite``) and return the path of its report. ``reporter``: what is said on the way
    (default: plain lines). ``guard(message)``: a context around each export, e.g.
    :func:`~diffusionad_edge.interrupts.interrupt_guard` (``dae demo``'s: Ctrl-C in an export is one line
    within seconds, exit code 130, ``message`` saying what was kept); by default Ctrl-C is Python's
    ``KeyboardInterrupt``."""
    import torch

    from ..bench.benchmark import BenchConfig, add_relative_numbers, bench_bundle, bench_pytorch
    from ..bench.machine import describe_machine
    from ..bench.report import to_markdown, write_outputs
    from ..bench.throughput import openvino_throughput
    from ..evaluate.evaluator import evaluate
    from ..export.pipeline import ExportOptions, export_bundle
    from ..models.checkpoint_io import load_model
    from ..paths import check_results_dir, fresh_output_dir
    from ..runtime.backends.torch import TorchRunner
    from ..runtime.bundle import open_bundle
    from ..runtime.live import RunOptions, run_stream
    from ..train.trainer import Trainer
    from .line import make_line_video, score_decisions
    from .report import DemoFacts, training_note, write_demo_report

    opts = opts or DemoOptions()
    say = reporter or DemoReporter()
    out, preset, steps, seed, fast = Path(opts.out), opts.preset, opts.steps, opts.seed, opts.fast
    check_results_dir(out, "demo folder (--out)", opts.overwrite)  # before minutes of work
    t_start = time.perf_counter()
    fresh_output_dir(out, "dae demo")  # an earlier demo's files (with --overwrite) are not mixed with this one's
    if fast:
        preset, steps = "tiny", min(steps, FAST_STEPS)
    model_config = get_preset(preset)
    size = model_config.image_size

    say.section("1/6 data")
    n = dict(n_train=24, n_test_good=6, n_test_per_defect=4) if fast else dict(n_train=120, n_test_good=20, n_test_per_defect=12)
    data_root = out / "data"
    generate_dataset(data_root, category="surface", size=max(size, 64) if fast else 256, seed=seed, **n)
    dataset = MVTecCategory(data_root, "surface")
    say.log(f"built-in dataset: {len(dataset.train_images)} normal training images, {len(dataset.test_samples)} test images in {dataset.path}")

    say.section(f"2/6 train ({preset}, {steps} steps)")
    recipe = dict(RECOMMENDED_TRAINING.get(preset, QUICK_RECIPE))
    if recipe.get("crop_size"):
        recipe["crop_size"] = min(recipe["crop_size"], size)
    recipe["warmup_steps"] = min(recipe.get("warmup_steps", 0), steps // 4)
    cfg = TrainConfig(steps=steps, seed=seed, checkpoint_every=0, **recipe).validate()
    ckpt = out / f"{preset}.pt"
    trainer = Trainer(model_config, cfg, dataset, ckpt, device="auto", overwrite=True)
    t_train = time.perf_counter()
    with say.bars("train", steps) as update:

        def report(step: int, total: int, losses: dict[str, float], elapsed: float) -> None:
            update(step, f"loss {losses['total']:.4f}")

        result = trainer.fit(report)
    minutes = (time.perf_counter() - t_train) / 60
    held_out = result.validation.get("synthetic_image_auroc")
    say.log(f"trained {result.step} steps in {minutes:.1f} min ({trainer.precision}); checkpoint {ckpt}")

    say.section("3/6 evaluate")
    # The checkpoint's weights (the averaged ones when the recipe keeps an average): the model that
    # is exported and benchmarked below, not the trainer's raw weights.
    deployed, _ = load_model(ckpt)
    runner = TorchRunner(deployed, trainer.device)
    with say.bars("eval", len(dataset.test_samples), with_info=False) as update:
        ev = evaluate(dataset, runner, size, progress=lambda d, t: update(d))
    say.evaluation(ev.to_dict(), f"built-in surface: {preset} after {result.step} steps")
    # Said after the test metrics, weighed against them (the held-out check alone once called a model
    # with test image AUROC 1.000 under-trained).
    if note := training_note(held_out, ev.overall.get("image_auroc"), result.step, UNDERTRAINED_AUROC):
        say.log(note.replace("**", ""))
    write_json(out / "eval.json", ev.to_dict())

    say.section("4/6 export (ONNX Runtime and OpenVINO, FP32 and INT8)")
    bundles = []
    references: dict = {}  # the FP32 references are the same for all four exports: computed once
    kept = f"kept: the dataset, {ckpt} and {out / 'eval.json'}"
    for target, precision in (("onnxruntime-cpu", "fp32"), ("onnxruntime-cpu", "int8"), ("openvino-cpu", "fp32"), ("openvino-cpu", "int8")):
        say.log(f"export {target} {precision} ...")
        done = ", ".join(str(b.bundle) for b in bundles)
        # Ctrl-C in an export (minutes in native code): with dae's guard, one line within seconds, exit
        # 130, the bundle being written is not left half-done (as in `dae export`).
        with guard(f"interrupted during the exports; {kept}" + (f", finished bundles {done}" if done else "")):
            res = export_bundle(ExportOptions(
                checkpoint=ckpt, target=target, precision=precision, out_dir=out / "exports" / f"{target}-{precision}",
                input_size=size, calibration_count=8 if fast else 32, eval_data=dataset.path, keep_failed=True, overwrite=True,
            ), log=lambda m: None, reference_cache=references)
        say.export_report(res.metadata)
        bundles.append(res)

    say.section("5/6 benchmark")
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
    say.log(to_markdown(bench_result))

    say.section("6/6 dae run on a generated video")
    video, defective = make_line_video(dataset, out / "line.mkv")
    run_bundle = bundles[1].bundle  # ONNX Runtime INT8
    with open_bundle(run_bundle) as bundle:
        summary = run_stream(bundle, str(video), RunOptions(save_video=out / "run_overlay.mp4", save_frames=out / "ng_frames",
                                                           events=out / "events.jsonl"))
    run_s = summary.to_dict()
    # The video's frames are test images with known labels: say how the decisions compare.
    verdict = score_decisions(out / "events.jsonl", defective, bundles[1].metadata["thresholds"])
    say.log(f"{run_s['frames']} frames, {run_s['ng']} NG, end-to-end {run_s['end_to_end_fps']:.1f} FPS, model {run_s['model_fps']:.1f} FPS")
    say.log(str(verdict))

    return write_demo_report(DemoFacts(
        out=out, preset=preset, size=size, steps=result.step, minutes=minutes, seed=seed, recipe=recipe,
        device=str(trainer.device), precision=trainer.precision,
        held_out_auroc=held_out, undertrained_below=UNDERTRAINED_AUROC,
        torch_version=str(torch.__version__), dataset=dataset, checkpoint=ckpt, evaluation=ev, exports=bundles,
        bench_markdown=to_markdown(bench_result), bench_chart=bench_paths["chart"], run=run_s, video=video, verdict=verdict,
        seconds=time.perf_counter() - t_start))
