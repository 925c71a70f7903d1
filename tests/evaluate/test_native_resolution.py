"""evaluate(metric_hw="native"): images of different sizes scored each at its own resolution."""

import cv2
import numpy as np

from diffusionad_edge.data.framing import Preprocessing
from diffusionad_edge.data.mvtec import MVTecCategory
from diffusionad_edge.evaluate.evaluator import evaluate

SIZES = [(40, 96), (64, 64), (90, 50), (48, 120)]


def _write(root, sizes):
    cat = root / "parts"
    for sub in ("train/good", "test/good", "test/spot", "ground_truth/spot"):
        (cat / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        img = np.full((h, w, 3), 150, np.uint8) + rng.integers(0, 4, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(cat / "train/good" / f"{i:03d}.png"), img)
        cv2.imwrite(str(cat / "test/good" / f"{i:03d}.png"), img)
        bad, mask = img.copy(), np.zeros((h, w), np.uint8)
        y, x = h // 3, w // 2  # a dark square off-centre: misplaced maps would miss it
        cv2.rectangle(bad, (x, y), (x + w // 5, y + h // 5), (20, 20, 20), -1)
        cv2.rectangle(mask, (x, y), (x + w // 5, y + h // 5), 255, -1)
        cv2.imwrite(str(cat / "test/spot" / f"{i:03d}.png"), bad)
        cv2.imwrite(str(cat / "ground_truth/spot" / f"{i:03d}_mask.png"), mask)
    return MVTecCategory(cat)


def _darkness(batch):
    """A detector that sees dark pixels: maps (B, h, w) and the max as the score."""
    maps = 1.0 - np.asarray(batch, np.float32).mean(axis=1)
    maps = (maps - maps.min()) / (np.ptp(maps) + 1e-6)
    return maps, maps.reshape(len(maps), -1).max(axis=1)


def test_native_resolution_keeps_each_image_size(tmp_path):
    data = _write(tmp_path, SIZES)
    prep = Preprocessing(32, 32)
    native = evaluate(data, _darkness, prep, batch_size=3, metric_hw="native")
    assert native.overall["image_auroc"] == 1.0
    assert native.overall["pixel_ap"] > 0.7  # the squares land where the masks are, in every size
    # The same detector with its maps wrongly flipped left-right loses the squares: the check can fail.
    flipped = evaluate(data, lambda b: tuple(np.flip(m, -1) if m.ndim == 3 else m for m in _darkness(b)), prep,
                       batch_size=3, metric_hw="native")
    assert flipped.overall["pixel_ap"] < 0.5
