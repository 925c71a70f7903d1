"""The live page's review buttons: an operator's verdict on a frame, saved into the review folder.

"good part" / "confirmed defect" under an NG thumbnail, and "save current frame as good part" on a
camera's card, send ``POST /review``; :class:`LineReview` finds the original frame the live state
holds (never the overlay), writes it with its sidecar through :func:`~..review.save_review`, and
counts what was saved and what was refused for ``/stats``, ``/metrics`` and the MQTT status.

A click is refused, with nothing written, when the frame is no longer held (only the last NG
thumbnails' frames are kept), when that frame was already reviewed in this run (under either
verdict: a double click, or two operators), or when the file cannot be written.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ...paths import check_apart
from ..bundle import Bundle
from ..review import VERDICTS, ReviewError, bundle_id, check_review_dir, save_review
from .livestate import HeldFrame, LiveState

#: reviewed (camera, frame) pairs remembered to refuse a second verdict on the same frame
_REMEMBERED = 4096


class ReviewRefused(Exception):
    """A click that saves nothing: ``status`` (the HTTP answer) and one line of ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class LineReview:
    """Review on the line for one run: the folder, the bundle that judged, and the counts.

    ``root``: the review folder, checked (created, written to) here, at start-up; ``bundle``: the
    judging bundle's id (:func:`~..review.bundle_id`); ``thresholds``: the image and pixel thresholds
    the run decides with (written into every sidecar)."""

    def __init__(self, root: str | Path, bundle: str, thresholds: dict[str, Any]):
        self.root = check_review_dir(root, create=False)
        self.bundle, self.thresholds = bundle, dict(thresholds)
        self.counts = {v: 0 for v in VERDICTS}
        self.refused = 0
        self._reviewed: OrderedDict[tuple[str, int], tuple[str, Path]] = OrderedDict()
        self._lock = threading.Lock()

    def stats(self) -> dict[str, Any]:
        """The review section of ``/stats`` and of the MQTT status."""
        with self._lock:
            return {"dir": str(self.root), **self.counts, "refused": self.refused}

    def review_thumbnail(self, state: LiveState, thumb_id: int, verdict: str) -> dict[str, Any]:
        """Save the original frame behind NG thumbnail ``thumb_id`` under ``verdict``."""
        held = state.held_thumbnail(thumb_id)
        if held is None:
            self._refuse()
            raise ReviewRefused(HTTPStatus.GONE, f"that frame is no longer held (only the last {state.thumbnails} NG frames "
                                "are kept): nothing written")
        saved = self._save(held, verdict)
        state.mark_reviewed(thumb_id, verdict)
        return saved

    def review_current(self, state: LiveState, camera: str, verdict: str) -> dict[str, Any]:
        """Save ``camera``'s newest frame under ``verdict`` (an OK frame that looked close)."""
        if camera not in state.camera_names:
            self._refuse()
            raise ReviewRefused(HTTPStatus.NOT_FOUND, f"no camera {camera!r}: nothing written")
        held = state.held_current(camera)
        if held is None:
            self._refuse()
            raise ReviewRefused(HTTPStatus.GONE, f"no frame from {camera!r} yet: nothing written")
        return self._save(held, verdict)

    def _refuse(self) -> None:
        with self._lock:
            self.refused += 1

    def _save(self, held: HeldFrame, verdict: str) -> dict[str, Any]:
        if verdict not in VERDICTS:
            self._refuse()
            raise ReviewRefused(HTTPStatus.BAD_REQUEST, f"verdict {verdict!r}: choose one of {', '.join(VERDICTS)}")
        key = (held.camera, held.frame)
        # The lock spans the write: two clicks on one frame cannot both pass the check.
        with self._lock:
            if key in self._reviewed:
                self.refused += 1
                earlier, path = self._reviewed[key]
                raise ReviewRefused(HTTPStatus.CONFLICT, f"frame {held.frame} of {held.camera} is already reviewed as {earlier} "
                                    f"({path.name}): nothing written")
            try:
                saved = save_review(self.root, verdict, held.image, camera=held.camera, frame=held.frame, score=held.score,
                                    thresholds=self.thresholds, bundle=self.bundle, bgr=held.bgr, decision=held.decision)
            except ReviewError as exc:
                self.refused += 1
                raise ReviewRefused(HTTPStatus.CONFLICT, str(exc)) from None
            except OSError as exc:  # a full disk, a folder removed under the run
                self.refused += 1
                raise ReviewRefused(HTTPStatus.INTERNAL_SERVER_ERROR,
                                    f"could not write into {self.root / verdict}: {exc.strerror or exc}") from None
            self.counts[verdict] += 1
            self._reviewed[key] = (verdict, saved.image)
            while len(self._reviewed) > _REMEMBERED:
                self._reviewed.popitem(last=False)
            counts = dict(self.counts)
        return {"saved": str(saved.image), "verdict": verdict, "camera": held.camera, "frame": held.frame,
                "score": held.score, "counts": counts}


def check_line_review(review_dir: str | Path | None, inputs: Any = ()) -> Path | None:
    """At start-up, before the model or a source opens: the review folder is none of the run's
    ``inputs`` (``(description, path)`` pairs: a folder a source reads must not get the saved frames)
    and can be written (it is created by the first saved frame: a run that reviews nothing leaves no
    folder behind). One-line errors otherwise."""
    if review_dir is None:
        return None
    check_apart(review_dir, "review folder (--review-dir)", inputs)
    return check_review_dir(review_dir, create=False)


def line_review(review_dir: Path | None, bundle: Bundle, model: str | Path) -> LineReview | None:
    """The run's :class:`LineReview` for the open ``bundle`` (None when review is off)."""
    if review_dir is None:
        return None
    return LineReview(review_dir, bundle_id(bundle.metadata, Path(model).name),
                      {"image": bundle.image_threshold, "pixel": bundle.pixel_threshold})
