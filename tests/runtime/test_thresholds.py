"""One Thresholds value: an overridden image threshold moves the normalised score's 0.5 with it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from diffusionad_edge.runtime.backends.runner import Runner
from diffusionad_edge.runtime.bundle import Bundle
from diffusionad_edge.runtime.live import RunOptions, run_stream
from diffusionad_edge.runtime.predict import predict_files
from diffusionad_edge.runtime.sources import ImageFolderSource
from diffusionad_edge.runtime.thresholds import Thresholds, decision


class ConstantRunner(Runner):
    """Every image gets the score ``score`` (and a flat map of it)."""

    backend = "constant"

    def __init__(self, score: float):
        super().__init__(None)
        self.score = score

    def activate_impl(self) -> None:
        pass

    def infer_impl(self, batch):
        b, _, h, w = batch.shape
        return np.full((b, h, w), self.score, np.float32), np.full(b, self.score, np.float32)


BUNDLE_THRESHOLDS = {"image": 0.30, "pixel": 0.5, "normalisation": {"threshold": 0.30, "min": 0.1, "max": 0.9},
                     "source": "test"}


def _bundle(score: float) -> Bundle:
    meta = {"backend": "constant", "input": {"size": 16, "batch": 1}, "thresholds": BUNDLE_THRESHOLDS}
    return Bundle(Path("."), meta, ConstantRunner(score))


@pytest.mark.parametrize("value", [0.25, 0.62, 0.9])
def test_override_moves_the_decision_boundary_of_the_normalised_score(value):
    override = float(np.float32(value))  # a score the float32 graph can output exactly
    image = np.zeros((20, 20, 3), np.uint8)
    at = _bundle(override)
    at.override_thresholds(image=override)
    r = at.predict(image)
    assert r.score == pytest.approx(override)
    assert r.normalised_score == 0.5  # exactly, at the threshold in use
    assert r.is_anomalous and at.decision(r) == "NG"  # score >= threshold: NG, and normalised 0.5 agrees
    below, above = _bundle(np.nextafter(np.float32(override), np.float32(0))), _bundle(override + 0.01)
    for b in (below, above):
        b.override_thresholds(image=override)
    rb, ra = below.predict(image), above.predict(image)
    assert rb.normalised_score < 0.5 and not rb.is_anomalous and below.decision(rb) == "OK"
    assert ra.normalised_score > 0.5 and ra.is_anomalous


def test_without_override_the_bundles_threshold_is_the_boundary():
    r = _bundle(0.30).predict(np.zeros((8, 8, 3), np.uint8))
    assert r.normalised_score == pytest.approx(0.5) and r.is_anomalous


def test_override_through_dae_run_and_dae_predict(tmp_path):
    T = float(np.float32(0.55))
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((12, 12, 3), np.uint8))
    (folder / "._a.png").write_bytes(b"macOS resource fork")  # skipped, not reported unreadable
    events = []
    summary = run_stream(_bundle(T), str(folder), RunOptions(image_threshold=T), on_frame=events.append,
                         src=ImageFolderSource(str(folder)))
    assert summary.frames == 1 and not summary.unreadable
    assert events[0]["normalised_score"] == 0.5 and events[0]["decision"] == "NG" and events[0]["threshold"] == T
    bundle = _bundle(T)
    bundle.override_thresholds(image=T)
    report = predict_files(bundle, [folder / "a.png"], tmp_path / "out")
    assert report.rows[0]["normalised_score"] == 0.5 and report.rows[0]["decision"] == "NG"
    assert (tmp_path / "out" / "results.csv").read_text().splitlines()[0] == "path,score,normalised_score,decision,overlay"


def test_thresholds_round_trip_and_decision_string():
    thr = Thresholds.from_dict({**BUNDLE_THRESHOLDS, "normal_score_max": 0.2})
    assert thr.to_dict() == {**BUNDLE_THRESHOLDS, "normal_score_max": 0.2}
    assert Thresholds.from_dict(None).to_dict() is None and np.isnan(Thresholds().normalised(0.3))
    assert thr.override(pixel=0.7).image == 0.30 and thr.override(pixel=0.7).pixel == 0.7
    assert (decision(True), decision(False), decision(None)) == ("NG", "OK", None)
