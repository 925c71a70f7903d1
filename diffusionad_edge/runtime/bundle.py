"""Bundles: what a user deploys, and the one way to run one.

A bundle is a folder of model files plus ``metadata.json`` (written by ``dae export``).
:func:`open_bundle` opens one (verifying checksums and versions, picking the runner from the table of
backends) or wraps a checkpoint the same way (PyTorch runner, threshold from its held-out validation
scores), and returns a :class:`Bundle`. ``Bundle.predict(image)`` is the Python API beneath
``dae run``, ``dae predict`` and ``dae bench``; one frame takes this path::

    frame (BGR camera frame, RGB array or file)
      -> Bundle.prepare_frame  data/framing.py: to RGB uint8, ROI crop, resize (or tiles), /255 -> (N, 3, H, W)
      -> Bundle.infer          the runner (backends/) -> RunnerOutput maps, scores
      -> Bundle.finish_frame   tiles blended, map placed back at frame size (ROI / tiled bundles);
                               Thresholds: decision, normalised score, defect mask
      -> BundleResult          -> overlay.py / live.py events / predict.py rows

A bundle without ROI or tiles (``metadata["preprocessing"]`` absent or plain) keeps the classic path:
one input per frame, the map at the input size.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .. import __version__
from ..data.framing import FrameLayout, Preprocessing
from ..data.preprocess import preprocess, read_image, to_rgb
from ..data.roi import Roi
from ..errors import ConfigError, DaeError, DataError
from ..files import to_json, write_text
from .backends.runner import Runner, RunnerOutput
from .backends.table import make_runner
from .thresholds import Thresholds, decision

FORMAT = "diffusionad_edge.bundle"
#: 2: metadata.json carries its own integrity record (format 1 bundles had none: re-export them)
FORMAT_VERSION = 2
METADATA = "metadata.json"
#: the key of metadata.json that holds the sha256 of the rest of it
INTEGRITY = "integrity"
_CANONICAL = "the rest of metadata.json as canonical JSON (sorted keys, separators ',' ':', ASCII)"


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
    anomaly_map: np.ndarray  # (H, W) float32 at the input size; at frame size when asked for, or for ROI / tiled bundles
    defect_mask: np.ndarray  # same shape, bool: anomaly_map >= pixel threshold


@dataclass
class FrameInput:
    """One frame prepared for the runner: its network batch and how to map the outputs back."""

    batch: np.ndarray  # (N, 3, H, W) float32: N = 1, or the number of tiles
    layout: FrameLayout | None  # None on the classic path


def metadata_digest(meta: dict[str, Any]) -> str:
    """sha256 of the metadata without its integrity record, in a canonical JSON form (independent of
    indentation and key order, so any change of a value changes it)."""
    body = {k: v for k, v in meta.items() if k != INTEGRITY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def seal_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata as it will read back from disk (plain JSON values), with its integrity record."""
    plain = json.loads(to_json({k: v for k, v in meta.items() if k != INTEGRITY}))
    plain[INTEGRITY] = {"sha256": metadata_digest(plain), "covers": _CANONICAL}
    return plain


def write_metadata(folder: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Seal and write ``metadata.json`` atomically (one rename: never half a file, never a file whose
    integrity record does not match); returns what was written."""
    sealed = seal_metadata(meta)
    write_text(Path(folder) / METADATA, json.dumps(sealed, indent=2) + "\n")
    return sealed


class Bundle:
    """A loaded, verified bundle (or a checkpoint wrapped as one): preprocess -> infer -> postprocess."""

    def __init__(self, folder: Path, metadata: dict[str, Any], runner: Runner):
        self.folder, self.metadata, self.runner = folder, metadata, runner
        #: the input height (and width of a square input)
        self.size = int(metadata["input"]["size"])
        self.input_hw = (self.size, int(metadata["input"].get("width") or self.size))
        runner.expected_hw = self.input_hw  # the model file's input is checked against it on activation
        self.preprocessing = bundle_preprocessing(metadata)
        self.thresholds = Thresholds.from_dict(metadata.get("thresholds"))

    def set_roi(self, roi: Roi | None) -> None:
        """Use another region of interest (``dae run --roi``: a camera that was moved); None keeps the bundle's."""
        if roi is not None:
            self.preprocessing = self.preprocessing.with_roi(roi)

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
        """A file path, or an image array (RGB unless ``bgr``), to the network input (3, H, W) of the
        classic path (a ROI / tiled bundle's frames go through :meth:`prepare_frame`)."""
        img = read_image(image) if isinstance(image, (str, Path)) else to_rgb(image, bgr=bgr)
        if self.preprocessing.roi is not None:
            img = self._region(img)
        return preprocess(img, self.input_hw)

    def _region(self, rgb: np.ndarray) -> np.ndarray:
        roi = self.preprocessing.roi
        if roi is None:
            return rgb
        try:
            roi.check(rgb.shape[:2], "camera frame")
        except DataError as exc:
            raise DataError(f"{exc}: set a region of interest that fits this camera with `dae run --roi x,y,w,h`") from None
        return roi.crop(rgb)

    def prepare_frame(self, image: np.ndarray | str | Path, bgr: bool = False) -> FrameInput:
        """A frame (path or array, RGB unless ``bgr``) -> its network batch and layout."""
        if self.preprocessing.is_plain:
            return FrameInput(self.preprocess(image, bgr)[None], None)
        img = read_image(image) if isinstance(image, (str, Path)) else to_rgb(image, bgr=bgr)
        self._region(img)  # a ROI that does not fit: one line naming the fix
        batch, layout = self.preprocessing.inputs(img)
        return FrameInput(batch, layout)

    def finish_frame(self, output: RunnerOutput, frame: FrameInput) -> BundleResult:
        """The runner's output for one prepared frame -> its result (map at frame size for ROI /
        tiled bundles; a tiled frame's score is the top-k of its blended map)."""
        if frame.layout is None:
            return self.postprocess(output)[0]
        prep, layout = self.preprocessing, frame.layout
        region = prep.region_map(output.anomaly_map, layout)
        score = prep.score(region) if layout.grid is not None else float(output.score[0])
        amap = prep.frame_map(region, layout)
        thr = self.thresholds
        return BundleResult(score=score, normalised_score=float(thr.normalised(score)), is_anomalous=bool(thr.is_anomalous(score)),
                            anomaly_map=amap, defect_mask=amap >= thr.pixel_or_default)

    def predict_frames(self, frames: list[FrameInput]) -> list[BundleResult]:
        """Several prepared frames: in flight together when the runner has an asynchronous queue."""
        outputs = [self.infer(frames[0].batch)] if len(frames) == 1 else self.runner.infer_many([f.batch for f in frames])
        return [self.finish_frame(o, f) for o, f in zip(outputs, frames)]

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
        return self.predict_frames([self.prepare_frame(image, bgr)])[0]

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
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{path} is not a diffusionad_edge bundle")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{path}: format_version must be an integer (found {version!r})")
    if version > FORMAT_VERSION:
        raise BundleError(f"bundle format {version} is newer than this toolkit ({__version__}) reads: upgrade diffusionad_edge")
    versions = meta.get("versions")
    made_by = str(versions.get("diffusionad_edge", "0")) if isinstance(versions, dict) else "0"
    if made_by.split(".")[0] != __version__.split(".")[0]:
        raise BundleError(f"bundle {folder} was made by diffusionad_edge {made_by}; this is {__version__} (major versions differ): re-export it")
    _verify_integrity(path, meta)
    validate_metadata(meta, path)
    return meta


def _verify_integrity(path: Path, meta: dict[str, Any]) -> None:
    record = meta.get(INTEGRITY)
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise BundleError(f"{path} has no integrity record (a bundle of format {meta.get('format_version')}, made before "
                          f"format {FORMAT_VERSION}, or edited): re-export it")
    try:
        actual = metadata_digest(meta)
    except ValueError as exc:  # NaN or infinity: not JSON
        raise BundleError(f"{path}: {exc}") from None
    if actual != record["sha256"]:
        raise BundleError(f"{path} was changed after export (its sha256 does not match its integrity record): re-export "
                          "the bundle; to change a threshold use `dae export BUNDLE --set-threshold T`")


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_metadata(meta: dict[str, Any], path: str | Path = METADATA) -> None:
    """The values the runtime uses have the right types and ranges: :class:`BundleError` naming the
    key otherwise (a malformed bundle is one line, not a numpy or backend traceback)."""

    def bad(key: str, want: str, got: Any) -> BundleError:
        return BundleError(f"{path}: {key} must be {want} (found {got!r}): re-export the bundle")

    def plain_name(name: Any) -> bool:
        return isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")

    if not isinstance(meta.get("backend"), str):
        raise bad("backend", "a backend name", meta.get("backend"))
    inp = meta.get("input")
    if not isinstance(inp, dict):
        raise bad("input", "an object", inp)
    for key, lo, hi in (("size", 8, 16384), ("batch", 1, 4096), ("width", 8, 16384)):
        v = inp.get(key)
        if key == "width" and v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise bad(f"input.{key}", f"an integer in [{lo}, {hi}]", v)
    if meta.get("preprocessing") is not None:
        try:
            prep = Preprocessing.from_dict(meta["preprocessing"])
        except ConfigError as exc:
            raise BundleError(f"{path}: {exc}: re-export the bundle") from None
        hw = (inp["size"], inp.get("width") or inp["size"])
        if prep.input_hw != hw:
            raise bad("preprocessing", f"an input of {hw[0]}x{hw[1]} like input.size/width", meta["preprocessing"])
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise bad("files", "an object of file name -> sha256", files)
    for name, digest in files.items():
        if not plain_name(name):
            raise bad("files", "plain file names inside the bundle", name)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise bad(f"files.{name}", "a sha256 (64 hex digits)", digest)
    if meta.get("entry") not in files:
        raise bad("entry", f"one of the bundle's files ({', '.join(files)})", meta.get("entry"))
    for key in ("runtime_options", "target"):
        if key in meta and not isinstance(meta[key], dict):
            raise bad(key, "an object", meta[key])
    thr = meta.get("thresholds")
    if thr is None:
        return
    if not isinstance(thr, dict):
        raise bad("thresholds", "an object or null", thr)
    for key in ("image", "pixel"):  # scores and maps are probabilities
        v = thr.get(key)
        if v is not None and not (_number(v) and 0.0 <= v <= 1.0):
            raise bad(f"thresholds.{key}", "a number in [0, 1] or null", v)
    norm = thr.get("normalisation")
    if norm is not None:
        if not isinstance(norm, dict) or not all(_number(norm.get(k)) for k in ("min", "max")) or norm["max"] < norm["min"]:
            raise bad("thresholds.normalisation", "an object with numbers min <= max", norm)


def bundle_preprocessing(meta: dict[str, Any]) -> Preprocessing:
    """A bundle's preprocessing: its record, or (bundles made before ROIs and tiles) the plain resize."""
    inp = meta["input"]
    top_k = int((meta.get("inference") or {}).get("top_k", 50))
    if meta.get("preprocessing"):
        return Preprocessing.from_dict(meta["preprocessing"])
    return Preprocessing.plain((int(inp["size"]), int(inp.get("width") or inp["size"])), top_k)


def set_thresholds(folder: str | Path, image: float | None = None, pixel: float | None = None) -> dict[str, Any]:
    """Change a bundle's image and/or pixel threshold on purpose: the bundle is verified, the new
    values are checked, and ``metadata.json`` is rewritten with a new integrity record in one atomic
    rename. Returns the new metadata."""
    folder = Path(folder)
    meta = read_metadata(folder)
    verify_files(folder, meta)
    changes = {k: v for k, v in (("image", image), ("pixel", pixel)) if v is not None}
    if not changes:
        raise BundleError("give --set-threshold and/or --set-pixel-threshold")
    for key, value in changes.items():
        if not (_number(value) and 0.0 <= value <= 1.0):
            raise BundleError(f"the {key} threshold must be a number in [0, 1] (got {value!r})")
    old = Thresholds.from_dict(meta.get("thresholds"))
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    note = ", ".join(f"{k} threshold set to {v:g} by hand on {when} (was {getattr(old, k)})" for k, v in changes.items())
    new = Thresholds.from_dict(meta.get("thresholds")).override(**changes)
    new = Thresholds(new.image, new.pixel, new.score_min, new.score_max, f"{old.source}; {note}" if old.source else note, new.extra)
    meta["thresholds"] = new.to_dict()
    return write_metadata(folder, meta)


def verify_files(folder: Path, meta: dict[str, Any]) -> None:
    """Every model file present with the recorded sha256."""
    for name, digest in meta.get("files", {}).items():
        f = folder / name
        if not f.is_file():
            raise BundleError(f"bundle file missing: {f}")
        actual = sha256(f)
        if actual != digest:
            raise BundleError(f"checksum mismatch for {f}: expected {digest[:12]}..., found {actual[:12]}... (file changed or corrupt; re-export)")


def build_tensorrt_engine(folder: str | Path, log: Callable[[str], None] = print) -> Path:
    """``dae export BUNDLE --build-engine``: on the device, build the TensorRT engine of a TensorRT
    bundle whose files check out (``backends/tensorrt/engine.py``); returns the engine file."""
    from .backends.tensorrt.engine import build_engine

    folder = Path(folder)
    meta = read_metadata(folder)
    if meta["backend"] != "tensorrt":
        raise ConfigError(f"{folder} is a {meta['backend']} bundle; --build-engine is for TensorRT (jetson-*) bundles")
    verify_files(folder, meta)
    return build_engine(folder, meta["tensorrt"], log=log)


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
    from .backends.torch import TorchRunner

    val = payload.get("validation") or {}
    normal, synthetic = val.get("normal_scores") or [], val.get("synthetic_scores") or []
    thresholds = Thresholds()
    if normal and synthetic:
        labels = np.r_[np.zeros(len(normal)), np.ones(len(synthetic))]
        thresholds = Thresholds.from_labelled_scores(labels, np.r_[normal, synthetic], None,
                                                     "held-out validation scores of the checkpoint")
    from ..data.framing import preprocessing_of

    h, w = model.config.input_hw
    meta = {"backend": "pytorch", "precision": "fp32", "input": {"size": h, "width": w, "batch": 1},
            "preprocessing": preprocessing_of(model.config, payload).to_dict(),
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
    from .backends.torch import TorchRunner

    model, payload = load_model(path)
    return checkpoint_bundle(model, payload, path, TorchRunner(model, device))
