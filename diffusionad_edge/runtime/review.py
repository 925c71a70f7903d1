"""The review folder: frames an operator judged on the line, kept as plain files.

::

    REVIEW_DIR/
      good/<time>-<camera>-<frame>.png    the original frame (not the overlay), as the camera gave it
      good/<time>-<camera>-<frame>.json   its sidecar: verdict, score, thresholds, bundle id, camera, time, ...
      defect/<time>-<camera>-<frame>.png  the same for a confirmed defect
      defect/<time>-<camera>-<frame>.json

``<time>`` is UTC, ``20250611T101502.250Z`` (sorts as time, no ``:`` for other file systems),
``<camera>`` the camera's name with anything but letters, digits, ``_`` and ``.`` made ``_``, and
``<frame>`` the frame's index in its stream, six digits.

The live view's "good part" / "confirmed defect" buttons write it (:func:`save_review`);
``dae export BUNDLE --refit-threshold REVIEW_DIR`` reads it back (:func:`read_review`), and
``dae train --add-normals REVIEW_DIR/good`` trains on its good frames. Images an operator copies into
``good/`` or ``defect/`` by hand (any image format, no sidecar) count as reviewed too.

Nothing is ever overwritten: a file is written under a hidden temporary name and then *linked* to its
own name, which fails when the name is taken (so two writers, or a second click, never replace a
frame), and a frame already reviewed under either verdict is refused. The image is linked before its
sidecar: a reader never sees a sidecar without its image.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..data.mvtec import list_images
from ..errors import DaeError
from ..files import to_json

GOOD, DEFECT = "good", "defect"
#: the two verdicts, each a sub-folder of the review folder
VERDICTS = (GOOD, DEFECT)
#: sidecar format, written into each sidecar as ``"format"``
SIDECAR_FORMAT = "diffusionad_edge.review"
SIDECAR_VERSION = 1


class ReviewError(DaeError):
    """A review folder that cannot be written or read, or a frame that cannot be saved into it."""


def review_time(when: dt.datetime | None = None) -> str:
    """A time as the file names carry it: UTC, ``20250611T101502.250Z`` (milliseconds)."""
    when = (when or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return when.strftime("%Y%m%dT%H%M%S.") + f"{when.microsecond // 1000:03d}Z"


_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")


def frame_stem(time: str, camera: str, frame: int) -> str:
    """``<time>-<camera>-<frame>``: the name of a reviewed frame without its extension."""
    cam = _UNSAFE.sub("_", str(camera)).strip(".") or "camera"
    return f"{time}-{cam}-{int(frame):06d}"


def bundle_id(metadata: dict[str, Any], name: str | None = None) -> str:
    """What identifies the bundle that judged a frame: ``<name>@<first 12 digits of its metadata's
    sha256>`` (the integrity record: it changes with the thresholds, so a refit bundle has a new id);
    a checkpoint run as a bundle has no record and is named alone."""
    digest = ((metadata.get("integrity") or {}).get("sha256") or "")[:12]
    name = name or str((metadata.get("checkpoint") or {}).get("path") or "bundle")
    return f"{name}@{digest}" if digest else name


def check_review_dir(root: str | Path, create: bool = True) -> Path:
    """The review folder can be written: checked at start-up, so a click does not fail an hour later.
    ``create``: make it now, with ``good/`` and ``defect/``; otherwise (the live view's default folder,
    which a run that reviews nothing should not leave behind) a folder that does not exist yet is
    fine when the nearest folder above it that does can be written to (the first saved frame creates
    it). :class:`ReviewError` in one line naming the folder otherwise."""
    root = Path(root)
    try:
        if not create and not root.exists():
            above = next((p for p in root.absolute().parents if p.exists()), None)
            if above is None or not above.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
            _probe_write(above)
            return root
        for verdict in VERDICTS:
            (root / verdict).mkdir(parents=True, exist_ok=True)
            _probe_write(root / verdict)
    except OSError as exc:
        raise ReviewError(f"review folder {root} is not writable ({exc.strerror or exc})") from None
    return root


def _probe_write(folder: Path) -> None:
    """A file can be created in ``folder`` (OSError otherwise): a real write, as permissions, a
    read-only mount or an ACL all decide it."""
    fd, probe = tempfile.mkstemp(prefix=".dae-write-test-", dir=folder)
    os.close(fd)
    os.unlink(probe)


def _create_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, which must not exist: a temporary file in the same folder, then a
    hard link to the name (atomic, and refused when the name is taken: FileExistsError)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def create_new_file(path: str | Path, data: bytes) -> Path:
    """``data`` into a file that must not exist yet, atomically (:class:`ReviewError` when it does)."""
    path = Path(path)
    try:
        _create_new(path, data)
    except FileExistsError:
        raise ReviewError(f"{path} exists already: never overwritten") from None
    return path


@dataclass
class ReviewedFrame:
    """One frame of a review folder: its image, its verdict and its sidecar (None for an image
    copied in by hand)."""

    image: Path
    verdict: str
    sidecar: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.image.name

    @property
    def score(self) -> float | None:
        """The score the bundle gave it when it was reviewed (None without a sidecar)."""
        value = (self.sidecar or {}).get("score")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class Review:
    """What a review folder holds: the good frames and the confirmed defects, each sorted by name
    (that is, by time), and the files that were skipped with the reason."""

    root: Path
    good: list[ReviewedFrame] = field(default_factory=list)
    defect: list[ReviewedFrame] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.good) + len(self.defect)


def save_review(root: str | Path, verdict: str, image: np.ndarray, *, camera: str, frame: int, score: float | None,
                thresholds: dict[str, Any] | None, bundle: str, bgr: bool = True, decision: str | None = None,
                when: dt.datetime | None = None, extra: dict[str, Any] | None = None) -> ReviewedFrame:
    """Save one reviewed frame: the original frame ``image`` (``bgr``: BGR as cameras give it, else
    RGB; gray or colour, 8 or 16 bit) as ``<verdict>/<time>-<camera>-<frame>.png`` and its JSON
    sidecar. ``thresholds``: the image and pixel thresholds it was judged at; ``bundle``: the bundle's
    id (:func:`bundle_id`); ``decision``: what the bundle said (OK/NG); ``extra``: more sidecar keys.
    A frame already reviewed (this camera and frame index at this time, under either verdict) is
    refused, and no file is ever overwritten (:class:`ReviewError` in both cases)."""
    if verdict not in VERDICTS:
        raise ReviewError(f"verdict {verdict!r}: choose one of {', '.join(VERDICTS)}")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0 or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ReviewError(f"not an image: an array of shape {image.shape}")
    when = (when or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    time = review_time(when)
    stem = frame_stem(time, camera, frame)
    root = Path(root)
    for v in VERDICTS:
        if (root / v / f"{stem}.png").exists():
            raise ReviewError(f"frame {frame} of camera {camera} at {time} is already reviewed as {v}: {root / v / stem}.png")
    folder = root / verdict
    folder.mkdir(parents=True, exist_ok=True)
    pixels = image if bgr or image.ndim == 2 or image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(pixels))
    if not ok:
        raise ReviewError(f"could not encode frame {frame} of camera {camera} as PNG")
    thr = thresholds or {}
    sidecar = {
        "format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, "verdict": verdict,
        "time": when.isoformat(timespec="milliseconds"), "camera": str(camera), "frame": int(frame),
        "score": None if score is None else float(score), "decision": decision,
        "thresholds": {"image": thr.get("image"), "pixel": thr.get("pixel")},
        "bundle": bundle, "image": f"{stem}.png", "height": int(image.shape[0]), "width": int(image.shape[1]),
        **(extra or {}),
    }
    image_path = create_new_file(folder / f"{stem}.png", png.tobytes())
    create_new_file(folder / f"{stem}.json", (to_json(sidecar) + "\n").encode())
    return ReviewedFrame(image_path, verdict, json.loads(to_json(sidecar)))


def read_review(root: str | Path) -> Review:
    """A review folder read back: every image in ``good/`` and ``defect/`` with its sidecar when it has
    one. A missing folder is :class:`ReviewError`; a missing ``good/`` or ``defect/`` is empty; a
    sidecar that is not JSON is skipped with the reason (its image still counts)."""
    root = Path(root)
    if not root.is_dir():
        raise ReviewError(f"review folder not found: {root}")
    review = Review(root)
    for verdict in VERDICTS:
        folder = root / verdict
        if not folder.is_dir():
            continue
        for image in list_images(folder):  # the verdict folder itself, not what lies below it
            sidecar = None
            side = image.with_suffix(".json")
            if side.is_file():
                try:
                    sidecar = json.loads(side.read_text())
                except (OSError, ValueError) as exc:
                    review.skipped.append(f"{side}: not a readable JSON sidecar ({exc}); its image counts without it")
                    sidecar = None
                if sidecar is not None and not isinstance(sidecar, dict):
                    review.skipped.append(f"{side}: not a JSON object; its image counts without it")
                    sidecar = None
            getattr(review, verdict).append(ReviewedFrame(image, verdict, sidecar))
    return review
