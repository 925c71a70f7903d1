#!/usr/bin/env bash
# Learning curve on real defects: accuracy of each dataset's test split after fixed CPU training
# budgets, for `edge` with its recommended recipe (`dae train --preset edge` defaults) and optionally
# `edge-v1` with the earlier quick recipe. Per dataset: one table (learning_curve.md, .json, with
# per-defect-type rows and, for toothbrush, the paper's row beside ours) and one chart
# (learning_curve.png: metric against minutes).
#
# Usage: bash benchmarks/learning_curve.sh [OUT_DIR]
#   DATASETS  data folders, default "../shared/data/toothbrush ../shared/data/magnetic_tile"
#   BUDGETS   minutes, default "10 20 40 120" (120: the overnight user)
#   MODE      "snapshots" (default: one run per recipe and dataset of max(BUDGETS) minutes, with a
#             checkpoint copied at each smaller budget) or "separate" (one run per budget: each gets
#             its own full schedule; much longer)
#   RECIPES   default "edge"
#
# Budgets count the training steps' wall time (not evaluation), measured in the process; they are
# only comparable on an otherwise idle machine (the default needs about 2 x 120 min of training plus
# the evaluations). The step count reached is printed beside each row.
set -euo pipefail
out_root="${1:-benchmarks/results/learning_curve}"
datasets="${DATASETS:-../shared/data/toothbrush ../shared/data/magnetic_tile}"
budgets="${BUDGETS:-10 20 40 120}"
mode="${MODE:-snapshots}"
recipes="${RECIPES:-edge}"

# The recipe README quoted for CPU users before the `edge` preset existed.
old_recipe=(--preset edge-v1 --crop-size 64 --batch-size 16 --lr-denoiser 5e-4 --lr-segmenter 1e-3
            --timesteps uniform --lr-schedule constant --synthesis paper)
new_recipe=(--preset edge)   # everything else: the preset's recommended recipe

max_budget=0
for b in $budgets; do max_budget=$(python3 -c "print(max($max_budget, $b))"); done

for data in $datasets; do
  name="$(basename "$data")"
  out="$out_root/$name"
  mkdir -p "$out"
  for recipe in $recipes; do
    if [ "$recipe" = "edge-v1" ]; then args=("${old_recipe[@]}"); else args=("${new_recipe[@]}"); fi
    if [ "$mode" = "snapshots" ]; then
      snaps=$(echo "$budgets" | tr ' ' '\n' | grep -vx "$max_budget" | paste -sd, - || true)
      dae train --data "$data" "${args[@]}" --minutes "$max_budget" \
        --snapshot-minutes "$snaps" --checkpoint-every 0 --overwrite --out "$out/$recipe.pt"
      for b in $budgets; do
        if [ "$b" = "$max_budget" ]; then ckpt="$out/$recipe.pt"; else ckpt="$out/$recipe-${b}min.pt"; fi
        cp "$ckpt" "$out/$recipe.b$b.pt"
      done
    else
      for b in $budgets; do
        dae train --data "$data" "${args[@]}" --minutes "$b" --checkpoint-every 0 \
          --overwrite --out "$out/$recipe.b$b.pt"
      done
    fi
    for b in $budgets; do
      dae eval "$out/$recipe.b$b.pt" --data "$data" --json "$out/$recipe.b$b.eval.json" --overwrite
    done
  done
  python3 -m diffusionad_edge.bench.learning_curve "$out" --mode "$mode" --recipes "$recipes" --budgets "$budgets" \
    --dataset "$name"
done
