import numpy as np
import pytest

from diffusionad_edge.data.augment import AUGMENTATIONS, procedural_texture, random_augment, strip_shuffle
from diffusionad_edge.data.perlin import perlin_mask, perlin_noise


@pytest.mark.parametrize("shape,res", [((64, 64), (4, 4)), ((101, 157), (4, 8)), ((50, 77), (32, 1)), ((7, 9), (1, 1))])
def test_perlin_noise_any_shape(shape, res):
    n = perlin_noise(shape, res, np.random.default_rng(0))
    assert n.shape == shape and n.dtype == np.float32
    assert np.isfinite(n).all() and -1.01 <= n.min() and n.max() <= 1.01


def test_perlin_noise_is_seeded_and_varies():
    a = perlin_noise((32, 32), (4, 4), np.random.default_rng(1))
    b = perlin_noise((32, 32), (4, 4), np.random.default_rng(1))
    assert np.array_equal(a, b) and a.std() > 0.05


def test_perlin_mask_binary():
    rng = np.random.default_rng(0)
    nonempty = 0
    for shape in [(64, 64), (50, 77)] * 10:
        m = perlin_mask(shape, rng)
        assert m.shape == shape and m.dtype == np.float32
        assert set(np.unique(m).tolist()) <= {0.0, 1.0}
        nonempty += bool(m.any())
    assert nonempty >= 10


def test_random_augment_keeps_shape_and_dtype():
    img = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    rng = np.random.default_rng(1)
    for _ in range(20):
        out = random_augment(img, rng, n=3)
        assert out.shape == img.shape and out.dtype == np.uint8
    for op in AUGMENTATIONS:  # every op individually
        out = op(img, rng)
        assert out.shape == img.shape and out.dtype == np.uint8, op.__name__
    assert np.array_equal(random_augment(img, rng, n=0), img)


def test_strip_shuffle_is_a_permutation_of_strips():
    img = np.arange(32 * 24 * 3, dtype=np.uint32).reshape(32, 24, 3).astype(np.uint8)
    out = strip_shuffle(img, np.random.default_rng(0), n_strips=4)
    assert out.shape == img.shape and not np.array_equal(out, img)
    assert sorted(out.reshape(-1).tolist()) == sorted(img.reshape(-1).tolist())


def test_procedural_texture():
    rng = np.random.default_rng(0)
    for shape in [(64, 64), (33, 71, 3)]:
        tex = procedural_texture(shape, rng)
        assert tex.shape == (shape[0], shape[1], 3) and tex.dtype == np.uint8
        assert tex.std() > 1.0
