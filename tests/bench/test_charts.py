"""bench charts, rendered from a small bench result and checked structurally: readable ticks on both
axes, no two pieces of text on top of each other, ranges fitted to the data, one chart per question."""

import itertools

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from diffusionad_edge.bench.report import accuracy_figure, draw_charts, latency_figure  # noqa: E402


def _row(name, pre, infer, post, auroc=None, batch=1, mode="latency", speedup=None):
    lat = {st: {"p50": v, "p90": v * 1.1, "p99": v * 1.2, "mean": v} for st, v in
           (("preprocess", pre), ("inference", infer), ("postprocess", post), ("total", pre + infer + post))}
    acc = None if auroc is None else {"image_auroc": auroc, "pixel_auroc": 0.9, "pixel_ap": 0.3, "aupro": 0.5}
    return {"name": name, "batch": batch, "latency_ms": lat, "accuracy": acc, "mode": mode, "speedup_vs_pytorch_fp32": speedup,
            "speedup_vs": {}}


# Close latencies and close AUROCs: the case where labels next to points used to pile up.
RESULT = {"rows": [
    _row("openvino-cpu int8", 2.1, 11.8, 0.9, 0.913, speedup=3.9),
    _row("openvino-cpu fp32", 2.0, 12.6, 0.9, 0.917, speedup=3.6),
    _row("onnxruntime-cpu int8", 2.2, 13.1, 1.0, 0.909, speedup=3.5),
    _row("onnxruntime-cpu fp32", 2.1, 19.0, 1.0, 0.917, speedup=2.4),
    _row("pytorch eager one-step (b1)", 2.1, 45.0, 1.0, 0.917, speedup=1.0),
    _row("pytorch eager one-step (b4)", 8.0, 150.0, 4.0, None, batch=4, speedup=1.2),
    _row("pytorch DDIM 30 steps from t=400 (b1)", 2.0, 1400.0, 1.0, 0.85),
]}


def _texts(fig):
    import matplotlib.text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(matplotlib.text.Text)
            if t.get_visible() and t.get_text().strip()]


def _assert_no_overlap(fig):
    boxes = _texts(fig)
    for (a, ba), (b, bb) in itertools.combinations(boxes, 2):
        assert not ba.overlaps(bb), f"{a!r} overlaps {b!r}"


def _tick_labels(axis):
    return [t.get_text() for t in axis.get_ticklabels() if t.get_visible() and t.get_text().strip()]


def test_latency_chart_has_bars_by_stage_full_names_and_no_overlapping_text():
    fig = latency_figure(RESULT)
    (ax,) = fig.axes
    _assert_no_overlap(fig)
    names = [t.replace("\n", " ") for t in _tick_labels(ax.yaxis)]
    assert names == [r["name"] for r in RESULT["rows"]][::-1] or sorted(names) == sorted(r["name"] for r in RESULT["rows"])
    assert len(_tick_labels(ax.xaxis)) >= 3
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"preprocess (median)", "inference (median)", "postprocess (median)"}
    texts = [t for t, _ in _texts(fig)]
    assert any("3.90x PyTorch FP32" in t for t in texts)
    assert any("off scale: 1403 ms" in t for t in texts)  # the DDIM row does not squash the others
    assert ax.get_xlim()[1] < 400


def test_accuracy_chart_fits_the_data_and_names_rows_in_a_legend():
    fig = accuracy_figure(RESULT)
    (ax,) = fig.axes
    _assert_no_overlap(fig)
    assert len(_tick_labels(ax.xaxis)) >= 3 and len(_tick_labels(ax.yaxis)) >= 3
    lo, hi = ax.get_ylim()
    aurocs = [r["accuracy"]["image_auroc"] for r in RESULT["rows"] if r["accuracy"]]
    assert lo <= min(aurocs) and hi >= max(aurocs) and hi - lo < 0.3  # fitted, not 0-1
    legend = [t.get_text().replace("\n", " ") for t in ax.get_legend().get_texts()]
    assert legend == [r["name"] for r in RESULT["rows"] if r["accuracy"]]


def test_no_accuracy_chart_without_accuracy(tmp_path):
    speed_only = {"rows": [dict(r, accuracy=None) for r in RESULT["rows"]]}
    assert accuracy_figure(speed_only) is None
    paths = draw_charts(speed_only, tmp_path)
    assert set(paths) == {"chart"} and paths["chart"].stat().st_size > 1000
    paths = draw_charts(RESULT, tmp_path)
    assert set(paths) == {"chart", "accuracy_chart"}
    import matplotlib.image

    img = matplotlib.image.imread(paths["accuracy_chart"])
    assert img.shape[0] > 300 and np.std(img) > 0


def test_learning_curve_summary_has_per_type_rows_and_the_papers_row(tiny_checkpoint, tmp_path):
    import json
    import shutil

    from diffusionad_edge.bench.learning_curve import main as summarise

    for b in (10, 20):
        shutil.copy(tiny_checkpoint, tmp_path / f"edge.b{b}.pt")
        per_type = {"crack": {"image_auroc": 0.9, "pixel_auroc": 0.8, "pixel_ap": 0.3, "aupro": 0.7},
                    "hole": {"image_auroc": 0.5, "pixel_auroc": 0.6, "pixel_ap": 0.1, "aupro": 0.4}}
        (tmp_path / f"edge.b{b}.eval.json").write_text(json.dumps({"overall": per_type["crack"], "per_type": per_type}))
    summarise([str(tmp_path), "--recipes", "edge", "--budgets", "10 20", "--dataset", "toothbrush"])
    md = (tmp_path / "learning_curve.md").read_text()
    assert "| edge | 20 | hole | 0.500 | 0.600 | 0.100 | 0.400 |" in md
    assert "| paper (DiffusionAD, GPU, full training) | - | - | 1.000 | 0.988 | 0.611 | 0.937 |" in md
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
