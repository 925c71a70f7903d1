import json

import cv2
import numpy as np
import pytest

from diffusionad_edge.errors import ConfigError, DataError
from diffusionad_edge.quantize.calibration import from_manifest


def _images(folder, n, size=(40, 50)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8))


def test_manifest_folders_lists_and_seed(tmp_path):
    _images(tmp_path / "a" / "nested", 6)
    _images(tmp_path / "b", 3)
    (tmp_path / "list.txt").write_text("# extra\nb/0.png\nb/1.png\n")
    (tmp_path / "a" / "broken.png").write_bytes(b"not an image")
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"sources": ["a", "list.txt"], "count": 100, "seed": 1}))
    with pytest.warns(UserWarning, match="calibration images"):
        cal = from_manifest(m, 32)
    assert cal.images.shape == (8, 3, 32, 32)
    assert len(cal.skipped) == 1 and "broken.png" in cal.skipped[0]
    m.write_text(json.dumps({"sources": ["a"], "count": 4, "seed": 1}))
    with pytest.warns(UserWarning):
        a, b = from_manifest(m, 32), from_manifest(m, 32)
    assert np.array_equal(a.images, b.images)


def test_too_few_or_bad_manifests(tmp_path):
    _images(tmp_path / "few", 2)
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"sources": ["few"]}))
    with pytest.raises(DataError, match="only 2 readable calibration images"):
        from_manifest(m, 32)
    m.write_text(json.dumps({"sources": ["missing_dir"]}))
    with pytest.raises(DataError, match="calibration source not found"):
        from_manifest(m, 32)
    m.write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        from_manifest(m, 32)
    with pytest.raises(DataError, match="manifest not found"):
        from_manifest(tmp_path / "none.json", 32)
