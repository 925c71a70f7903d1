#!/usr/bin/env bash
# Training speed at world size 1 and 2 on this machine's CPU (gloo), in one run: the same preset,
# recipe, global batch and number of steps, one process and then two (`dae train --nproc 2`),
# repeated ROUNDS times alternately so that a change in the machine's load hits both alike.
# Prints one line per run and the ratio; steps/s comes from the checkpoint's training time (the
# steps' wall time, without start-up and validation).
#
# Usage: bash benchmarks/ddp_cpu.sh [OUT_DIR]
#   PRESET  default edge (its recipe: batch 16, 128-px crops)
#   STEPS   default 20
#   ROUNDS  default 2
set -euo pipefail
out="${1:-benchmarks/results/ddp_cpu}"
preset="${PRESET:-edge}"
steps="${STEPS:-20}"
rounds="${ROUNDS:-2}"
mkdir -p "$out"
data="$out/data"
[ -d "$data/surface" ] || dae data generate "$data" --category surface --n-train 24 --n-test-good 2 --n-test-per-defect 1 --size 256

rate() {  # steps per second of a checkpoint's training
  python -c "import torch,sys; p=torch.load(sys.argv[1],weights_only=False); print(f\"{p['step']/p['train_seconds']:.3f}\")" "$1"
}

: > "$out/rates.txt"
for r in $(seq "$rounds"); do
  for n in 1 2; do
    ckpt="$out/ws$n-r$r.pt"
    dae train --data "$data" --category surface --preset "$preset" --steps "$steps" --device cpu \
      --checkpoint-every 0 --val-fraction 0 --nproc "$n" --out "$ckpt" --overwrite > "$out/ws$n-r$r.log" 2>&1
    s=$(rate "$ckpt")
    echo "round $r world size $n: $s steps/s" | tee -a "$out/rates.txt"
  done
done
python - "$out/rates.txt" <<'EOF'
import re, statistics, sys
rates = {1: [], 2: []}
for line in open(sys.argv[1]):
    m = re.search(r"world size (\d): ([\d.]+)", line)
    rates[int(m.group(1))].append(float(m.group(2)))
one, two = statistics.mean(rates[1]), statistics.mean(rates[2])
print(f"mean steps/s: world size 1 {one:.3f}, world size 2 {two:.3f}, ratio 2/1 {two / one:.2f}")
EOF
