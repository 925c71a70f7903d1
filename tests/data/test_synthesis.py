import cv2
import numpy as np
import pytest

from diffusionad_edge.data.synthesis import AnomalySynthesizer
from diffusionad_edge.errors import DaeError, DataError

S = 64


def _image(seed=1):
    return np.random.default_rng(seed).integers(0, 256, (S, S, 3), dtype=np.uint8)


def _left_half():
    fg = np.zeros((S, S), bool)
    fg[:, : S // 2] = True
    return fg


def _check(img, out, mask, fg=None):
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert mask.dtype == np.float32 and mask.shape == img.shape[:2]
    assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
    assert mask.sum() > 0
    if fg is not None:
        assert not mask[~fg].any()
    outside = mask == 0
    assert np.array_equal(out[outside], img[outside])  # bit-exact outside the mask
    assert not np.array_equal(out, img)


def test_masks_binary_nonempty_inside_foreground_and_exact_outside():
    synth = AnomalySynthesizer()
    img, fg = _image(), _left_half()
    rng = np.random.default_rng(0)
    for _ in range(25):
        out, mask = synth.synthesize(img, rng, foreground=fg)
        _check(img, out, mask, fg)


@pytest.mark.parametrize("mode", ["auto", "object", "texture"])
def test_modes_without_foreground_argument(mode):
    synth = AnomalySynthesizer(foreground_mode=mode)
    img = _image(2)
    rng = np.random.default_rng(3)
    for _ in range(5):
        out, mask = synth.synthesize(img, rng)
        _check(img, out, mask)


def test_synthesis_is_deterministic_for_a_seeded_generator():
    synth = AnomalySynthesizer()
    img = _image()
    a = synth.synthesize(img, np.random.default_rng(5), foreground=_left_half())
    b = synth.synthesize(img, np.random.default_rng(5), foreground=_left_half())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_tiny_foreground_falls_back_to_an_ellipse():
    fg = np.zeros((S, S), bool)
    fg[30, 40] = True
    img = np.zeros((S, S, 3), np.uint8)
    out, mask = AnomalySynthesizer(max_tries=1).synthesize(img, np.random.default_rng(0), foreground=fg)
    assert mask.sum() == 1 and mask[30, 40] == 1
    assert np.array_equal(out[mask == 0], img[mask == 0])


def test_empty_foreground_means_whole_image():
    img = _image()
    out, mask = AnomalySynthesizer().synthesize(img, np.random.default_rng(0), foreground=np.zeros((S, S), bool))
    _check(img, out, mask)


def test_textures_dir_recursive(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "dtd/banded").mkdir(parents=True)
    (tmp_path / "dtd/dotted").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "dtd/banded/a.jpg"), rng.integers(0, 256, (90, 70, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "dtd/dotted/b.png"), rng.integers(0, 256, (40, 120), dtype=np.uint8))
    (tmp_path / "dtd/labels.txt").write_text("not an image")
    synth = AnomalySynthesizer(tmp_path / "dtd", foreground_mode="texture")
    assert [p.name for p in synth.texture_paths] == ["a.jpg", "b.png"]
    img = np.full((S, S, 3), 128, np.uint8)
    for _ in range(6):
        out, mask = synth.synthesize(img, rng)
        _check(img, out, mask)
    # object foreground with textures: self-augmentation half the time, still valid
    obj = AnomalySynthesizer(str(tmp_path / "dtd"), foreground_mode="object")
    for _ in range(6):
        out, mask = obj.synthesize(_image(), rng, foreground=_left_half())
        _check(_image(), out, mask, _left_half())


def test_textures_dir_missing_or_empty_raises(tmp_path):
    with pytest.raises(DataError, match="textures folder not found: .*missing"):
        AnomalySynthesizer(tmp_path / "missing")
    (tmp_path / "empty/sub").mkdir(parents=True)
    (tmp_path / "empty/sub/readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images found in textures folder: .*empty"):
        AnomalySynthesizer(tmp_path / "empty")


def test_invalid_arguments():
    with pytest.raises(DaeError):
        AnomalySynthesizer(foreground_mode="sometimes")
    with pytest.raises(DaeError):
        AnomalySynthesizer(beta_range=(0.9, 0.1))
    with pytest.raises(DataError):
        AnomalySynthesizer().synthesize(np.zeros((S, S), np.uint8), np.random.default_rng(0))
    with pytest.raises(DataError):
        AnomalySynthesizer().synthesize(_image(), np.random.default_rng(0), foreground=np.ones((S, S + 1), bool))
