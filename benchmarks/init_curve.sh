#!/usr/bin/env bash
# Does `dae train --init` from another category's checkpoint shorten the way to a given accuracy?
# (issue 25, item 3) Toothbrush trained twice with the same recipe and budget: from scratch, and from
# a Magnetic Tile checkpoint's weights (--init: weights only, a new schedule). Snapshots at each
# budget are evaluated on Toothbrush's test split; the table gives image AUROC, pixel AUROC and AUPRO
# of both runs against training minutes (the curve, whichever way it goes).
#
# Usage: bash benchmarks/init_curve.sh INIT_CHECKPOINT [OUT_DIR]
#   INIT_CHECKPOINT  a Magnetic Tile checkpoint of the same preset (edge, 256 px), e.g. a 40-min run
#   DATA             default ../shared/data/toothbrush
#   BUDGETS          minutes, default "5 10 20 40"
#
# Budgets count training time only; they are comparable on an otherwise idle machine (about
# 2 x max(BUDGETS) minutes of training plus the evaluations). Not yet run (see README).
set -euo pipefail
init="${1:?usage: init_curve.sh INIT_CHECKPOINT [OUT_DIR]}"
out="${2:-benchmarks/results/init_curve}"
data="${DATA:-../shared/data/toothbrush}"
budgets="${BUDGETS:-5 10 20 40}"
mkdir -p "$out"

max_budget=0
for b in $budgets; do max_budget=$(python3 -c "print(max($max_budget, $b))"); done
snaps=$(echo "$budgets" | tr ' ' '\n' | grep -vx "$max_budget" | paste -sd, - || true)

for start in scratch init; do
  extra=()
  if [ "$start" = "init" ]; then extra=(--init "$init"); fi
  dae train --data "$data" --preset edge --minutes "$max_budget" --snapshot-minutes "$snaps" \
    --checkpoint-every 0 --overwrite --out "$out/$start.pt" "${extra[@]}"
  for b in $budgets; do
    if [ "$b" = "$max_budget" ]; then ckpt="$out/$start.pt"; else ckpt="$out/$start-${b}min.pt"; fi
    dae eval "$ckpt" --data "$data" --json "$out/$start.b$b.eval.json" --overwrite
  done
done

python3 - "$out" "$budgets" <<'EOF'
import json, sys
from pathlib import Path
out, budgets = Path(sys.argv[1]), sys.argv[2].split()
rows = ["| minutes | start | image AUROC | pixel AUROC | AUPRO |", "|---|---|---|---|---|"]
for b in budgets:
    for start in ("scratch", "init"):
        overall = json.loads((out / f"{start}.b{b}.eval.json").read_text())["overall"]
        rows.append(f"| {b} | {start} | {overall['image_auroc']:.3f} | {overall['pixel_auroc']:.3f} | {overall['aupro']:.3f} |")
table = "\n".join(rows) + "\n"
(out / "init_curve.md").write_text(table)
print(table)
EOF
