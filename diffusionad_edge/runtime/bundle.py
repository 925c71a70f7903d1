"""Bundles: what a user deploys, and the one way to run one.

A bundle is a folder of model files plus ``metadata.json`` (written by ``dae export``).
:func:`open_bundle` opens one (verifying checksums and versions, picking the runner from the table of
backends) or wraps a checkpoint the same way (PyTorch runner, threshold from its held-out validation
scores), and returns a :class:`Bundle`. ``Bundle.predict(image)`` is the Python API beneath
``dae run``, ``dae predict`` and ``dae bench``; one frame takes this path::

    frame (BGR camera frame, RGB array or file)
      -> Bundle.preprocess   data/preprocess.py: to RGB uint8, resize, /255 -> (3, S, S) float32
      -> Bundle.infer        the runner (runners.py / tensorrt_runner.py) -> RunnerOutput maps, scores
      -> Bundle.postprocess  Thresholds: decision, normalised score, defect mask (optionally at frame size)
      -> BundleResult        -> overlay.py / live.py events / predict.py rows
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import __version__
from ..data.preprocess import preprocess, read_image, to_rgb
from ..errors import DaeError
from .backends import make_runner
from .runners import Runner, RunnerOutput
from .thresholds import Thresholds, decision

FORMAT = "diffusionad_edge.bundle"
FORMAT_VERSION = 1
METADATA = "metadata.json"


class BundleError(DaeError):
    """A bundle is missing, incomplete, tampered with or from an incompatible toolkit."""


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class BundleResult:
    """One image's result: the raw score and map, and what the thresholds make of them."""

    score: float
    normalised_score: float
    is_anomalous: bool
    anomaly_map: np.ndarray  # (S, S) float32, or at frame size when asked for
    defect_mask: np.ndarray  # same shape, bool: anomaly_map >= pixel threshold


class Bundle:
    """A loaded, verified bundle (or a checkpoint wrapped as one): preprocess -> infer -> postprocess."""

    def __init__(self, folder: Path, metadata: dict[str, Any], runner: Runner):
        self.folder, self.metadata, self.runner = folder, metadata, runner
        self.size = int(metadata["input"]["size"])
        self.thresholds = Thresholds.from_dict(metadata.get("thresholds"))

    @property
    def image_threshold(self) -> float | None:
        return self.thresholds.image

    @property
    def pixel_threshold(self) -> float | None:
        return self.thresholds.pixel

    def override_thresholds(self, image: float | None = None, pixel: float | None = None) -> None:
        """Replace the image and/or pixel threshold (``--threshold``); the normalised score follows."""
        self.thresholds = self.thresholds.override(image, pixel)

    def decision(self, result: BundleResult) -> str | None:
        """OK/NG, or None when this bundle has no image threshold."""
        return decision(self.thresholds.is_anomalous(result.score))

    def preprocess(self, image: np.ndarray | str | Path, bgr: bool = False) -> np.ndarray:
        """A file path, or an image array (RGB unless ``bgr``), to the network input (3, S, S)."""
        img = read_image(image) if isinstance(image, (str, Path)) else to_rgb(image, bgr=bgr)
        return preprocess(img, self.size)

    def infer(self, batch: np.ndarray) -> RunnerOutput:
        return self.runner.infer(batch)

    def postprocess(self, output: RunnerOutput, frame_hw: tuple[int, int] | None = None) -> list[BundleResult]:
        """Decisions, normalised scores and defect masks; with ``frame_hw`` the map and mask are
        resized to the frame (what a deployment overlays)."""
        thr = self.thresholds
        results = []
        for m, s in zip(output.anomaly_map, output.score):
            mask = m >= thr.pixel_or_default
            if frame_hw is not None:
                h, w = frame_hw
                mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
                m = cv2.resize(m, (w, h))
            results.append(BundleResult(score=float(s), normalised_score=float(thr.normalised(s)),
                                        is_anomalous=bool(thr.is_anomalous(float(s))), anomaly_map=m, defect_mask=mask))
        return results

    def predict_batch(self, batch: np.ndarray) -> list[BundleResult]:
        return self.postprocess(self.infer(batch))

    def predict_many(self, batches: list[np.ndarray]) -> list[list[BundleResult]]:
        """Several batches at once: in flight together when the runner has an asynchronous queue."""
        return [self.postprocess(o) for o in self.runner.infer_many(batches)]

    def predict(self, image: np.ndarray | str | Path, bgr: bool = False) -> BundleResult:
        """Score one image (path or array)."""
        return self.predict_batch(self.preprocess(image, bgr)[None])[0]

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metadata(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / METADATA
    if not folder.is_dir():
        raise BundleError(f"bundle folder not found: {folder}")
    if not path.is_file():
        raise BundleError(f"not a bundle (no {METADATA}): {folder}")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if meta.get("format") != FORMAT:
        raise BundleError(f"{path} is not a diffusionad_edge bundle")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(f"bundle format {meta['format_version']} is newer than this toolkit ({__version__}) reads: upgrade diffusionad_edge")
    made_by = str(meta.get("versions", {}).get("diffusionad_edge", "0"))
    if made_by.split(".")[0] != __version__.split(".")[0]:
        raise BundleError(f"bundle {folder} was made by diffusionad_edge {made_by}; this is {__version__} (major versions differ): re-export it")
    return meta


def verify_files(folder: Path, meta: dict[str, Any]) -> None:
    """Every model file present with the recorded sha256."""
    for name, digest in meta.get("files", {}).items():
        f = folder / name
        if not f.is_file():
            raise BundleError(f"bundle file missing: {f}")
        actual = sha256(f)
        if actual != digest:
            raise BundleError(f"checksum mismatch for {f}: expected {digest[:12]}..., found {actual[:12]}... (file changed or corrupt; re-export)")


def load_bundle(folder: str | Path, backend: str | None = None, verify: bool = True, **runner_options: Any) -> Bundle:
    """Load and verify a bundle folder; the runner is activated on first use. ``runner_options``:
    e.g. ``requests=4`` for OpenVINO's asynchronous queue."""
    folder = Path(folder)
    meta = read_metadata(folder)
    if verify:
        verify_files(folder, meta)
    return Bundle(folder, meta, make_runner(folder, meta, backend, **runner_options))


def checkpoint_bundle(model: Any, payload: dict[str, Any], path: Path, runner: Runner | None = None) -> Bundle:
    """A PyTorch model wrapped as a bundle: the image threshold from its held-out validation scores."""
    from .runners import TorchRunner

    val = payload.get("validation") or {}
    normal, synthetic = val.get("normal_scores") or [], val.get("synthetic_scores") or []
    thresholds = Thresholds()
    if normal and synthetic:
        labels = np.r_[np.zeros(len(normal)), np.ones(len(synthetic))]
        thresholds = Thresholds.from_labelled_scores(labels, np.r_[normal, synthetic], None,
                                                     "held-out validation scores of the checkpoint")
    meta = {"backend": "pytorch", "precision": "fp32", "input": {"size": model.config.image_size, "batch": 1},
            "thresholds": thresholds.to_dict(), "preset": model.config.preset, "target": {"name": "pytorch"}}
    return Bundle(path, meta, runner or TorchRunner(model))


def open_bundle(path: str | Path, backend: str | None = None, device: str = "cpu", **runner_options: Any) -> Bundle:
    """A bundle folder -> its backend's runner; a checkpoint file -> the PyTorch model as a bundle."""
    path = Path(path)
    if path.is_dir():
        return load_bundle(path, backend=backend, **runner_options)
    if not path.exists():
        raise BundleError(f"no bundle folder or checkpoint at {path}")
    if backend not in (None, "pytorch"):
        raise BundleError(f"--backend {backend} needs a bundle; {path} is a checkpoint (PyTorch)")
    if any(v is not None for v in runner_options.values()):
        raise BundleError(f"{', '.join(runner_options)} need a bundle; {path} is a checkpoint (PyTorch)")
    from ..models.checkpoint_io import load_model
    from .runners import TorchRunner

    model, payload = load_model(path)
    return checkpoint_bundle(model, payload, path, TorchRunner(model, device))
