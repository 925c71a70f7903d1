"""``dae export BUNDLE --refit-threshold REVIEW_DIR``: real tiny bundles (ONNX Runtime, OpenVINO), real
review folders, the bundle's own runner; the model files never change."""

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from diffusionad_edge.data.preprocess import read_image
from diffusionad_edge.export.pipeline import ExportOptions, export_bundle
from diffusionad_edge.interrupts import Interrupted, interrupt_guard
from diffusionad_edge.runtime.bundle import load_bundle, read_metadata, sha256
from diffusionad_edge.runtime.refit import RefitError, refit_thresholds
from diffusionad_edge.runtime.review import DEFECT, GOOD, ReviewError, save_review
from diffusionad_edge.runtime.thresholds import logit, normals_threshold

WHEN = dt.datetime(2025, 6, 11, 10, 0, 0, tzinfo=dt.timezone.utc)


def _export(ckpt, out, target, **kw):
    return export_bundle(ExportOptions(checkpoint=ckpt, target=target, out_dir=out, precision="fp32", input_size=64, **kw),
                         log=lambda m: None).bundle


@pytest.fixture(scope="module")
def tight_bundle(tiny_checkpoint, tmp_path_factory):
    """ONNX Runtime, thresholds by ``best-f1``: the OK/NG threshold just above the highest held-out normal,
    so that the barely trained tiny model flags some frames NG."""
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("refit") / "ort", "onnxruntime-cpu", threshold_rule="best-f1")


@pytest.fixture(scope="module")
def normals_bundle(tiny_checkpoint, tmp_path_factory):
    """OpenVINO, thresholds by the default ``normals`` rule."""
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("refit") / "ov", "openvino-cpu")


def _copy(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / bundle.name)


def _candidates(tiny_dataset):
    """Frames as a camera gives them (BGR): the tiny dataset's test images and a few plain ones."""
    frames = {f"test-{i}": read_image(s.image_path)[..., ::-1].copy() for i, s in enumerate(tiny_dataset.test_samples)}
    for name, value in (("white", 255), ("gray", 128), ("black", 0)):
        frames[name] = np.full((64, 64, 3), value, np.uint8)
    frames["noise"] = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return frames


def _review(root, verdict, frames, start=0, bundle="b"):
    for i, image in enumerate(frames):
        save_review(root, verdict, image, camera="cam", frame=start + i, score=None, thresholds=None, bundle=bundle, when=WHEN)


def _files(bundle):
    return {n: (bundle / n).read_bytes() for n in read_metadata(bundle)["files"]}


def test_a_frame_reviewed_good_stops_being_flagged(tight_bundle, tiny_dataset, tmp_path):
    bundle = _copy(tight_bundle, tmp_path)
    with load_bundle(bundle) as b:
        scored = sorted((b.predict(img, bgr=True).score, name) for name, img in _candidates(tiny_dataset).items())
        threshold = b.image_threshold
    flagged = [(s, n) for s, n in scored if s >= threshold]
    assert len({s for s, _ in flagged}) >= 2, (threshold, scored)  # frames the bundle flags NG, with different scores
    frames = _candidates(tiny_dataset)
    (_, good_name), (_, defect_name) = flagged[0], flagged[-1]  # the weakest NG was a good part; the strongest a defect
    review = tmp_path / "review"
    _review(review, GOOD, [frames[good_name]])
    _review(review, DEFECT, [frames[defect_name]], start=1)
    models, old_meta = _files(bundle), (bundle / "metadata.json").read_bytes()

    result = refit_thresholds(bundle, review, log=lambda m: None)

    with load_bundle(bundle) as b:  # verifies the checksums and the new integrity record
        assert not b.predict(frames[good_name], bgr=True).is_anomalous
        assert b.predict(frames[defect_name], bgr=True).is_anomalous  # the confirmed defect is still caught
        assert b.image_threshold > threshold
    assert [(f.path.name.endswith("000000.png"), f.verdict, f.old, f.new) for f in result.changed] == [(True, GOOD, "NG", "OK")]
    assert result.recall("old") == result.recall("new") == 1.0
    assert result.old["image"] == threshold and result.new["image"] > threshold
    # the model files are byte for byte what export wrote; the previous metadata is kept as it was
    assert _files(bundle) == models
    assert result.backup.parent == bundle and result.backup.name.startswith("metadata.json.") and result.backup.suffix == ".bak"
    assert result.backup.read_bytes() == old_meta
    meta = read_metadata(bundle)
    thr = meta["thresholds"]
    assert thr["rule_params"]["name"] == "best-f1"  # the rule that placed it at export
    assert thr["refit"]["good"] == 1 and thr["refit"]["defects"] == 1 and thr["refit"]["previous"]["image"] == threshold
    assert len(thr["scores"]["normal"]) == len(thr["refit"]["base"]["normal"]) + 1
    assert "reviewed good frames" in thr["source"]
    for key in ("files", "entry", "runtime_options", "input", "preprocessing", "checks"):  # nothing else changed
        assert meta[key] == json.loads(old_meta)[key]
    shutil.copyfile(result.backup, bundle / "metadata.json")  # undo: the backup is a whole, sealed metadata.json
    with load_bundle(bundle) as b:
        assert b.image_threshold == threshold and b.predict(frames[good_name], bgr=True).is_anomalous


def test_same_rule_with_recorded_normals_and_refit_twice_is_the_same(normals_bundle, tiny_dataset, tmp_path):
    """The ``normals`` rule over the recorded normals plus the reviewed ones, image and pixel thresholds;
    a second refit starts again from what export recorded (same folder: same thresholds)."""
    bundle = _copy(normals_bundle, tmp_path)
    before = read_metadata(bundle)["thresholds"]
    recorded, maxima = before["scores"]["normal"], before["pixel_rule"]["normal_map_max"]
    assert len(maxima) == len(recorded) == before["pixel_rule"]["normals"]
    frames = list(_candidates(tiny_dataset).values())[-4:]
    review = tmp_path / "review"
    _review(review, GOOD, frames)
    with load_bundle(bundle) as b:
        got = [b.predict(f, bgr=True) for f in frames]
    first = refit_thresholds(bundle, review, log=lambda m: None)
    image, params = normals_threshold(np.r_[recorded, [r.score for r in got]], before["rule_params"]["margin_sd"])
    pixel, _ = normals_threshold(np.r_[maxima, [r.anomaly_map.max() for r in got]], before["pixel_rule"]["margin_sd"])
    assert first.new["image"] == pytest.approx(image, rel=1e-6) and first.new["pixel"] == pytest.approx(pixel, rel=1e-6)
    assert first.new["rule_params"]["normals"] == len(recorded) + 4 == first.new["pixel_rule"]["normals"]
    # above every reviewed good frame by the rule's margin (in logits)
    assert logit(first.new["image"]) - logit(max(r.score for r in got)) >= params["margin_logit"] - 1e-6
    assert first.recall() is None
    second = refit_thresholds(bundle, review, log=lambda m: None)
    assert second.new["image"] == first.new["image"] and second.new["pixel"] == first.new["pixel"]
    assert second.new["refit"]["base"] == first.new["refit"]["base"]
    assert len(list(bundle.glob("metadata.json.*.bak"))) == 2  # each previous metadata kept, none overwritten
    assert second.old["image"] == first.new["image"]
    with load_bundle(bundle) as b:
        assert b.metadata["backend"] == "openvino" and b.image_threshold == first.new["image"]


def _unchanged(bundle):
    return {p.name: p.read_bytes() for p in bundle.iterdir()}


def test_no_good_frames_is_an_error_and_the_bundle_is_untouched(tight_bundle, tiny_dataset, tmp_path):
    bundle = _copy(tight_bundle, tmp_path)
    state = _unchanged(bundle)
    review = tmp_path / "review"
    (review / "good").mkdir(parents=True)
    _review(review, DEFECT, [np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(RefitError, match=r"no good frames in .*review/good"):
        refit_thresholds(bundle, review, log=lambda m: None)
    (review / "good" / "x.png").write_bytes(b"not a png")  # unreadable: skipped, and then there are none
    with pytest.raises(RefitError, match="none of the good frames .* could be read"):
        refit_thresholds(bundle, review, log=lambda m: None)
    with pytest.raises(ReviewError, match="review folder not found"):
        refit_thresholds(bundle, tmp_path / "missing", log=lambda m: None)
    assert _unchanged(bundle) == state
    # the command: one line, exit code 2, nothing written
    (review / "good" / "x.png").unlink()
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "export", str(bundle), "--refit-threshold", str(review)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [f"error: no good frames in {review / 'good'}: a refit places the thresholds above "
                                               "reviewed good parts; nothing written"]
    assert _unchanged(bundle) == state


def test_a_tampered_model_file_is_refused(tight_bundle, tmp_path):
    bundle = _copy(tight_bundle, tmp_path)
    _review(tmp_path / "review", GOOD, [np.zeros((64, 64, 3), np.uint8)])
    (bundle / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes() + b"x")
    state = _unchanged(bundle)
    with pytest.raises(Exception, match="checksum mismatch"):
        refit_thresholds(bundle, tmp_path / "review", log=lambda m: None)
    assert _unchanged(bundle) == state


def test_ctrl_c_while_scoring_leaves_the_bundle_as_it_was(tight_bundle, tmp_path):
    bundle = _copy(tight_bundle, tmp_path)
    state = _unchanged(bundle)
    review = tmp_path / "review"
    _review(review, GOOD, [np.full((64, 64, 3), v, np.uint8) for v in range(0, 250, 50)])
    seen = []

    def ctrl_c(i):  # Ctrl-C (a real SIGINT to this process) after the second frame
        seen.append(i)
        if i == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="bundle unchanged"):
        with interrupt_guard(f"interrupted; bundle unchanged: {bundle}", grace_s=120):
            refit_thresholds(bundle, review, log=lambda m: None, on_frame=ctrl_c)
    assert seen == [0, 1]  # stopped at the next frame
    assert _unchanged(bundle) == state


def test_ctrl_c_during_refit_command(tight_bundle, tmp_path):
    """The command as a user runs it: Ctrl-C while the frames are scored is one line, exit code 130,
    and the bundle (model files, metadata, no backup) as it was."""
    bundle = _copy(tight_bundle, tmp_path)
    state = _unchanged(bundle)
    review = tmp_path / "review"
    rng = np.random.default_rng(1)
    _review(review, GOOD, [rng.integers(0, 256, (384, 384, 3), dtype=np.uint8) for _ in range(150)])
    proc = subprocess.Popen([sys.executable, "-m", "diffusionad_edge.cli.main", "export", str(bundle), "--refit-threshold", str(review)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    line = ""
    while "scoring" not in line:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "ended before scoring"
        assert time.time() < deadline
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == f"interrupted; bundle unchanged: {bundle}"
    assert _unchanged(bundle) == state
    assert sha256(bundle / "model.onnx") == read_metadata(bundle)["files"]["model.onnx"]
