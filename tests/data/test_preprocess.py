import cv2
import numpy as np
import pytest

from diffusionad_edge.data.preprocess import (
    preprocess,
    read_image,
    read_mask,
    resize_image,
    to_chw_float,
    to_rgb,
)
from diffusionad_edge.errors import DaeError, DataError


def _write(path, arr):
    assert cv2.imwrite(str(path), arr)
    return path


def test_read_rgb_png_returns_rgb_order(tmp_path):
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 0] = 10  # blue
    bgr[..., 2] = 200  # red
    img = read_image(_write(tmp_path / "c.png", bgr))
    assert img.shape == (5, 7, 3) and img.dtype == np.uint8
    assert (img[..., 0] == 200).all() and (img[..., 2] == 10).all()


def test_read_gray_png(tmp_path):
    gray = np.arange(101 * 157, dtype=np.uint32).reshape(101, 157) % 256
    img = read_image(_write(tmp_path / "g.png", gray.astype(np.uint8)))
    assert img.shape == (101, 157, 3) and img.dtype == np.uint8
    assert (img[..., 0] == gray).all() and (img[..., 1] == gray).all()


def test_read_16bit_png_is_scaled(tmp_path):
    arr = np.array([[0, 257 * 100, 65535]], np.uint16)
    img = read_image(_write(tmp_path / "d.png", arr))
    assert img.dtype == np.uint8
    assert img[0, :, 0].tolist() == [0, 100, 255]


def test_read_bgra_png_drops_alpha(tmp_path):
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 1] = 77
    bgra[..., 3] = 0  # fully transparent, colour must survive anyway
    img = read_image(_write(tmp_path / "a.png", bgra))
    assert img.shape == (4, 4, 3)
    assert (img[..., 1] == 77).all() and (img[..., 0] == 0).all()


def test_read_jpeg_and_tiff(tmp_path):
    arr = np.full((8, 9, 3), 128, np.uint8)
    assert read_image(_write(tmp_path / "x.jpg", arr)).shape == (8, 9, 3)
    assert read_image(_write(tmp_path / "x.tiff", arr)).shape == (8, 9, 3)


def test_read_corrupt_file_raises_data_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(DataError, match="cannot read image: .*bad.png"):
        read_image(bad)


def test_read_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="cannot read image: .*nope.png"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty.png"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(DaeError):  # a folder is not an image either
        read_image(tmp_path)


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((6, 5), np.uint8),
        np.zeros((6, 5, 1), np.uint8),
        np.zeros((6, 5, 2), np.uint8),
        np.zeros((6, 5, 3), np.uint8),
        np.zeros((6, 5, 4), np.uint8),
        np.zeros((6, 5, 3), np.uint16),
        np.zeros((6, 5), np.float32),
        np.zeros((6, 5, 3), np.float64),
    ],
)
def test_to_rgb_shapes(frame):
    out = to_rgb(frame)
    assert out.shape == (6, 5, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_to_rgb_channel_order_and_scaling():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255
    assert to_rgb(bgr, bgr=True)[0, 0].tolist() == [0, 0, 255]
    assert to_rgb(bgr, bgr=False)[0, 0].tolist() == [255, 0, 0]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 9
    assert to_rgb(rgba, bgr=False)[0, 0].tolist() == [9, 0, 0]
    assert to_rgb(np.full((2, 2), 65535, np.uint16))[0, 0].tolist() == [255, 255, 255]
    assert to_rgb(np.full((2, 2), 0.5, np.float32))[0, 0].tolist() == [128, 128, 128]
    assert to_rgb(np.full((2, 2), 7.0, np.float32))[0, 0].tolist() == [255, 255, 255]  # clipped


@pytest.mark.parametrize(
    "frame",
    [np.zeros((4,), np.uint8), np.zeros((4, 4, 5), np.uint8), np.zeros((2, 2, 2, 3), np.uint8),
     np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 3), np.int64)],
)
def test_to_rgb_rejects_unsupported(frame):
    with pytest.raises(DataError):
        to_rgb(frame)


def test_resize_image_both_directions():
    big = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    assert resize_image(big, 64).shape == (64, 64, 3)
    assert resize_image(big, 512).shape == (512, 512, 3)
    assert resize_image(big, 256).shape == (256, 256, 3)  # mixed: one axis grows
    same = resize_image(big[:64, :64], 64)
    assert np.array_equal(same, big[:64, :64])
    # deterministic
    assert np.array_equal(resize_image(big, 97), resize_image(big, 97))


def test_preprocess_shape_range_dtype():
    img = np.random.default_rng(1).integers(0, 256, (101, 157, 3), dtype=np.uint8)
    img[0, 0] = 0
    img[-1, -1] = 255
    x = preprocess(img, 64)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    full = to_chw_float(img)
    assert full.shape == (3, 101, 157)
    assert full[:, 0, 0].tolist() == [0.0, 0.0, 0.0] and full[0, -1, -1] == 1.0
    assert np.allclose(full[1], img[..., 1] / 255.0)


def test_to_chw_float_rejects_non_uint8():
    with pytest.raises(DataError):
        to_chw_float(np.zeros((4, 4, 3), np.float32))


def test_read_mask_binary_resize_and_size_check(tmp_path):
    m = np.zeros((40, 60), np.uint8)
    m[10:20, 30:50] = 255
    m[0, 0] = 100  # below 128: background
    p = _write(tmp_path / "m.png", m)
    mask = read_mask(p)
    assert mask.dtype == np.float32 and mask.shape == (40, 60)
    assert set(np.unique(mask).tolist()) == {0.0, 1.0} and mask.sum() == 200
    small = read_mask(p, size=16)
    assert small.shape == (16, 16) and set(np.unique(small).tolist()) <= {0.0, 1.0}
    assert read_mask(p, expected_hw=(40, 60)).shape == (40, 60)
    with pytest.raises(DataError, match=r"mask size 40x60 differs from image size 41x60: .*m.png"):
        read_mask(p, expected_hw=(41, 60))


def test_read_mask_accepts_label_maps_and_colour(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[2:4, 2:4] = 1
    assert read_mask(_write(tmp_path / "l.png", labels)).sum() == 4
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[:4] = 255
    assert read_mask(_write(tmp_path / "c.png", colour)).sum() == 32
