from pathlib import Path

import cv2
import numpy as np
import pytest

from diffusionad_edge.data.mvtec import MVTecCategory, TestSample, load_test_sample, split_train_val
from diffusionad_edge.errors import DaeError, DataError

H, W = 101, 157  # odd, non-square on purpose


def _gray(rng, h=H, w=W):
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


def _make_category(root: Path, name="tile", mask_hw=(H, W), n_train=4) -> Path:
    """A tiny grayscale MVTec-layout category with one defect type."""
    rng = np.random.default_rng(0)
    cat = root / name
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (cat / sub).mkdir(parents=True)
    for i in range(n_train):
        cv2.imwrite(str(cat / "train/good" / f"{i:03d}.png"), _gray(rng))
    (cat / "train/good/readme.txt").write_text("not an image")
    (cat / "train/good/._000.png").write_bytes(b"macOS resource fork")
    cv2.imwrite(str(cat / "test/good/000.png"), _gray(rng))
    for i in range(2):
        cv2.imwrite(str(cat / "test/crack" / f"{i:03d}.png"), _gray(rng))
        mask = np.zeros(mask_hw, np.uint8)
        mask[10:30, 20:60] = 255
        cv2.imwrite(str(cat / "ground_truth/crack" / f"{i:03d}_mask.png"), mask)
    return cat


def test_reads_category_with_and_without_category_argument(tmp_path):
    cat = _make_category(tmp_path)
    for ds in (MVTecCategory(tmp_path, "tile"), MVTecCategory(cat), MVTecCategory(str(cat))):
        assert ds.name == "tile" and ds.path == cat
        assert [p.name for p in ds.train_images] == ["000.png", "001.png", "002.png", "003.png"]
        assert ds.defect_types == ["crack"]
        assert ds.has_test
        assert [(s.defect_type, s.image_path.name) for s in ds.test_samples] == [
            ("crack", "000.png"), ("crack", "001.png"), ("good", "000.png"),
        ]
        crack = ds.test_samples[0]
        assert crack.is_anomalous and crack.mask_path == cat / "ground_truth/crack/000_mask.png"
        good = ds.test_samples[-1]
        assert not good.is_anomalous and good.mask_path is None


def test_load_test_sample_grayscale_odd_size(tmp_path):
    ds = MVTecCategory(_make_category(tmp_path))
    img, mask = load_test_sample(ds.test_samples[0], 64)
    assert img.shape == (3, 64, 64) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert np.array_equal(img[0], img[1])  # gray replicated
    assert mask.shape == (64, 64) and mask.dtype == np.float32
    assert set(np.unique(mask).tolist()) == {0.0, 1.0}
    _, good_mask = load_test_sample(ds.test_samples[-1], 64)
    assert good_mask.shape == (64, 64) and not good_mask.any()


def test_test_folder_is_optional(tmp_path):
    cat = tmp_path / "only_train"
    (cat / "train/good").mkdir(parents=True)
    cv2.imwrite(str(cat / "train/good/a.bmp"), np.zeros((8, 8, 3), np.uint8))
    ds = MVTecCategory(cat)
    assert not ds.has_test and ds.test_samples == [] and ds.defect_types == []


def test_missing_train_good_explains_layout_and_suggests_category(tmp_path):
    _make_category(tmp_path, "tile")
    _make_category(tmp_path, "wood")
    with pytest.raises(DataError) as err:
        MVTecCategory(tmp_path)  # the dataset root, not a category
    msg = str(err.value)
    assert "train/good" in msg and "ground_truth/<type>/<id>_mask.png" in msg
    assert "--category tile" in msg and "wood" in msg
    assert "\n" not in msg


def test_empty_train_good_and_missing_folder(tmp_path):
    (tmp_path / "cat/train/good").mkdir(parents=True)
    (tmp_path / "cat/train/good/notes.txt").write_text("x")
    with pytest.raises(DataError, match="no training images in .*train/good"):
        MVTecCategory(tmp_path / "cat")
    with pytest.raises(DataError, match="dataset folder not found: .*nope"):
        MVTecCategory(tmp_path, "nope")
    assert issubclass(DataError, DaeError)


def test_missing_mask_names_image_and_expected_path(tmp_path):
    cat = _make_category(tmp_path)
    (cat / "ground_truth/crack/001_mask.png").unlink()
    with pytest.raises(DataError) as err:
        MVTecCategory(cat)
    msg = str(err.value)
    assert "test/crack/001.png" in msg and "ground_truth/crack/001_mask.png" in msg


def test_alternative_mask_names_are_accepted(tmp_path):
    cat = _make_category(tmp_path)
    gt = cat / "ground_truth/crack"
    (gt / "000_mask.png").rename(gt / "000.png")
    (gt / "001_mask.png").rename(gt / "001_mask.bmp")
    ds = MVTecCategory(cat)
    assert [s.mask_path.name for s in ds.test_samples if s.is_anomalous] == ["000.png", "001_mask.bmp"]


def test_mask_size_mismatch_raises_in_load_test_sample(tmp_path):
    ds = MVTecCategory(_make_category(tmp_path, mask_hw=(H - 1, W)))
    with pytest.raises(DataError, match=r"mask size 100x157 differs from image size 101x157: .*000_mask.png"):
        load_test_sample(ds.test_samples[0], 64)


def test_test_sample_is_frozen():
    s = TestSample(Path("a.png"), "good", None)
    with pytest.raises(AttributeError):
        s.defect_type = "crack"  # type: ignore[misc]


def test_split_train_val_deterministic_disjoint_complete():
    paths = [Path(f"{i:03d}.png") for i in range(23)]
    train, val = split_train_val(paths, 0.2, seed=7)
    assert (train, val) == split_train_val(paths, 0.2, seed=7)
    assert len(val) == round(23 * 0.2) and len(train) == 23 - len(val)
    assert not set(train) & set(val) and set(train) | set(val) == set(paths)
    assert train == sorted(train) and val == sorted(val)  # input order kept
    assert split_train_val(paths, 0.2, seed=8) != (train, val)


def test_split_train_val_edge_cases():
    two = [Path("a"), Path("b")]
    assert split_train_val(two, 0.01, 0)[1] != []  # at least one when fraction > 0
    tr, va = split_train_val(two, 0.9, 0)
    assert len(tr) == 1 and len(va) == 1  # train never empty
    assert split_train_val([Path("a")], 0.5, 0) == ([Path("a")], [])
    assert split_train_val(two, 0.0, 0) == (two, [])
    with pytest.raises(DaeError):
        split_train_val(two, 1.0, 0)
    with pytest.raises(DataError):
        split_train_val([], 0.1, 0)
