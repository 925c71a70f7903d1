"""``dae bench`` as a library call: :func:`run_bench` from Python, no CLI (the checkpoint's PyTorch row)."""

from __future__ import annotations

import json

from diffusionad_edge import BenchConfig, run_bench


def test_run_bench_from_python(tiny_checkpoint, tmp_path):
    said: list[str] = []
    result, paths = run_bench([], tiny_checkpoint, BenchConfig(warmup=0, iterations=2), iterative=False,
                              out_dir=tmp_path / "bench", log=said.append)
    (row,) = result["rows"]
    assert "pytorch eager" in row["name"] and row["batch"] == 1 and row["fps"] > 0 and row["gflop_per_image"] > 0
    assert json.loads(paths["json"].read_text())["rows"] == result["rows"]
    assert said == [f"bench PyTorch reference rows for {tiny_checkpoint} ..."]
