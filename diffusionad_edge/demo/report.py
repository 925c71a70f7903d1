"""The demo's Markdown report: what was done, the test metrics, the exports, the benchmark, the run
on the line video and its verdict, with the chart and NG overlays; and its opening note on how well
trained the model is."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..data.mvtec import MVTecCategory
from ..evaluate.metrics import METRIC_NAMES
from ..files import fmt, write_text
from ..runtime.thresholds import expected_lines
from .line import LineVerdict


def training_note(held_out_auroc: float | None, test_image_auroc: float | None, steps: int, below: float = 0.9) -> str | None:
    """The report's opening line about how well trained the model is, or None when nothing needs saying.
    It weighs the held-out check (held-out normals vs synthetic anomalies made from them) against the
    test split's real defects, so that it never contradicts the table of test metrics beneath it: a
    model whose held-out check is low but whose test defects are separated is not called under-trained."""
    if held_out_auroc is None or held_out_auroc >= below:
        return None
    test_ok = test_image_auroc is not None and test_image_auroc == test_image_auroc and test_image_auroc >= below
    if test_ok:
        return (f"**Held-out check below {below}:** after {steps} steps the synthetic anomalies made from held-out normal "
                f"images reach image AUROC {held_out_auroc:.3f}, while the test split's defects reach {test_image_auroc:.3f} "
                "(table below): the synthetic anomalies are harder than these defects. Judge the model by the test split.")
    test = "n/a" if test_image_auroc is None or test_image_auroc != test_image_auroc else f"{test_image_auroc:.3f}"
    return (f"**Under-trained model:** after {steps} steps the held-out check (normal images vs synthetic anomalies made "
            f"from them) reaches image AUROC {held_out_auroc:.3f} and the test split {test} (both < {below}); the numbers "
            "below show that the chain works, not a usable detector. Train longer (`--steps`).")


@dataclass
class DemoFacts:
    """What the demo did, for its report."""

    out: Path
    preset: str
    size: int
    steps: int
    minutes: float
    seed: int
    recipe: dict[str, Any]
    device: str
    torch_version: str
    dataset: MVTecCategory
    checkpoint: Path
    evaluation: Any  # EvalResult
    exports: list[Any]  # ExportResult
    bench_markdown: str
    bench_chart: Path
    run: dict[str, Any]  # RunSummary.to_dict()
    video: Path
    verdict: LineVerdict
    seconds: float
    precision: str = "fp32"
    held_out_auroc: float | None = None
    undertrained_below: float = 0.9


def demo_report(f: DemoFacts) -> str:
    """The Markdown report of a demo run."""
    ev, out = f.evaluation, f.out
    lines = [
        "# diffusionad_edge demo report",
        "",
        *([f"> {note}", ""] if (note := training_note(f.held_out_auroc, ev.overall.get("image_auroc"), f.steps,
                                                       f.undertrained_below)) else []),
        f"- toolkit {__version__}, torch {f.torch_version}, {platform.processor() or platform.machine()}, device {f.device}",
        f"- preset `{f.preset}` ({f.size}x{f.size}), trained {f.steps} steps (a fixed count) in {f.minutes:.1f} min "
        f"({f.precision}), seed {f.seed}, recipe {f.recipe}",
        f"- dataset: built-in synthetic `surface` ({len(f.dataset.train_images)} train, {len(f.dataset.test_samples)} test)",
        f"- checkpoint: `{f.checkpoint}`",
        "",
        "| defect type | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---|" * len(METRIC_NAMES),
    ]
    for defect, m in ev.per_type.items():
        lines.append(f"| {defect} | " + " | ".join(fmt(m[k]) for k in METRIC_NAMES) + " |")
    lines.append("| **overall** | " + " | ".join(fmt(ev.overall[k]) for k in METRIC_NAMES) + " |")
    lines += ["", "## Exports", "", "| bundle | passed | map max err vs PyTorch | image AUROC delta vs FP32 |", "|---|---|---|---|"]
    for b in f.exports:
        c = b.metadata["checks"]
        d = (c.get("accuracy") or {}).get("delta", {}).get("image_auroc")
        passed = "yes" if c["passed"] else "**no**: " + "; ".join(c.get("failures") or [])  # which metric, by how much
        lines.append(f"| `{b.bundle.relative_to(out)}` | {passed} | {c['artifact_vs_pytorch']['map_max_abs_error']:.2e} | {fmt(d)} |")
    lines += ["", "## Benchmark", "", f.bench_markdown.split("\n", 2)[2], f"![latency per image by stage]({f.bench_chart.relative_to(out)})"]
    acc_chart = f.bench_chart.parent / "bench_accuracy.png"
    if acc_chart.is_file():
        lines += ["", f"![accuracy against model-only latency]({acc_chart.relative_to(out)})"]
    r = f.run
    lines += ["", "## dae run", "", f"{r['frames']} frames of `{f.video.name}`, {r['ng']} NG, end-to-end {r['end_to_end_fps']:.1f} FPS "
              f"(model only {r['model_fps']:.1f} FPS); overlay video `run_overlay.mp4`, events `events.jsonl`.", "",
              f"Against the frames' labels: {f.verdict}.", ""]
    run_thresholds = f.exports[1].metadata.get("thresholds") if len(f.exports) > 1 else None
    lines += [f"> {line}" if line.startswith("warning:") else line for line in expected_lines(run_thresholds)] + [""]
    v = f.verdict
    for title, frames, why in (("Caught defects", v.caught, "Defective frames called NG"),
                               ("Missed defects", v.missed, "Defective frames called OK (no overlay is saved for an OK frame)"),
                               ("False alarms", v.false_alarms, "Good frames called NG")):
        lines += [f"### {title}: {len(frames)}", "", why + (f": frames {', '.join(map(str, frames))}." if frames else "."), ""]
        shots = [(i, out / "ng_frames" / f"ng_{i:06d}.png") for i in frames[:3]]
        shots = [(i, p) for i, p in shots if p.is_file()]
        lines += [f"![{title.lower()[:-1]}, frame {i}]({p.relative_to(out)})" for i, p in shots] + ([""] if shots else [])
    lines += ["", f"Total demo time {f.seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def write_demo_report(facts: DemoFacts) -> Path:
    path = facts.out / "report.md"
    write_text(path, demo_report(facts))
    return path
