import cv2
import numpy as np
import pytest

from diffusionad_edge.data.foreground import estimate_foreground, foreground_for
from diffusionad_edge.data.materials import MATERIALS, make_material
from diffusionad_edge.errors import DaeError, DataError

S = 128


def _disc(bright_on_dark: bool, noise=6.0):
    truth = np.zeros((S, S), np.uint8)
    cv2.circle(truth, (70, 58), 36, 1, -1)
    bg, fg = (25, 210) if bright_on_dark else (215, 35)
    img = np.where(truth[..., None] > 0, np.array([fg, fg - 20, fg - 40]), bg).astype(np.float32)
    img += np.random.default_rng(0).normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth.astype(bool)


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("bright_on_dark", [True, False])
def test_estimate_finds_disc_either_polarity(bright_on_dark):
    img, truth = _disc(bright_on_dark)
    fg = estimate_foreground(img)
    assert fg.dtype == bool and fg.shape == (S, S)
    assert _iou(fg, truth) > 0.8
    for mode in ("object", "auto"):
        assert _iou(foreground_for(img, mode), truth) > 0.8


def test_holes_are_filled_and_specks_dropped():
    img, truth = _disc(True, noise=0)
    img[55:62, 65:75] = 25  # a dark hole inside the object
    img[5:7, 5:7] = 210  # a bright speck on the background
    fg = estimate_foreground(img)
    assert fg[58, 70] and not fg[6, 6]
    assert _iou(fg, truth) > 0.9


def test_texture_mode_and_fallbacks():
    img, _ = _disc(True)
    assert foreground_for(img, "texture").all()
    flat = np.full((S, S, 3), 90, np.uint8)
    assert foreground_for(flat, "object").all() and foreground_for(flat, "auto").all()
    tiny = np.full((S, S, 3), 20, np.uint8)
    cv2.circle(tiny, (60, 60), 5, (200, 200, 200), -1)  # < 5% of the image
    assert foreground_for(tiny, "object").all()


@pytest.mark.parametrize("category", sorted(MATERIALS))
def test_auto_treats_builtin_textures_as_whole_image(category):
    # A lighting gradient across a texture must not be mistaken for an object.
    rng = np.random.default_rng(0)
    mat = make_material(rng)
    for _ in range(3):
        img = (MATERIALS[category](S, mat, rng) * 255).astype(np.uint8)
        assert foreground_for(img, "auto").all()


def test_user_mask_wins_and_is_checked():
    img, truth = _disc(True)
    user = np.zeros((S, S), np.uint8)
    user[:, :10] = 255
    assert np.array_equal(foreground_for(img, "object", user_mask=user), user > 0)
    assert np.array_equal(foreground_for(img, "texture", user_mask=user > 0), user > 0)
    with pytest.raises(DataError):
        foreground_for(img, "auto", user_mask=np.ones((S, S - 1), bool))
    with pytest.raises(DaeError):
        foreground_for(img, "blobs")
