"""The noise contract, measured: a fixed seeded noise versus fresh noise for every frame.

Fresh noise makes the score of an unchanged image jitter from frame to frame; a fixed noise makes
"same part, same verdict" hold exactly. This runs the test split once with the fixed noise and
``repeats`` times with fresh noise, and reports the metrics of both and the per-image score jitter.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..data.mvtec import MVTecCategory
from ..runtime.backends.torch import TorchRunner
from .evaluator import evaluate


def noise_study(model: Any, dataset: MVTecCategory, repeats: int = 5, device: Any = "cpu",
                limit: int | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    size = model.config.input_hw
    fixed = evaluate(dataset, TorchRunner(model, device), size, limit=limit)
    if progress:
        progress("fixed noise done")
    runs, all_scores = [], []
    for r in range(repeats):
        runner = TorchRunner(model, device, noise="fresh", seed=1000 + r)
        runs.append(evaluate(dataset, runner, size, limit=limit).overall)
        all_scores.append(np.concatenate(runner.scores_seen))
        if progress:
            progress(f"fresh noise run {r + 1}/{repeats} done")
    scores_rn = np.stack(all_scores)  # (repeats, images)
    per_image_std = scores_rn.std(axis=0)
    metrics = list(fixed.overall)
    fresh_mean = {k: float(np.mean([run[k] for run in runs])) for k in metrics}
    fresh_std = {k: float(np.std([run[k] for run in runs])) for k in metrics}
    return {
        "images": int(scores_rn.shape[1]),
        "repeats": repeats,
        "fixed_noise": fixed.overall,
        "fresh_noise_mean": fresh_mean,
        "fresh_noise_std": fresh_std,
        "score_jitter_std_mean": float(per_image_std.mean()),
        "score_jitter_std_max": float(per_image_std.max()),
        "score_range": float(scores_rn.max() - scores_rn.min()),
    }
