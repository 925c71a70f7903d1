"""Artifact bundles: a folder of model files plus ``metadata.json``, and loading them back.

``load_artifact(path).predict(image)`` is the one Python API beneath ``dae run``/``dae predict``:
it verifies checksums and versions, picks the runner from the metadata and applies the bundle's
own preprocessing and thresholds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data.preprocess import preprocess, read_image, to_rgb
from ..errors import DaeError
from ..runtime.runners import OnnxRuntimeRunner, OpenVINORunner, Runner
from .thresholds import normalise_score

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


def make_runner(folder: Path, meta: dict[str, Any], backend: str | None = None) -> Runner:
    """The runner for a bundle's entry file, from its metadata (``backend`` may override)."""
    backend = backend or meta["backend"]
    entry = folder / meta["entry"]
    batch = int(meta["input"]["batch"])
    options = meta.get("runtime_options", {})
    if backend == "onnxruntime":
        return OnnxRuntimeRunner(entry, options.get("providers"), options, fixed_batch=batch)
    if backend == "openvino":
        return OpenVINORunner(entry, meta["target"]["device"], options.get("config", {}), fixed_batch=batch)
    if backend == "tensorrt":
        from ..runtime.tensorrt_runner import TensorRTRunner  # needs TensorRT; imported only here

        return TensorRTRunner.from_bundle(folder, meta)
    raise BundleError(f"bundle backend {backend!r} is not supported by this toolkit")


@dataclass
class ImageResult:
    score: float
    normalised_score: float
    is_anomalous: bool
    anomaly_map: np.ndarray  # (S, S) float32
    defect_mask: np.ndarray  # (S, S) bool, anomaly_map >= pixel threshold


class Artifact:
    """A loaded, verified bundle."""

    def __init__(self, folder: Path, metadata: dict[str, Any], runner: Runner):
        self.folder, self.metadata, self.runner = folder, metadata, runner
        self.size = int(metadata["input"]["size"])
        thr = metadata.get("thresholds") or {}
        self.image_threshold = thr.get("image")
        self.pixel_threshold = thr.get("pixel")

    def preprocess(self, image: np.ndarray | str | Path, bgr: bool = False) -> np.ndarray:
        """A file path, or an image array (RGB unless ``bgr``), to the network input (3, S, S)."""
        img = read_image(image) if isinstance(image, (str, Path)) else to_rgb(image, bgr=bgr)
        return preprocess(img, self.size)

    def predict_batch(self, batch: np.ndarray) -> list[ImageResult]:
        pred = self.runner.infer(batch)
        thr = self.image_threshold
        norm = (self.metadata.get("thresholds") or {}).get("normalisation")
        out = []
        for m, s in zip(pred.anomaly_map, pred.score):
            out.append(ImageResult(
                score=float(s),
                normalised_score=float(normalise_score(s, norm)) if norm else float("nan"),
                is_anomalous=bool(thr is not None and s >= thr),
                anomaly_map=m,
                defect_mask=m >= (self.pixel_threshold if self.pixel_threshold is not None else 0.5),
            ))
        return out

    def predict(self, image: np.ndarray | str | Path, bgr: bool = False) -> ImageResult:
        """Score one image (path or array)."""
        return self.predict_batch(self.preprocess(image, bgr)[None])[0]

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> "Artifact":
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


def load_artifact(folder: str | Path, backend: str | None = None, verify: bool = True) -> Artifact:
    """Load and verify a bundle; the runner is activated on first use."""
    folder = Path(folder)
    meta = read_metadata(folder)
    if verify:
        verify_files(folder, meta)
    return Artifact(folder, meta, make_runner(folder, meta, backend))
