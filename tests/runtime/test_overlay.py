"""Overlays show the part: only the region above the pixel threshold is painted, the banner is legible."""

import cv2
import numpy as np

from diffusionad_edge.data.builtin import generate_dataset
from diffusionad_edge.data.mvtec import MVTecCategory
from diffusionad_edge.runtime.overlay import banner_height, draw_overlay


def _part(tmp_path):
    generate_dataset(tmp_path, n_train=1, n_test_good=1, n_test_per_defect=1, size=128, seed=3)
    ds = MVTecCategory(tmp_path, "surface")
    return cv2.imread(str(ds.test_samples[0].image_path))


def test_the_image_is_unchanged_where_the_map_is_below_the_threshold(tmp_path):
    frame = _part(tmp_path)
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[0:64, 0:64]
    amap = np.exp(-((yy - 40) ** 2 + (xx - 30) ** 2) / 60.0).astype(np.float32) * 0.9 + 0.05  # one blob, low elsewhere
    thr = 0.4
    out = draw_overlay(frame, amap, amap >= thr, score=0.81, is_anomalous=True, threshold=0.5, pixel_threshold=thr)
    assert out.shape == frame.shape and out.dtype == frame.dtype
    region = cv2.resize((amap >= thr).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    below_banner = np.zeros((h, w), bool)
    below_banner[banner_height(h):] = True
    outside = ~region & below_banner
    assert np.array_equal(out[outside], frame[outside])  # the part, untouched
    inside = region & below_banner
    assert inside.any() and np.abs(out[inside].astype(int) - frame[inside].astype(int)).mean() > 20  # painted
    # The banner is dark with a red (NG) chip at the left.
    chip = out[2 : banner_height(h) - 2, 2:8].reshape(-1, 3).mean(0)
    assert chip[2] > 150 and chip[0] < 100


def test_nothing_above_the_threshold_leaves_the_whole_part_visible(tmp_path):
    frame = _part(tmp_path)
    amap = np.full((64, 64), 0.2, np.float32)
    out = draw_overlay(frame, amap, amap >= 0.5, score=0.12, is_anomalous=False, threshold=0.5, pixel_threshold=0.5)
    b = banner_height(frame.shape[0])
    assert np.array_equal(out[b:], frame[b:])
    chip = out[2 : b - 2, 2:8].reshape(-1, 3).mean(0)
    assert chip[1] > 120 and chip[2] < 100  # green OK
