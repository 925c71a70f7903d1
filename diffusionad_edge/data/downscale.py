"""Write a copy of an MVTec-layout category with every image (and mask) resized to at most N px on
its longer side, PNG: small enough to carry to a remote machine.

    python -m diffusionad_edge.data.downscale SRC DST [--size 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from .preprocess import is_image_file


def downscale_tree(src: Path, dst: Path, size: int = 256) -> int:
    """Mirror ``src`` into ``dst`` with images resized (area interpolation; masks nearest); returns the count."""
    n = 0
    for path in sorted(src.rglob("*")):
        if not path.is_file() or not is_image_file(path) or path.name.startswith("._"):
            continue
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            continue
        h, w = img.shape[:2]
        scale = min(1.0, size / max(h, w))
        is_mask = "ground_truth" in path.parts
        if scale < 1.0:
            interp = cv2.INTER_NEAREST if is_mask else cv2.INTER_AREA
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        out = (dst / path.relative_to(src)).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), img):
            raise OSError(f"could not write {out}")
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    print(f"{downscale_tree(a.src, a.dst, a.size)} images written to {a.dst}")


if __name__ == "__main__":
    main()
