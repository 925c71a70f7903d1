"""``dae bench``: latency, FPS and accuracy of bundles and of the PyTorch model, side by side.

Each row: warm-up, then ``iterations`` timed runs (or until ``seconds`` pass) of the full path a
deployment runs, through the bundle's own methods — ``Bundle.preprocess`` (a raw camera-sized uint8
frame to the input tensor), ``Bundle.infer``, ``Bundle.postprocess`` (thresholds, defect mask, map
resized back to the frame) — with p50/p90/p99 per stage. A checkpoint's rows run the same way, its
model wrapped as a bundle with a :class:`~..runtime.backends.torch.TorchRunner`.
Reference rows: PyTorch eager FP32 (one-step), and the paper's iterative paradigms on the same
network (DDPM from t_b, DDIM), whose speed-up is computed from the measured times.

A bundle with a ROI or tiles runs its frame path (``Bundle.prepare_frame`` -> ``infer`` ->
``Bundle.finish_frame``): its rows are per frame, and a tiled row's note gives the tiles per frame
and the inference time per tile. Synthetic frames are made large enough for the bundle's ROI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.backends.runner import Runner, describe_runtime_precision
from ..runtime.backends.torch import TorchRunner
from ..runtime.bundle import Bundle, checkpoint_bundle, load_bundle
from .machine import peak_rss_mib, reset_peak_rss


@dataclass
class BenchConfig:
    warmup: int = 3
    iterations: int = 30
    seconds: float | None = None
    iterative_iterations: int = 2
    frame_hw: tuple[int, int] = (480, 640)
    eval_data: Path | None = None
    eval_category: str | None = None
    eval_limit: int | None = None
    iterative_eval_limit: int = 12
    # Where the iterative reference samplers start (default: the model's t_b, as in the paper).
    iterative_start: int | None = None
    # Take a bundle's accuracy from its export report when that was measured on the same data and
    # limit (the same artifact on the same images gives the same numbers); else measure it.
    accuracy_from_export: bool = False
    # > 1: the latency rows (bundles, PyTorch one-step) are timed in turns, this many rounds of
    # iterations / rounds each, so that a change in machine load falls on every row alike.
    rounds: int = 1


@dataclass
class Row:
    name: str
    backend: str
    precision: str
    runtime_precision: str
    batch: int
    gflop_per_image: float | None
    size_mib: float | None
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    fps: float = 0.0
    gflops_achieved: float | None = None
    peak_rss_mib: float | None = None
    iterations: int = 0
    accuracy: dict[str, float] | None = None
    accuracy_delta_vs_fp32: dict[str, float] | None = None
    speedup_vs: dict[str, float] = field(default_factory=dict)
    #: model-only time per image of PyTorch eager FP32 one-step (batch 1) over this row's
    speedup_vs_pytorch_fp32: float | None = None
    note: str = ""
    # "latency": one request at a time, frame to decision; "throughput": many requests in flight.
    mode: str = "latency"
    #: interleaved rows: seconds from the first timed run of the bench to this row's first and last
    #: timed run (the rows' windows overlap: they ran in turns)
    window_s: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _pcts(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def bench_frame_hw(bundle: Bundle, frame_hw: tuple[int, int]) -> tuple[int, int]:
    """The synthetic frame size for a bundle: ``frame_hw``, enlarged to hold the bundle's ROI."""
    roi = bundle.preprocessing.roi
    if roi is None:
        return frame_hw
    return max(frame_hw[0], roi.y + roi.h), max(frame_hw[1], roi.x + roi.w)


def tiling_note(bundle: Bundle, frame_hw: tuple[int, int], lat: dict[str, dict[str, float]]) -> str:
    """For a tiled bundle: tiles per frame and inference time per tile; "" otherwise."""
    prep = bundle.preprocessing
    if prep.tile is None:
        return ""
    frame = np.zeros((*bench_frame_hw(bundle, frame_hw), 3), np.uint8)
    n = bundle.prepare_frame(frame).layout.count
    return (f"tiled: {n} tiles of {prep.tile}x{prep.tile} per {frame.shape[1]}x{frame.shape[0]} frame, "
            f"inference {lat['inference']['mean'] / n:.2f} ms per tile; latencies are per frame")


class PipelineTimer:
    """Times a bundle's whole frame path (preprocess -> infer -> postprocess, or the framed path of a
    ROI / tiled bundle) on synthetic camera frames, some iterations at a time: :func:`time_pipeline`
    runs it once, :func:`bench_interleaved` in turns with other rows."""

    def __init__(self, bundle: Bundle, batch: int, frame_hw: tuple[int, int] = (480, 640)):
        rng = np.random.default_rng(0)
        self.bundle, self.frame_hw = bundle, bench_frame_hw(bundle, frame_hw)
        h, w = self.frame_hw
        self.frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(batch)]
        self.stages: dict[str, list[float]] = {"preprocess": [], "inference": [], "postprocess": [], "total": []}
        #: when each timed run started (``time.perf_counter``): which rows ran when, in an interleaved bench
        self.started: list[float] = []

    @property
    def count(self) -> int:
        """Timed iterations so far."""
        return len(self.stages["total"])

    def run(self, iterations: int, seconds: float | None = None, record: bool = True) -> None:
        """``iterations`` more runs (fewer once ``seconds`` of timed runs have passed in this call);
        ``record=False``: warm-up, not kept."""
        bundle, frames, framed = self.bundle, self.frames, not self.bundle.preprocessing.is_plain
        spent = 0.0
        for _ in range(iterations):
            t0 = time.perf_counter()
            if framed:  # ROI / tiles: each frame's own batch (all its tiles), its map placed back at frame size
                prepared = [bundle.prepare_frame(f, bgr=True) for f in frames]
                t1 = time.perf_counter()
                outputs = [bundle.infer(p.batch) for p in prepared]
                t2 = time.perf_counter()
                for o, p in zip(outputs, prepared):
                    bundle.finish_frame(o, p)
            else:
                x = np.stack([bundle.preprocess(f, bgr=True) for f in frames])
                t1 = time.perf_counter()
                output = bundle.infer(x)
                t2 = time.perf_counter()
                bundle.postprocess(output, self.frame_hw)  # decisions, mask and heat map at frame size
            t3 = time.perf_counter()
            if record:
                self.started.append(t0)
                for k, v in zip(self.stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    self.stages[k].append(v * 1000)
                spent += t3 - t0
                if seconds is not None and spent > seconds:
                    break

    def latencies(self) -> dict[str, dict[str, float]]:
        """p50/p90/p99/mean per stage (ms) of the timed runs."""
        return {k: _pcts(v) for k, v in self.stages.items()}


def time_pipeline(bundle: Bundle, batch: int, warmup: int, iterations: int, seconds: float | None = None,
                  frame_hw: tuple[int, int] = (480, 640)) -> tuple[dict[str, dict[str, float]], int]:
    """Per-stage latencies (ms) of the bundle's preprocess -> infer -> postprocess on synthetic camera frames."""
    timer = PipelineTimer(bundle, batch, frame_hw)
    timer.run(warmup, record=False)
    timer.run(iterations, seconds)
    return timer.latencies(), timer.count


def _accuracy(runner: Runner, size: Any, cfg: BenchConfig, limit: int | None) -> dict[str, float] | None:
    if cfg.eval_data is None:
        return None
    from ..data.mvtec import MVTecCategory
    from ..evaluate.evaluator import evaluate

    ds = MVTecCategory(cfg.eval_data, cfg.eval_category)
    return evaluate(ds, runner, size, batch_size=8, limit=limit).overall


def _finish(row: Row, lat: dict, n: int) -> Row:
    row.latency_ms, row.iterations = lat, n
    row.fps = 1000.0 * row.batch / lat["total"]["mean"]
    if row.gflop_per_image is not None:
        row.gflops_achieved = row.gflop_per_image * row.batch / (lat["inference"]["mean"] / 1000)
    row.peak_rss_mib = peak_rss_mib()
    return row


def bundle_row(path: Path, meta: dict[str, Any], runtime: str | None, gflop: float | None, suffix: str = "") -> Row:
    """A bundle's row before timing: name, precision it really runs in, GFLOP per image (from its
    metadata, at its own input size; ``gflop`` is the fallback for older bundles) and size on disk."""
    precision = meta["precision"]
    gflop = (meta.get("complexity") or {}).get("gflop_per_image", gflop)
    files_mib = sum((path / f).stat().st_size for f in meta["files"]) / 2**20
    return Row(f"{meta['target']['name']} {precision}{suffix}", meta["backend"], precision,
               describe_runtime_precision(precision, runtime), int(meta["input"]["batch"]), gflop, files_mib)


def bench_bundle(path: Path, cfg: BenchConfig, gflop: float | None = None) -> Row:
    """Time one bundle (and measure its accuracy when ``cfg.eval_data`` is set). GFLOP per image come
    from the bundle's metadata (its own input size); ``gflop`` is the fallback for older bundles."""
    reset_peak_rss()
    with load_bundle(path) as bundle:
        meta = bundle.metadata
        bundle.runner.activate()
        lat, n = time_pipeline(bundle, int(meta["input"]["batch"]), cfg.warmup, cfg.iterations, cfg.seconds, cfg.frame_hw)
        row = _finish(bundle_row(path, meta, bundle.runner.runtime_precision, gflop), lat, n)
        row.note = tiling_note(bundle, cfg.frame_hw, lat)
        _bundle_accuracy(row, bundle, cfg)
    return row


def _bundle_accuracy(row: Row, bundle: Bundle, cfg: BenchConfig) -> None:
    """A bundle row's accuracy: from its export report when that measured the same data, else measured."""
    reported = _export_accuracy(bundle.metadata, cfg) if cfg.accuracy_from_export else None
    if reported is not None:
        row.accuracy, row.note = reported, "; ".join(filter(None, [row.note, "accuracy from the export check"]))
    else:
        row.accuracy = _accuracy(bundle.runner, bundle.preprocessing, cfg, cfg.eval_limit)


def _export_accuracy(meta: dict[str, Any], cfg: BenchConfig) -> dict[str, float] | None:
    """The bundle's accuracy as its export measured it, if on the data and limit asked for here."""
    acc = (meta.get("checks") or {}).get("accuracy")
    if not acc or cfg.eval_data is None or cfg.eval_category is not None:
        return None
    same_data = Path(acc["dataset"]).resolve() == Path(cfg.eval_data).resolve() and acc.get("limit") == cfg.eval_limit
    return dict(acc["artifact"]) if same_data else None


def _one_step_row(batch: int, gflop: float, size_mib: float) -> Row:
    """The row of PyTorch eager FP32 one-step at ``batch`` before timing (the reference of every speed-up)."""
    return Row(f"pytorch eager one-step (b{batch})", "pytorch", "fp32", "fp32", batch, gflop, size_mib)


def bench_pytorch(checkpoint: Path, cfg: BenchConfig, batches: list[int], iterative: bool, one_step: bool = True) -> list[Row]:
    """The PyTorch rows of ``checkpoint``: eager FP32 one-step per batch size in ``batches`` (unless
    ``one_step`` is False: :func:`bench_interleaved` times those), then with ``iterative`` the paper's
    iterative paradigms."""
    from ..data.framing import preprocessing_of
    from ..models.checkpoint_io import load_model
    from ..models.complexity import measure_complexity

    model, payload = load_model(checkpoint)
    size = preprocessing_of(model.config, payload)
    c = measure_complexity(model)
    size_mib = checkpoint.stat().st_size / 2**20
    rows = []
    for batch in batches if one_step else []:
        reset_peak_rss()
        bundle = checkpoint_bundle(model, payload, checkpoint, TorchRunner(model))
        lat, n = time_pipeline(bundle, batch, cfg.warmup, cfg.iterations, cfg.seconds, cfg.frame_hw)
        row = _finish(_one_step_row(batch, c.one_step_gflop, size_mib), lat, n)
        row.note = tiling_note(bundle, cfg.frame_hw, lat)
        if batch == batches[0]:
            row.accuracy = _accuracy(bundle.runner, size, cfg, cfg.eval_limit)
        rows.append(row)
    if iterative:
        t_b = cfg.iterative_start or model.config.diffusion.t_b
        ddim_steps = min(30, t_b + 1)
        for mode, calls, label in (("iterative", t_b + 1, f"DDPM from t={t_b}"), ("ddim", ddim_steps, f"DDIM {ddim_steps} steps")):
            reset_peak_rss()
            # One runner (one generator) for timing and accuracy, as before: the DDPM sampler's noise
            # continues from the timed runs.
            runner = TorchRunner(model, mode=mode, ddim_steps=ddim_steps, start_t=t_b)
            lat, n = time_pipeline(checkpoint_bundle(model, payload, checkpoint, runner), 1, 0, cfg.iterative_iterations,
                                   frame_hw=cfg.frame_hw)
            gflop = calls * c.denoiser_gflop_per_pass + c.segmenter_gflop
            row = _finish(Row(f"pytorch {label}", "pytorch", "fp32", "fp32", 1, gflop, size_mib), lat, n)
            it_limit = min(cfg.iterative_eval_limit, cfg.eval_limit or cfg.iterative_eval_limit)
            # 0 skips it: hundreds of network calls per image make iterative accuracy costly on a CPU.
            row.accuracy = _accuracy(runner, size, cfg, it_limit) if it_limit > 0 else None
            row.note = f"{calls} denoiser calls" + (f"; accuracy on {it_limit} images" if cfg.eval_data and it_limit > 0 else "")
            rows.append(row)
    return rows


def add_relative_numbers(rows: list[Row]) -> None:
    """Speed-up of every row over PyTorch eager FP32 one-step (its first batch size) and over the
    iterative rows, per image of model-only inference time, and accuracy deltas against PyTorch FP32,
    all from the measured values. Throughput rows (latency under load) get no speed-up."""
    iterative = [r for r in rows if "DDPM" in r.name or "DDIM" in r.name]
    fp32 = next((r for r in rows if r.backend == "pytorch" and "one-step" in r.name), None)
    for r in rows:
        if fp32 is not None and r.mode == "latency" and r.latency_ms.get("inference"):
            per_image = r.latency_ms["inference"]["mean"] / r.batch
            r.speedup_vs_pytorch_fp32 = fp32.latency_ms["inference"]["mean"] / fp32.batch / per_image
        for it in iterative:
            if it is not r and r.mode == "latency":  # per-request latency under load is no speed-up measure
                r.speedup_vs[it.name] = it.latency_ms["inference"]["mean"] / r.latency_ms["inference"]["mean"] * r.batch
        if fp32 is not None and r.accuracy and fp32.accuracy:
            r.accuracy_delta_vs_fp32 = {k: r.accuracy[k] - fp32.accuracy[k] for k in r.accuracy}


def bench_interleaved(bundles: list[Path], checkpoint: Path | None, cfg: BenchConfig, batches: list[int],
                      gflop: float | None = None) -> tuple[list[Row], list[Row]]:
    """The latency rows of ``bundles`` and of ``checkpoint``'s PyTorch eager one-step (each batch size)
    timed **in turns**: all are opened and warmed up, then ``cfg.rounds`` rounds each give every row
    ``ceil(iterations / rounds)`` timed runs (and ``seconds / rounds`` at most), the order rotating
    from round to round. On a machine whose load changes (another job starts, a CPU clocks down) the
    change then falls on every row alike, and the ratios between rows stay what one run measures;
    run one after another, the last rows could run under quite another load than the first.
    Accuracy is measured after all the timing. Returns (bundle rows, PyTorch rows), in the order
    given. Peak memory is the process's, of all the rows together: not given per row here."""
    from contextlib import ExitStack

    from ..data.framing import preprocessing_of
    from ..models.checkpoint_io import load_model
    from ..models.complexity import measure_complexity

    rounds = max(1, cfg.rounds)
    per_round = -(-cfg.iterations // rounds)
    seconds = cfg.seconds / rounds if cfg.seconds is not None else None
    note = f"interleaved: {rounds} rounds of {per_round}"
    with ExitStack() as stack:
        timed: list[tuple[Row, Bundle, PipelineTimer]] = []
        for path in bundles:
            bundle = stack.enter_context(load_bundle(path))
            bundle.runner.activate()
            meta = bundle.metadata
            timed.append((bundle_row(path, meta, bundle.runner.runtime_precision, gflop), bundle,
                          PipelineTimer(bundle, int(meta["input"]["batch"]), cfg.frame_hw)))
        n_bundles = len(timed)
        if checkpoint is not None:
            model, payload = load_model(checkpoint)
            c = measure_complexity(model)
            size_mib = checkpoint.stat().st_size / 2**20
            for batch in batches:
                bundle = checkpoint_bundle(model, payload, checkpoint, TorchRunner(model))
                timed.append((_one_step_row(batch, c.one_step_gflop, size_mib), bundle, PipelineTimer(bundle, batch, cfg.frame_hw)))
        for _, _, timer in timed:
            timer.run(cfg.warmup, record=False)
        for r in range(rounds):
            k = r % len(timed) if timed else 0
            for _, _, timer in timed[k:] + timed[:k]:
                timer.run(per_round, seconds)
        rows = []
        origin = min((t.started[0] for _, _, t in timed if t.started), default=0.0)
        for i, (row, bundle, timer) in enumerate(timed):
            lat = timer.latencies()
            row.window_s = [round(timer.started[0] - origin, 3), round(timer.started[-1] - origin, 3)] if timer.started else None
            _finish(row, lat, timer.count)
            row.peak_rss_mib = None
            row.note = "; ".join(filter(None, [tiling_note(bundle, cfg.frame_hw, lat), note]))
            if i < n_bundles:
                _bundle_accuracy(row, bundle, cfg)
            elif i == n_bundles:  # the first batch size, as bench_pytorch does
                row.accuracy = _accuracy(bundle.runner, preprocessing_of(model.config, payload), cfg, cfg.eval_limit)
            rows.append(row)
    return rows[:n_bundles], rows[n_bundles:]
