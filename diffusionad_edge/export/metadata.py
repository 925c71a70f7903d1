"""Stage 5 of ``dae export``: ``metadata.json``, what the bundle is, how to run it, and what was checked."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import __version__
from ..models.complexity import measure_complexity
from ..runtime.backends.table import package_versions
from ..runtime.bundle import FORMAT, FORMAT_VERSION, sha256
from ..runtime.thresholds import Thresholds
from .artefact import Artefact
from .graph import NOISE_CONTRACT
from .job import ExportJob


def _versions() -> dict[str, str | None]:
    import platform

    return {"diffusionad_edge": __version__, "python": platform.python_version(), **package_versions()}


def build_metadata(job: ExportJob, art: Artefact, thresholds: Thresholds, checks: dict[str, Any]) -> dict[str, Any]:
    """Stage 5: ``metadata.json``: what the bundle is, how to run it, and what was checked."""
    opts, model, (h, w), batch = job.opts, job.model, job.hw, job.batch
    complexity = measure_complexity(model)
    d = model.config.diffusion
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "checkpoint": {"path": str(opts.checkpoint), "sha256": job.checkpoint_sha, "step": job.payload.get("step")},
        "preset": model.config.preset, "model_config": model.config.to_dict(),
        # At the exported input size, for GFLOP/s in `dae bench` without the checkpoint.
        "complexity": {"gflop_per_image": complexity.one_step_gflop,
                       "params_m": (complexity.denoiser_params + complexity.segmenter_params) / 1e6},
        "inference": {"t_s": d.t_s, "t_b": d.t_b, "guidance_w": d.guidance_w, "top_k": d.top_k,
                      "noise": NOISE_CONTRACT, "noise_seed": opts.noise_seed},
        # "size" is the height (and the side of a square input); "width" the width.
        "input": {"name": "image", "size": h, "width": w, "batch": batch, "layout": "NCHW", "dtype": "float32",
                  "color": "RGB", "scale": "pixel / 255", "mean": None, "std": None,
                  "resize": ("square resize" if h == w else f"resize to {h}x{w} (HxW), aspect not kept")
                            + ", area when shrinking, bilinear when enlarging"},
        # ROI and tiles: how a frame becomes the graph's inputs and its maps one map (data/framing.py).
        "preprocessing": job.preprocessing.to_dict(),
        "outputs": {"anomaly_map": f"({batch}, 1, {h}, {w}) probabilities", "score": f"({batch},) mean of top-{d.top_k} map pixels"},
        "target": job.profile.to_dict(), "backend": job.backend.name, "precision": job.precision,
        "entry": art.entry, "runtime_options": job.runtime_options(),
        "files": {f.name: sha256(f) for f in art.files},
        "calibration": art.calibration.summary() if art.calibration else None,
        "thresholds": thresholds.to_dict(),
        "checks": checks,
    }
    if job.backend.name == "tensorrt":
        from .tensorrt_plan import build_plan

        meta["tensorrt"] = build_plan(job.profile, job.precision, art.entry, batch, (h, w))
    return meta
