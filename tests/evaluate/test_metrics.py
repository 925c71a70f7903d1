import math

import numpy as np
import pytest

from diffusionad_edge.evaluate.metrics import aupro, image_auroc, pixel_ap, pixel_auroc


def test_aupro_hand_computed():
    # One image, 1x4 pixels: a 2-pixel defect region (pixels 0,1) and 2 normal pixels (2,3).
    masks = np.array([[[1, 1, 0, 0]]], dtype=bool)
    maps = np.array([[[0.9, 0.5, 0.7, 0.1]]])
    # Thresholds (descending): 0.9 -> PRO 0.5, FPR 0; 0.7 -> PRO 0.5, FPR 0.5; ...
    # Up to FPR 0.3 the curve is the segment (0, 0.5)-(0.3, 0.5) => area 0.15 -> normalised 0.5.
    assert aupro(masks, maps) == pytest.approx(0.5)


def test_aupro_two_regions_weighted_equally():
    # Two regions of different size in two images; the small one is found first.
    masks = np.zeros((2, 1, 6), dtype=bool)
    masks[0, 0, 0] = True  # region A: 1 pixel
    masks[1, 0, 0:3] = True  # region B: 3 pixels
    maps = np.zeros((2, 1, 6))
    maps[0, 0, 0] = 1.0  # A fully detected at the top threshold
    maps[1, 0, 0:3] = [0.8, 0.8, 0.8]
    maps[0, 0, 1:] = [0.9, 0.0, 0.0, 0.0, 0.0]  # one normal pixel above region B
    maps[1, 0, 3:] = 0.0
    # Normal pixels: 5 + 3 = 8. Threshold 1.0: PRO 0.5, FPR 0. Threshold 0.9: PRO 0.5, FPR 1/8.
    # Threshold 0.8: PRO 1.0, FPR 1/8. Next threshold 0: FPR 1.
    # Area to 0.3: 0.5*0.125 + 1.0*(0.3-0.125) = 0.0625 + 0.175 = 0.2375 -> /0.3
    assert aupro(masks, maps) == pytest.approx(0.2375 / 0.3)


def test_perfect_and_nan_cases():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, :2, :2] = True
    maps = masks.astype(float)
    assert aupro(masks, maps) == pytest.approx(1.0)
    assert pixel_auroc(masks, maps) == pytest.approx(1.0)
    assert pixel_ap(masks, maps) == pytest.approx(1.0)
    assert math.isnan(aupro(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2))))
    assert math.isnan(image_auroc(np.array([0, 0]), np.array([0.1, 0.2])))
    assert image_auroc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.3])) == pytest.approx(1.0)


def test_noise_study_fixed_is_repeatable_fresh_jitters(tiny_checkpoint, tiny_dataset):
    from diffusionad_edge.evaluate.noise_study import noise_study
    from diffusionad_edge.train.checkpoint import load_model

    model, _ = load_model(tiny_checkpoint)
    a = noise_study(model, tiny_dataset, repeats=2, limit=6)
    b = noise_study(model, tiny_dataset, repeats=2, limit=6)
    assert a["fixed_noise"] == b["fixed_noise"]
    assert a["images"] == 6 and a["score_jitter_std_max"] > 0
