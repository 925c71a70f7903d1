"""OK/NG decisions on real defects at the default thresholds (issue 24, item 1).

Given a checkpoint (or a bundle) and an MVTec-layout category, this places the default thresholds
exactly as ``dae export`` does: for a checkpoint, :func:`~diffusionad_edge.export.thresholds.held_out_thresholds`
on the checkpoint's held-out normals (up to 64; synthetic anomalies only as a check), with the
checkpoint's own PyTorch model as the runner (FP32 ONNX matches it within 1e-3); for a bundle, the
thresholds ``dae export`` wrote into it. It then scores the category's test split and reports:

* recall (defective test images called NG) and false alarms (``test/good`` images called NG) at the
  default image threshold;
* the best no-false-alarm recall: the recall of the lowest threshold that calls no ``test/good``
  image NG (just above the highest good test score), which no rule set without the test split
  can beat without a false alarm; the ratio of the two, against the target (at least 0.9, with at
  most 5 % false alarms);
* the same per defect type;
* at the default pixel threshold: the share of defect pixels outlined and of good-image pixels outlined;
* with ``--margins``: the recall and false alarms of the ``normals`` rule at other margins (``k`` in
  standard deviations of the held-out normal logits, or ``k:floor`` with another floor in logits) and
  of the ``best-f1`` rule, from the same scores (how the default margin was chosen).

Usage::

    python benchmarks/decisions.py runs/ctrl_toothbrush.pt --data ../shared/data/toothbrush \
        --margins 0,0.5,1,2,3 --out benchmarks/results/decisions_toothbrush

Writes ``decisions.json`` (every score, the thresholds, the tables' numbers) and ``decisions.md``
into ``--out`` and prints the Markdown. ``--from-json`` re-makes the tables from a ``decisions.json``
without scoring again (for another ``--margins``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _score_test_split(bundle, dataset, batch: int = 8) -> dict:
    """Scores of every test image (and, on the plain path, what the pixel threshold outlines)."""
    from diffusionad_edge.data.mvtec import load_test_sample

    samples = list(dataset.test_samples)
    scores: list[float] = []
    pix = {"defect_pixels": 0, "defect_outlined": 0, "good_pixels": 0, "good_outlined": 0}
    plain = bundle.preprocessing.is_plain
    pixel_thr = bundle.thresholds.pixel_or_default
    t0 = time.perf_counter()
    for start in range(0, len(samples), batch if plain else 1):
        chunk = samples[start : start + (batch if plain else 1)]
        if plain:
            loaded = [load_test_sample(s, bundle.input_hw) for s in chunk]
            out = bundle.infer(np.stack([img for img, _ in loaded]).astype(np.float32))
            scores += [float(s) for s in out.score]
            for (_, mask), amap, s in zip(loaded, out.anomaly_map, chunk):
                outlined = amap >= pixel_thr
                if s.is_anomalous:
                    pix["defect_pixels"] += int((mask > 0.5).sum())
                    pix["defect_outlined"] += int(outlined[mask > 0.5].sum())
                else:
                    pix["good_pixels"] += int(mask.size)
                    pix["good_outlined"] += int(outlined.sum())
        else:
            scores += [bundle.predict(chunk[0].image_path).score]
        print(f"\r  scored {len(scores)}/{len(samples)} test images ({time.perf_counter() - t0:.0f} s)", end="", flush=True)
    print()
    return {"scores": scores, "labels": [int(s.is_anomalous) for s in samples], "types": [s.defect_type for s in samples],
            "paths": [str(s.image_path) for s in samples], "pixels": pix if plain else None}


def _decisions(scores: np.ndarray, labels: np.ndarray, types: list[str], threshold: float) -> dict:
    """Recall and false alarms at ``threshold``, beside the best no-false-alarm recall, overall and per type."""
    good, bad = scores[labels == 0], scores[labels == 1]
    best = float(good.max()) if good.size else -np.inf  # the lowest no-false-alarm threshold is just above it
    types_arr = np.asarray(types)
    per_type = {}
    for t in sorted(set(types) - {"good"}):
        s = scores[types_arr == t]
        per_type[t] = {"n": int(s.size), "recall": float(np.mean(s >= threshold)), "best_no_fa_recall": float(np.mean(s > best))}
    recall, best_recall = float(np.mean(bad >= threshold)), float(np.mean(bad > best))
    return {"threshold": float(threshold), "recall": recall, "caught": int(np.sum(bad >= threshold)), "defective": int(bad.size),
            "false_alarms": int(np.sum(good >= threshold)), "good": int(good.size),
            "false_alarm_rate": float(np.mean(good >= threshold)) if good.size else 0.0,
            "best_no_fa_threshold_above": best, "best_no_fa_recall": best_recall,
            "ratio": recall / best_recall if best_recall > 0 else float("nan"), "per_type": per_type}


def _sweep(result: dict, margins: list[tuple[float, float | None]]) -> list[dict]:
    """The ``normals`` rule at other margins and the ``best-f1`` rule, on the same scores."""
    from diffusionad_edge.runtime.thresholds import normals_threshold, safe_image_threshold

    thr = result["thresholds"]
    normal, anomalous = np.asarray(thr["scores"]["normal"]), np.asarray(thr["scores"]["anomalous"])
    scores, labels, types = np.asarray(result["test"]["scores"]), np.asarray(result["test"]["labels"]), result["test"]["types"]
    rows = []
    for k, floor in margins:
        t, rec = normals_threshold(normal, k) if floor is None else normals_threshold(normal, k, floor)
        name = f"normals, k={k:g}" + ("" if floor is None else f", floor {floor:g}")
        rows.append({"rule": name, "margin_logit": rec["margin_logit"], **_decisions(scores, labels, types, t)})
    if anomalous.size:
        rows.append({"rule": "best-f1 (previous default)", "margin_logit": None,
                     **_decisions(scores, labels, types, safe_image_threshold(normal, anomalous))})
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _margin(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def to_markdown(result: dict, sweep: list[dict]) -> str:
    d, thr = result["decisions"], result["thresholds"]
    params = thr.get("rule_params") or {}
    ok = d["ratio"] >= 0.9 and d["false_alarm_rate"] <= 0.05
    lines = [f"# Decisions at the default thresholds: {result['dataset']}", "",
             f"Model: `{result['model']}` ({result['preset']}, {result['steps']} training steps); thresholds from "
             f"{thr['source']}; rule: {thr['rule']}.", "",
             "| held-out normals | highest normal | margin (logit) | image threshold | recall | false alarms on test/good "
             "| best no-false-alarm recall | ratio | target met |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| {params.get('normals', '-')} | {thr['normal_score_max']:.3g} | {_margin(params.get('margin_logit'))} | "
             f"{d['threshold']:.3g} | {d['caught']}/{d['defective']} = {_pct(d['recall'])} | "
             f"{d['false_alarms']}/{d['good']} = {_pct(d['false_alarm_rate'])} | {_pct(d['best_no_fa_recall'])} | "
             f"{d['ratio']:.2f} | {'yes' if ok else 'no'} |",
             "", f"Highest `test/good` score {d['best_no_fa_threshold_above']:.3g}; synthetic anomalies (a check only): "
             f"{thr['expected']['misses']} of {thr['expected']['anomalies']} below the threshold.", "",
             "| defect type | images | recall at the default | best no-false-alarm recall |", "|---|---|---|---|"]
    lines += [f"| {t} | {v['n']} | {_pct(v['recall'])} | {_pct(v['best_no_fa_recall'])} |" for t, v in d["per_type"].items()]
    pix = result["test"].get("pixels")
    if pix:
        lines += ["", f"Pixel threshold {thr['pixel']:.3g}: outlines {_pct(pix['defect_outlined'] / max(pix['defect_pixels'], 1))} "
                  f"of the defect pixels and {_pct(pix['good_outlined'] / max(pix['good_pixels'], 1))} of the pixels of good images."]
    if sweep:
        lines += ["", "Other rules on the same scores:", "",
                  "| rule | margin (logit) | image threshold | recall | false alarms on test/good | ratio |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['rule']} | {_margin(r['margin_logit'])} | {r['threshold']:.3g} | {_pct(r['recall'])} | "
                  f"{r['false_alarms']}/{r['good']} | {r['ratio']:.2f} |" for r in sweep]
    return "\n".join(lines) + "\n"


def measure(model: Path, data: Path, category: str | None) -> dict:
    from diffusionad_edge.data.mvtec import MVTecCategory
    from diffusionad_edge.runtime.bundle import open_bundle

    dataset = MVTecCategory(data, category)
    with open_bundle(model) as bundle:
        if model.is_dir():  # a bundle: the thresholds dae export wrote
            steps, preset = (bundle.metadata.get("checkpoint") or {}).get("step"), bundle.metadata.get("preset")
        else:  # a checkpoint: the thresholds as dae export places them, with the PyTorch model as the runner
            from diffusionad_edge.data.framing import preprocessing_of
            from diffusionad_edge.export.thresholds import held_out_thresholds
            from diffusionad_edge.models.checkpoint_io import load_model

            model_, payload = load_model(model)
            steps, preset = payload.get("step"), model_.config.preset
            print("placing the default thresholds on the held-out normals ...")
            bundle.thresholds = held_out_thresholds(payload, preprocessing_of(model_.config, payload), bundle.runner)
        print(f"scoring {len(dataset.test_samples)} test images of {dataset.path} ...")
        test = _score_test_split(bundle, dataset)
        thresholds = bundle.thresholds.to_dict()
    scores, labels = np.asarray(test["scores"]), np.asarray(test["labels"])
    return {"model": str(model), "preset": preset, "steps": steps, "dataset": str(dataset.path), "thresholds": thresholds,
            "test": test, "decisions": _decisions(scores, labels, test["types"], thresholds["image"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, nargs="?", help="checkpoint (.pt) or bundle folder")
    ap.add_argument("--data", type=Path, help="MVTec-layout category folder (or its parent, with --category)")
    ap.add_argument("--category")
    ap.add_argument("--margins", default="", help="comma-separated k (or k:floor) values of the normals rule to compare, "
                    "e.g. 0,0.5,1,2,3,1:0,1:1")
    ap.add_argument("--from-json", type=Path, help="a decisions.json to re-make the tables from, without scoring")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    elif args.model is None or args.data is None:
        ap.error("give MODEL and --data (or --from-json)")
    else:
        result = measure(args.model, args.data, args.category)
    # "k" or "k:floor" (the floor in logits; default the rule's)
    margins = [(float(m.split(":")[0]), float(m.split(":")[1]) if ":" in m else None) for m in args.margins.split(",") if m.strip()]
    sweep = _sweep(result, margins) if margins else []
    result["sweep"] = sweep
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decisions.json").write_text(json.dumps(result, indent=1) + "\n")
    md = to_markdown(result, sweep)
    (args.out / "decisions.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
