"""The review folder: reviewed frames written as PNG + JSON sidecar, never overwritten, read back."""

import datetime as dt
import json
import threading

import cv2
import numpy as np
import pytest

from diffusionad_edge.runtime.review import (
    DEFECT,
    GOOD,
    ReviewError,
    bundle_id,
    check_review_dir,
    create_new_file,
    frame_stem,
    read_review,
    review_time,
    save_review,
)

WHEN = dt.datetime(2025, 6, 11, 10, 15, 2, 250_000, tzinfo=dt.timezone.utc)
THR = {"image": 0.42, "pixel": 0.61}


def _frame(seed=0, shape=(48, 64, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_a_reviewed_frame_is_its_original_pixels_and_a_sidecar(tmp_path):
    bgr = _frame()
    saved = save_review(tmp_path, GOOD, bgr, camera="top cam/1", frame=123, score=0.51, thresholds=THR, bundle="b@0123456789ab",
                        decision="NG", when=WHEN)
    assert saved.image == tmp_path / "good" / "20250611T101502.250Z-top_cam_1-000123.png"
    assert np.array_equal(cv2.imread(str(saved.image), cv2.IMREAD_UNCHANGED), bgr)  # the frame itself, losslessly
    side = json.loads(saved.image.with_suffix(".json").read_text())
    assert side["verdict"] == "good" and side["camera"] == "top cam/1" and side["frame"] == 123
    assert side["score"] == 0.51 and side["thresholds"] == THR and side["bundle"] == "b@0123456789ab" and side["decision"] == "NG"
    assert side["time"] == "2025-06-11T10:15:02.250+00:00" and side["image"] == saved.image.name
    assert (side["height"], side["width"]) == (48, 64)
    # an RGB frame is stored as the same picture (PNG files are BGR to OpenCV)
    rgb = save_review(tmp_path, DEFECT, bgr[..., ::-1], bgr=False, camera="c", frame=1, score=None, thresholds=None, bundle="b",
                      when=WHEN)
    assert np.array_equal(cv2.imread(str(rgb.image)), bgr)
    assert rgb.image.parent.name == "defect" and rgb.score is None


def test_never_overwrites_and_one_verdict_per_frame(tmp_path):
    first = save_review(tmp_path, GOOD, _frame(0), camera="c", frame=7, score=0.1, thresholds=THR, bundle="b", when=WHEN)
    before = first.image.read_bytes()
    for verdict in (GOOD, DEFECT):  # a second click, or the other button, on the same frame
        with pytest.raises(ReviewError, match="already reviewed as good"):
            save_review(tmp_path, verdict, _frame(1), camera="c", frame=7, score=0.9, thresholds=THR, bundle="b", when=WHEN)
    assert first.image.read_bytes() == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["20250611T101502.250Z-c-000007.json", "20250611T101502.250Z-c-000007.png",
                                                           "good"]
    with pytest.raises(ReviewError, match="exists already"):
        create_new_file(first.image, b"other")
    assert first.image.read_bytes() == before
    with pytest.raises(ReviewError, match="verdict 'maybe'"):
        save_review(tmp_path, "maybe", _frame(), camera="c", frame=8, score=0.1, thresholds=THR, bundle="b")
    with pytest.raises(ReviewError, match="not an image"):
        save_review(tmp_path, GOOD, np.zeros((4, 4, 7), np.uint8), camera="c", frame=8, score=0.1, thresholds=THR, bundle="b")


def test_two_writers_of_one_name_one_wins_whole(tmp_path):
    """Linking a finished file to its name is atomic: of writers racing for one name exactly one wins,
    and the file holds that writer's bytes entirely."""
    target = tmp_path / "x.png"
    wins, losses = [], []

    def write(i):
        try:
            create_new_file(target, bytes([i]) * 100_000)
            wins.append(i)
        except ReviewError:
            losses.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    assert target.read_bytes() == bytes([wins[0]]) * 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary file left


def test_read_back_with_hand_copied_images_and_broken_sidecars(tmp_path):
    check_review_dir(tmp_path)
    for i in range(3):
        save_review(tmp_path, GOOD, _frame(i), camera="c", frame=i, score=0.1 * i, thresholds=THR, bundle="b",
                    when=WHEN + dt.timedelta(seconds=i))
    save_review(tmp_path, DEFECT, _frame(9), camera="c", frame=9, score=0.9, thresholds=THR, bundle="b", when=WHEN)
    cv2.imwrite(str(tmp_path / "good" / "copied_by_hand.jpg"), _frame(5))  # an operator's own image: no sidecar
    cv2.imwrite(str(tmp_path / "good" / "broken.png"), _frame(6))
    (tmp_path / "good" / "broken.json").write_text("{not json")
    (tmp_path / "good" / "notes.txt").write_text("ignored")
    (tmp_path / "good" / "old").mkdir()
    cv2.imwrite(str(tmp_path / "good" / "old" / "below.png"), _frame(7))  # only the verdict folder itself counts
    review = read_review(tmp_path)
    assert [f.name for f in review.good] == ["20250611T101502.250Z-c-000000.png", "20250611T101503.250Z-c-000001.png",
                                             "20250611T101504.250Z-c-000002.png", "broken.png", "copied_by_hand.jpg"]
    assert [f.score for f in review.good] == [0.0, 0.1, 0.2, None, None]
    assert [f.name for f in review.defect] == ["20250611T101502.250Z-c-000009.png"] and review.defect[0].score == 0.9
    assert len(review) == 6 and len(review.skipped) == 1 and "broken.json" in review.skipped[0]
    with pytest.raises(ReviewError, match="review folder not found"):
        read_review(tmp_path / "missing")
    assert read_review(tmp_path / "good").good == []  # a folder without good/: nothing reviewed good


def test_review_dir_checked_at_start_up(tmp_path):
    root = check_review_dir(tmp_path / "review")
    assert (root / "good").is_dir() and (root / "defect").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReviewError, match=r"review folder .*file/review is not writable"):
        check_review_dir(tmp_path / "file" / "review")


def test_names_and_bundle_id():
    assert review_time(WHEN) == "20250611T101502.250Z"
    assert frame_stem("T", "..", 3) == "T-camera-000003" and frame_stem("T", "a-b c", 12) == "T-a_b_c-000012"
    assert bundle_id({"integrity": {"sha256": "ab" * 32}}, "bottle") == "bottle@abababababab"
    assert bundle_id({"checkpoint": {"path": "runs/m.pt"}}) == "runs/m.pt"
