"""Calibration sets for post-training quantization.

A calibration set is real, preprocessed input images (the graph only ever sees t_s and t_b, so
calibrating the whole exported graph on real images covers exactly the activation ranges it will
meet). Sources: a manifest (see ``calibration/README.md``) or, by default, a seeded subset of the
normal images the checkpoint was trained on.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.mvtec import list_images
from ..data.preprocess import IMAGE_EXTENSIONS, find_images, preprocess, read_image, to_chw_float
from ..errors import ConfigError, DaeError, DataError

#: Below this many images INT8 ranges are a guess: warn. Below MIN_IMAGES: refuse.
RECOMMENDED_IMAGES = 32
MIN_IMAGES = 4


@dataclass
class CalibrationSet:
    images: np.ndarray  # (N, 3, S, S) float32
    sources: list[str]
    seed: int
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"count": int(len(self.images)), "seed": self.seed, "sources": self.sources,
                "skipped_unreadable": self.skipped, "warnings": self.warnings}


def _expand(source: Path) -> list[Path]:
    if source.is_dir():
        return find_images(source)
    if source.is_file() and source.suffix.lower() == ".txt":
        lines = [l.strip() for l in source.read_text().splitlines() if l.strip() and not l.startswith("#")]
        return [Path(l) if Path(l).is_absolute() else source.parent / l for l in lines]
    if source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS:
        return [source]
    raise DataError(f"calibration source not found or not a folder/.txt list/image: {source}")


def _network_view(rgb: np.ndarray, size: Any, rng: np.random.Generator) -> np.ndarray:
    """One network input of an image: resized to ``size`` (S or (H, W)), or through a
    :class:`~..data.framing.Preprocessing` (its ROI; a random tile of a tiled model)."""
    from ..data.framing import Preprocessing

    if isinstance(size, Preprocessing):
        return to_chw_float(size.view(size.training_image(rgb), rng))
    return preprocess(rgb, size)


def build_calibration_set(paths: list[Path], size: Any, count: int, seed: int, sources: list[str]) -> CalibrationSet:
    """Read a seeded subset of ``count`` images; unreadable ones are skipped and listed. ``size``: the
    input size (S or (H, W)) or the model's :class:`~..data.framing.Preprocessing`."""
    if count < 1:
        raise ConfigError(f"calibration count must be >= 1 (got {count})")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(paths))
    images, skipped = [], []
    for i in order:
        if len(images) >= count:
            break
        try:
            images.append(_network_view(read_image(paths[i]), size, rng))
        except DaeError:
            skipped.append(str(paths[i]))
    notes = []
    if skipped:
        notes.append(f"{len(skipped)} unreadable calibration images skipped")
    if len(images) < MIN_IMAGES:
        raise DataError(
            f"only {len(images)} readable calibration images (need at least {MIN_IMAGES}, "
            f"{RECOMMENDED_IMAGES}+ recommended) from {', '.join(sources)}"
        )
    if len(images) < min(count, RECOMMENDED_IMAGES):
        notes.append(
            f"only {len(images)} calibration images: INT8 activation ranges may not cover production "
            f"images; expect larger accuracy loss (use {RECOMMENDED_IMAGES}+ representative images)"
        )
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return CalibrationSet(np.stack(images).astype(np.float32), sources, seed, skipped, notes)


def from_manifest(manifest: str | Path, size: Any) -> CalibrationSet:
    """Calibration set from a JSON manifest: {"sources": [...], "count": 64, "seed": 0}."""
    manifest = Path(manifest)
    try:
        spec = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise DataError(f"calibration manifest not found: {manifest}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"calibration manifest is not valid JSON: {manifest}: {exc}") from None
    if not isinstance(spec, dict) or not spec.get("sources"):
        raise ConfigError(f"calibration manifest needs a non-empty 'sources' list: {manifest}")
    paths: list[Path] = []
    for s in spec["sources"]:
        p = Path(s)
        paths += _expand(p if p.is_absolute() else manifest.parent / p)
    return build_calibration_set(paths, size, int(spec.get("count", 64)), int(spec.get("seed", 0)), [str(s) for s in spec["sources"]])


def from_training_images(dataset_root: str | Path, train_images: list[str], size: Any, count: int = 64, seed: int = 0) -> CalibrationSet:
    """Default: a seeded subset of the normal images the checkpoint was trained on."""
    root = Path(dataset_root)
    paths = [root / p for p in train_images] if train_images else list_images(root / "train" / "good")
    return build_calibration_set(paths, size, count, seed, [f"{root} (training normals)"])
