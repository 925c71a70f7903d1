import numpy as np
import pytest

from diffusionad_edge.data.builtin import DEFECT_TYPES, KNOWN_CATEGORIES, generate_dataset
from diffusionad_edge.data.mvtec import MVTecCategory, load_test_sample
from diffusionad_edge.data.preprocess import read_image, read_mask
from diffusionad_edge.errors import DaeError, DataError

SMALL = dict(n_train=5, n_test_good=2, n_test_per_defect=3, size=64)


@pytest.mark.parametrize("category", KNOWN_CATEGORIES)
def test_layout_masks_and_reader(tmp_path, category):
    root = generate_dataset(tmp_path, category=category, seed=3, **SMALL)
    assert root == tmp_path / category
    assert sorted(p.name for p in (root / "train/good").iterdir()) == [f"{i:03d}.png" for i in range(5)]
    for defect in DEFECT_TYPES:
        for i in range(3):
            img = read_image(root / "test" / defect / f"{i:03d}.png")
            mask = read_mask(root / "ground_truth" / defect / f"{i:03d}_mask.png")
            assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
            assert 0.003 < mask.mean() < 0.1  # clearly visible, a few % at most
    ds = MVTecCategory(tmp_path, category)
    assert len(ds.train_images) == 5 and ds.defect_types == sorted(DEFECT_TYPES)
    assert len(ds.test_samples) == 2 + 3 * len(DEFECT_TYPES)
    for s in ds.test_samples:
        _, mask = load_test_sample(s, 32)
        assert bool(mask.any()) == s.is_anomalous


def test_defects_are_visible_and_confined_to_mask(tmp_path):
    root = generate_dataset(tmp_path, seed=0, **SMALL)
    normals = np.stack([read_image(p).astype(np.float32) for p in sorted((root / "train/good").glob("*.png"))])
    spread = normals.std(axis=0).mean()
    for defect in DEFECT_TYPES:
        img = read_image(root / "test" / defect / "000.png").astype(np.float32)
        mask = read_mask(root / "ground_truth" / defect / "000_mask.png") > 0
        inside = np.abs(img[mask] - normals.mean(axis=0)[mask]).mean()
        assert inside > 4 * spread, defect


def test_same_seed_same_files_other_seed_differs(tmp_path):
    a = generate_dataset(tmp_path / "a", seed=1, **SMALL)
    b = generate_dataset(tmp_path / "b", seed=1, **SMALL)
    c = generate_dataset(tmp_path / "c", seed=2, **SMALL)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 5 + 2 + 2 * 3 * len(DEFECT_TYPES)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / files[0]).read_bytes() != (c / files[0]).read_bytes()


def test_regenerating_replaces_previous_output_only(tmp_path):
    generate_dataset(tmp_path, **dict(SMALL, n_train=8))
    root = generate_dataset(tmp_path, **SMALL)
    assert len(list((root / "train/good").iterdir())) == 5
    foreign = tmp_path / "mine" / "surface"
    foreign.mkdir(parents=True)
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        generate_dataset(tmp_path / "mine", **SMALL)
    assert (foreign / "precious.txt").exists()


def test_invalid_arguments(tmp_path):
    with pytest.raises(DaeError, match="unknown built-in category"):
        generate_dataset(tmp_path, category="bottle", **SMALL)
    with pytest.raises(DaeError):
        generate_dataset(tmp_path, **dict(SMALL, n_train=0))
