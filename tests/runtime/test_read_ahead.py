"""ReadAhead: file frames decoded on a thread, in order, none dropped, errors and stops handed over."""

import threading
import time

import numpy as np
import pytest

from diffusionad_edge.runtime.sources import Frame, ReadAhead, VideoFileSource

from .videofix import write_plate_video


def _frames(n, fail_at=None, delay=0.0):
    for i in range(n):
        if i == fail_at:
            raise OSError(f"disk gone at {i}")
        time.sleep(delay)
        yield Frame(i, np.full((4, 4, 3), i % 256, np.uint8), time.monotonic())


def test_every_frame_in_order_from_a_thread():
    seen_threads = set()

    def tagged():
        for f in _frames(50):
            seen_threads.add(threading.current_thread().name)
            yield f

    ahead = ReadAhead(tagged(), depth=3)
    got = [f.index for f in ahead]
    ahead.close()
    assert got == list(range(50))
    assert seen_threads == {"read-ahead"}


def test_an_error_arrives_after_the_frames_before_it():
    ahead = ReadAhead(_frames(10, fail_at=6))
    got = []
    with pytest.raises(OSError, match="disk gone at 6"):
        for f in ahead:
            got.append(f.index)
    ahead.close()
    assert got == list(range(6))


def test_close_stops_a_reader_blocked_on_a_full_queue():
    ahead = ReadAhead(_frames(10**6), depth=2)
    first = next(iter(ahead))
    assert first.index == 0
    t0 = time.monotonic()
    ahead.close()
    assert time.monotonic() - t0 < 2.0
    assert not ahead._thread.is_alive()


def test_video_file_read_ahead_matches_direct_reading(tmp_path):
    path = write_plate_video(tmp_path / "v.mp4", 12)
    direct = [f.image.copy() for f in VideoFileSource(str(path)).frames()]
    src = VideoFileSource(str(path))
    ahead = ReadAhead(src.frames())
    via = [f.image for f in ahead]
    ahead.close()
    src.close()
    assert len(via) == len(direct) > 0
    assert all(np.array_equal(a, b) for a, b in zip(via, direct))


def test_prepare_runs_on_the_thread_and_its_errors_arrive_in_place():
    where = set()

    def prepare(frame):
        where.add(threading.current_thread().name)
        if frame.index == 4:
            raise ValueError("frame 4 does not fit the ROI")
        return frame.image.astype(np.float32) / 255

    ahead = ReadAhead(_frames(8), prepare=prepare)
    got = []
    with pytest.raises(ValueError, match="frame 4"):
        for f in ahead:
            assert f.prepared is not None and f.prepared.dtype == np.float32 and f.prepare_ms >= 0.0
            got.append(f.index)
    ahead.close()
    assert got == [0, 1, 2, 3] and where == {"read-ahead"}
