#!/usr/bin/env bash
# The checks only a TensorRT device can run, in one go: on a Jetson (JetPack 6) or a CUDA
# workstation with TensorRT, from a checkout with the package installed (README, 'Jetson'). It trains
# and exports as well, so it needs the workstation side there too: pip install -e ".[train,jetson,dev]"
# (the device install alone runs bundles only).
#
#   1. the marked tests: engine build (FP16 and Q/DQ INT8), runner parity with onnxruntime, CUDA
#      graph replay, engine reuse, first-run build, refusal of a foreign engine;
#   2. the chain on a small model: built-in data, a short training, FP16 and INT8 exports with
#      their accuracy measured in onnxruntime, engine builds, and `dae bench` with accuracy beside
#      the latency of the engines and of PyTorch.
#
# Usage: bash benchmarks/tensorrt_device_check.sh [OUT_DIR]      (about 10 minutes on an Orin)
# For benchmark numbers on a Jetson, fix the clocks first: sudo nvpmodel -m 0 && sudo jetson_clocks
set -euo pipefail
out="${1:-tensorrt_check}"
mkdir -p "$out"

python3 -c "import torch, pytest" 2>/dev/null || { echo "this check trains and runs the tests: pip install -e '.[train,jetson,dev]'"; exit 2; }
python3 -c "import tensorrt, numpy; print('TensorRT', tensorrt.__version__, '| numpy', numpy.__version__)"
if python3 -c "import cuda.bindings" 2>/dev/null; then echo "cuda-python present: profiles with cuda_graph replay CUDA graphs"
elif python3 -c "import pycuda" 2>/dev/null; then echo "pycuda only: no CUDA-graph replay (pip install 'cuda-python>=12.2,<13' for it)"
else echo "neither pycuda nor cuda-python is importable (README, 'Jetson')"; exit 2
fi
(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || cat /etc/nv_tegra_release 2>/dev/null) || true

echo "== 1/2 marked TensorRT tests"
python3 -m pytest -q -rs -m "tensorrt or gpu" tests/runtime/test_tensorrt.py 2>&1 | tee "$out/pytest.log"

echo "== 2/2 small model: train, export, build, bench"
dae data generate "$out/data" --n-train 48 --n-test-good 12 --n-test-per-defect 6 --size 256
dae train --data "$out/data" --category surface --preset edge --crop-size 64 --batch-size 16 \
  --lr-denoiser 5e-4 --lr-segmenter 1e-3 --minutes 2 --steps 100000 --out "$out/edge.pt"
bundles=()
for precision in fp16 int8; do
  dae export "$out/edge.pt" --target jetson-orin --precision "$precision" --eval-data "$out/data/surface" \
    --out "$out/edge-jetson-orin-$precision" --overwrite --keep-failed
  dae export "$out/edge-jetson-orin-$precision" --build-engine
  bundles+=("$out/edge-jetson-orin-$precision")
done
dae bench "${bundles[@]}" --checkpoint "$out/edge.pt" --eval-data "$out/data/surface" --iterations 100 \
  --iterative-eval-limit 0 --out "$out/bench"
echo "results: $out/pytest.log, $out/bench/bench.md (engine rows run as their bundle's precision)"
