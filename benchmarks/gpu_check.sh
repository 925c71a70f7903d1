#!/usr/bin/env bash
# On a CUDA machine (under 8 minutes on a data-centre GPU): train the `edge` preset on Magnetic
# Tile with AMP for a fixed number of minutes, evaluate it on the test split, and time training
# steps and one-step inference of `paper`, `edge` and `edge-v1` in PyTorch CUDA.
#
# Usage: bash benchmarks/gpu_check.sh [DATA_DIR] [OUT_DIR]
#   DATA_DIR  an MVTec-layout category (default ../shared/data/magnetic_tile). To carry it to a
#             machine with a size limit, make a 256-px copy first:
#             python -m diffusionad_edge.data.downscale ../shared/data/magnetic_tile gpu_data/magnetic_tile
#   MINUTES   training minutes (default 4)
# Needs: the package installed with a CUDA build of torch. Writes OUT_DIR/gpu_check.log and JSON.
set -euo pipefail
data="${1:-../shared/data/magnetic_tile}"
out="${2:-benchmarks/results/gpu_check}"
minutes="${MINUTES:-4}"
mkdir -p "$out"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.__version__, torch.cuda.get_device_name())" | tee "$out/gpu_check.log"
python3 benchmarks/gpu_timing.py --presets paper,edge,edge-v1 | tee -a "$out/gpu_check.log" > "$out/timing.jsonl"
# The edge recipe at full resolution (no crops) and a larger batch: the GPU has the throughput.
dae train --data "$data" --preset edge --device cuda --crop-size 0 --batch-size 32 --workers 8 \
  --steps 1000000 --minutes "$minutes" --checkpoint-every 0 --overwrite --out "$out/edge_gpu.pt" 2>&1 | tail -n 5 | tee -a "$out/gpu_check.log"
dae eval "$out/edge_gpu.pt" --data "$data" --device cuda --batch-size 32 --json "$out/edge_gpu.eval.json" | tail -n 12 | tee -a "$out/gpu_check.log"
echo "results: $out" | tee -a "$out/gpu_check.log"
