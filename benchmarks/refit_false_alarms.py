"""False alarms before and after a threshold refit from a handful of reviewed good frames (issue 25).

The line's situation: a deployed bundle meets good parts its training set did not foresee (a lamp
changed, a new batch of material) and calls some of them NG. An operator marks a handful of those
frames "good part"; ``dae export BUNDLE --refit-threshold REVIEW_DIR`` places the thresholds again
with them. This measures what that does, on a real MVTec-layout category:

1. every ``test/good`` and ``test/<defect>`` image is changed by ``--shift`` (``none``: as they are;
   ``brighter``: a brighter lamp, x1.25 + 10 grey levels; ``slightly-brighter``: x1.08; ``dimmer``:
   x0.75; ``warmer``: red x1.15, blue x0.85; ``slightly-warmer``: red x1.05, blue x0.95), standing in
   for the line's new conditions;
2. per round (seeded), ``--reviewed`` of the shifted good images go into a fresh review folder's
   ``good/`` (through :func:`~diffusionad_edge.runtime.review.save_review`, as the live view's button
   will): those the bundle calls NG first, in a random order, as an operator reviews the false alarms
   the live view shows (``--pick random``: any); the other good images are the held-out set;
3. a copy of the bundle is refit from that folder with the library call behind the command
   (:func:`~diffusionad_edge.runtime.refit.refit_thresholds`: the bundle's own runner and rule);
4. false alarms (held-out good images called NG) and recall (defective images called NG) at the
   bundle's thresholds before and after the refit. Every image is scored once by the bundle; the
   decisions are ``score >= image threshold``, what the bundle decides.

Usage::

    dae export /work/study/ctrl_toothbrush.pt --target openvino-cpu --precision fp32 --out exports/tb-ov32
    python benchmarks/refit_false_alarms.py exports/tb-ov32 --data ../shared/data/toothbrush \
        --shift none,slightly-warmer,warmer,brighter --reviewed 3 --rounds 10 --out benchmarks/results/refit_toothbrush

Writes ``refit.json`` (every score, each round's thresholds and counts) and ``refit.md`` into ``--out``
and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _gain(img: np.ndarray, gain, offset: float = 0.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


SHIFTS = {
    "none": lambda img: img,
    "brighter": lambda img: _gain(img, 1.25, 10),
    "slightly-brighter": lambda img: _gain(img, 1.08, 0),
    "dimmer": lambda img: _gain(img, 0.75),
    # RGB: red up, blue down
    "warmer": lambda img: _gain(img, np.array([1.15, 1.0, 0.85], np.float32)),
    "slightly-warmer": lambda img: _gain(img, np.array([1.05, 1.0, 0.95], np.float32)),
}


def _frames(dataset, shift):
    """The test split as RGB frames after the shift: (good frames, defective frames, names of each)."""
    from diffusionad_edge.data.preprocess import read_image

    good, bad, good_names, bad_names = [], [], [], []
    for s in dataset.test_samples:
        img = read_image(s.image_path)
        if img.dtype != np.uint8:  # 16-bit images: to 8 bits before the shift, as a camera's frame
            img = (img / max(int(img.max()), 1) * 255).astype(np.uint8)
        img = SHIFTS[shift](img)
        (bad if s.is_anomalous else good).append(img)
        (bad_names if s.is_anomalous else good_names).append(str(s.image_path.relative_to(dataset.path)))
    return good, bad, good_names, bad_names


def _pick(good_scores, threshold, k, pick_from, rng):
    """The good frames an operator reviews: ``ng``: the false alarms first (what the live view shows them), in a
    random order, then random other good frames when there are fewer than ``k``; ``random``: any ``k``."""
    order = rng.permutation(len(good_scores)).tolist()
    if pick_from == "ng":
        order = [i for i in order if good_scores[i] >= threshold] + [i for i in order if good_scores[i] < threshold]
    return sorted(order[:k])


def _rates(good_scores, bad_scores, threshold):
    fa = int(np.sum(np.asarray(good_scores) >= threshold))
    hits = int(np.sum(np.asarray(bad_scores) >= threshold))
    return fa, hits


def run(bundle_dir: Path, data: Path, category: str | None, shifts: list[str], reviewed: int, rounds: int, seed: int,
        pick_from: str = "ng") -> dict:
    from diffusionad_edge.data.mvtec import MVTecCategory
    from diffusionad_edge.runtime.bundle import load_bundle
    from diffusionad_edge.runtime.refit import refit_thresholds
    from diffusionad_edge.runtime.review import GOOD, save_review

    dataset = MVTecCategory(data, category)
    out: dict = {"bundle": str(bundle_dir), "data": str(dataset.path), "reviewed": reviewed, "rounds": rounds, "seed": seed,
                 "pick": pick_from, "shifts": {}}
    with load_bundle(bundle_dir) as bundle:
        thr0 = dict(bundle.metadata["thresholds"])
        out["threshold_before"] = {"image": thr0["image"], "pixel": thr0["pixel"]}
        out["backend"], out["precision"] = bundle.metadata["backend"], bundle.metadata["precision"]
        for shift in shifts:
            t0 = time.perf_counter()
            good, bad, good_names, bad_names = _frames(dataset, shift)
            good_scores = [bundle.predict(img).score for img in good]
            bad_scores = [bundle.predict(img).score for img in bad]
            print(f"{shift}: scored {len(good)} good + {len(bad)} defective images in {time.perf_counter() - t0:.0f} s", flush=True)
            rows = []
            for r in range(rounds):
                pick = _pick(good_scores, thr0["image"], reviewed, pick_from, np.random.default_rng([seed, r]))
                held = [i for i in range(len(good)) if i not in pick]
                with tempfile.TemporaryDirectory(prefix="refit-bench-") as tmp:
                    copy = shutil.copytree(bundle_dir, Path(tmp) / "bundle")
                    for j, i in enumerate(pick):  # saved as the camera's frame (BGR), as the live view saves it
                        save_review(Path(tmp) / "review", GOOD, good[i][..., ::-1], camera="bench", frame=j, score=good_scores[i],
                                    thresholds=out["threshold_before"], bundle="bench")
                    result = refit_thresholds(copy, Path(tmp) / "review", log=lambda m: None)
                new = result.new["image"]
                fa0, hit0 = _rates([good_scores[i] for i in held], bad_scores, thr0["image"])
                fa1, hit1 = _rates([good_scores[i] for i in held], bad_scores, new)
                rows.append({"round": r, "reviewed": [good_names[i] for i in pick], "held_out_good": len(held),
                             "image_threshold": new, "pixel_threshold": result.new["pixel"],
                             "false_alarms_before": fa0, "false_alarms_after": fa1,
                             "defects_caught_before": hit0, "defects_caught_after": hit1, "defects": len(bad),
                             "reviewed_ng_before": sum(good_scores[i] >= thr0["image"] for i in pick)})
            out["shifts"][shift] = {"good_scores": good_scores, "defect_scores": bad_scores, "good": good_names,
                                    "defective": bad_names, "rounds": rows}
    return out


def table(res: dict) -> str:
    thr = res["threshold_before"]["image"]
    how = "the false alarms first" if res.get("pick", "ng") == "ng" else "chosen at random"
    lines = [f"bundle {res['bundle']} ({res['backend']} {res['precision']}), data {res['data']}; {res['reviewed']} reviewed good "
             f"frames per round ({how}), {res['rounds']} rounds; image threshold before the refit {thr:.3g}", "",
             "| shift | held-out good | false alarms before | false alarms after | defects caught before | defects caught after "
             "| image threshold after (mean, range) | reviewed frames NG before (mean) |",
             "|---|---|---|---|---|---|---|---|"]
    for shift, s in res["shifts"].items():
        rows = s["rounds"]
        n_held = rows[0]["held_out_good"]
        total = n_held * len(rows)
        fa0, fa1 = sum(r["false_alarms_before"] for r in rows), sum(r["false_alarms_after"] for r in rows)
        h0, h1, nd = (sum(r["defects_caught_before"] for r in rows), sum(r["defects_caught_after"] for r in rows),
                      rows[0]["defects"] * len(rows))
        thrs = [r["image_threshold"] for r in rows]
        ng = np.mean([r["reviewed_ng_before"] for r in rows])
        lines.append(f"| {shift} | {n_held} | {fa0}/{total} = {100 * fa0 / total:.1f} % | {fa1}/{total} = {100 * fa1 / total:.1f} % "
                     f"| {h0}/{nd} = {100 * h0 / nd:.1f} % | {h1}/{nd} = {100 * h1 / nd:.1f} % "
                     f"| {np.mean(thrs):.3g} ({min(thrs):.3g}-{max(thrs):.3g}) | {ng:.1f} of {res['reviewed']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path, help="a bundle folder (dae export)")
    ap.add_argument("--data", type=Path, required=True, help="MVTec-layout category (or root with --category)")
    ap.add_argument("--category", default=None)
    ap.add_argument("--shift", default="none,brighter", help=f"comma-separated: {', '.join(SHIFTS)}")
    ap.add_argument("--reviewed", type=int, default=3, help="good frames reviewed per round")
    ap.add_argument("--rounds", type=int, default=10, help="random choices of the reviewed frames")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pick", choices=("ng", "random"), default="ng",
                    help="which good frames are reviewed: the false alarms first (as on the line), or any")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    shifts = [s.strip() for s in args.shift.split(",") if s.strip()]
    unknown = [s for s in shifts if s not in SHIFTS]
    if unknown:
        ap.error(f"unknown --shift {', '.join(unknown)}; choose from {', '.join(SHIFTS)}")
    res = run(args.bundle, args.data, args.category, shifts, args.reviewed, args.rounds, args.seed, args.pick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refit.json").write_text(json.dumps(res, indent=1))
    md = table(res)
    (args.out / "refit.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
