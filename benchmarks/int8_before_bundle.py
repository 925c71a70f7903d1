"""Export an INT8 bundle as `dae export` built it before the map's decoder was kept in float.

For a same-run `dae bench` comparison of the INT8 latency before and after (README, "INT8 and the
map"): the same checkpoint, target and calibration as `dae export --precision int8`, with only the
map smoothing in float (the decoder and head of the segmentation net quantized too). Not a product
path: such a bundle blurs the map.

Usage:
    python benchmarks/int8_before_bundle.py CKPT --target openvino-cpu --out OUT_BUNDLE
    dae bench OUT_BUNDLE exports/now-int8 exports/fp32 --no-iterative
"""

from __future__ import annotations

import argparse
from pathlib import Path

from int8_map import BEFORE  # the one definition of what stayed float before (this folder's study script)

from diffusionad_edge.export.converters import onnxruntime_int8
from diffusionad_edge.export.pipeline import ExportOptions, export_bundle


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--target", default="openvino-cpu")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    # Both quantizers read FLOAT_SCOPES when they run (not at import), so this one assignment is
    # the whole difference from `dae export`.
    onnxruntime_int8.FLOAT_SCOPES = BEFORE
    res = export_bundle(ExportOptions(checkpoint=args.checkpoint, target=args.target, out_dir=args.out, precision="int8"),
                        log=print)
    return 0 if res.passed else 3


if __name__ == "__main__":
    raise SystemExit(main())
