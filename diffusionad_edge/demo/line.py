"""The demo's 'production line': a short video of the test images, and the decisions a ``dae run``
made on it scored against the frames' labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.mvtec import MVTecCategory


def make_line_video(dataset: MVTecCategory, path: Path, fps: float = 5.0) -> tuple[Path, list[bool]]:
    """A short 'production line' video: the test images in a seeded order (good and defective),
    and which frames are defective. Lossless (FFV1), as an industrial camera delivers raw frames:
    a lossy codec's block artefacts are themselves a kind of anomaly and raise the scores of good parts."""
    import cv2
    import numpy as np

    samples = list(dataset.test_samples)
    order = np.random.default_rng(0).permutation(len(samples))[:30]
    first = cv2.imread(str(samples[order[0]].image_path))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path} with the FFV1 codec")
    for i in order:
        writer.write(cv2.resize(cv2.imread(str(samples[i].image_path)), (w, h)))
    writer.release()
    return path, [bool(samples[i].is_anomalous) for i in order]


@dataclass
class LineVerdict:
    """The decisions of a ``dae run`` on the line video against the frames' labels, frame numbers per case."""

    caught: list[int]  # defective frames called NG
    missed: list[int]  # defective frames called OK
    false_alarms: list[int]  # good frames called NG
    good_ok: int  # good frames called OK
    threshold: float
    source: str

    def __str__(self) -> str:
        defective, good = len(self.caught) + len(self.missed), len(self.false_alarms) + self.good_ok
        return (f"caught {len(self.caught)} of {defective} defective frames, missed {len(self.missed)}; "
                f"false alarms on {len(self.false_alarms)} of {good} good frames "
                f"(image threshold {self.threshold:.3g}, from {self.source})")


def score_decisions(events: Path, defective: list[bool], thresholds: dict[str, Any]) -> LineVerdict:
    """How the decisions of a ``dae run`` on the line video compare with the frames' labels."""
    decisions = [json.loads(line)["decision"] == "NG" for line in events.read_text().splitlines()]
    pairs = list(enumerate(zip(decisions, defective)))
    return LineVerdict(caught=[i for i, (d, t) in pairs if d and t], missed=[i for i, (d, t) in pairs if not d and t],
                       false_alarms=[i for i, (d, t) in pairs if d and not t], good_ok=sum(not d and not t for _, (d, t) in pairs),
                       threshold=float(thresholds["image"]), source=str(thresholds["source"]))
