#!/usr/bin/env bash
# Does `dae train --init` from another category's checkpoint shorten the way to a given accuracy?
# (issue 25, item 3) Toothbrush trained twice with the same recipe and budget: from scratch, and from
# a Magnetic Tile checkpoint's weights (--init: weights only, a new schedule). Snapshots on the way
# are evaluated on Toothbrush's test split; the table gives, for both runs, the step and training
# minutes of each snapshot with image AUROC, pixel AUROC, pixel AP and AUPRO (the curve, whichever
# way it goes).
#
# Usage: bash benchmarks/init_curve.sh INIT_CHECKPOINT [OUT_DIR]
#   INIT_CHECKPOINT  a Magnetic Tile checkpoint of the same preset (PRESET, 256 px)
#   PRESET           the preset both runs train, default edge (the README's measurement: edge-v2)
#   DATA             default ../shared/data/toothbrush
#   BUDGETS          training minutes of the snapshots, default "5 10 20 40" (the last ends the run
#                    unless STEPS ends it first)
#   STEPS            optional step limit of both runs (e.g. 700): the schedule then spans the steps
#   PARALLEL=1       train both runs at once, one thread each: on a machine shared with other work
#                    both then see the same load, and their snapshots fall at about the same steps
#
# Compare the runs at equal steps (the table's step column); minutes are comparable only between
# runs that had the machine alike (PARALLEL=1, or one after the other on an idle machine).
set -euo pipefail
init="${1:?usage: init_curve.sh INIT_CHECKPOINT [OUT_DIR]}"
out="${2:-benchmarks/results/init_curve}"
data="${DATA:-../shared/data/toothbrush}"
budgets="${BUDGETS:-5 10 20 40}"
preset="${PRESET:-edge}"
mkdir -p "$out"

max_budget=0
for b in $budgets; do max_budget=$(python3 -c "print(max($max_budget, $b))"); done
snaps=$(echo "$budgets" | tr ' ' '\n' | grep -vx "$max_budget" | paste -sd, - || true)
limits=(--minutes "$max_budget")
if [ -n "${STEPS:-}" ]; then limits+=(--steps "$STEPS"); fi

train() {  # train START (scratch|init)
  local extra=()
  if [ "$1" = "init" ]; then extra=(--init "$init"); fi
  dae train --data "$data" --preset "$preset" "${limits[@]}" --snapshot-minutes "$snaps" \
    --checkpoint-every 0 --overwrite --out "$out/$1.pt" "${extra[@]}" > "$out/$1.train.log" 2>&1
}

if [ "${PARALLEL:-0}" = "1" ]; then
  OMP_NUM_THREADS=1 train scratch & a=$!
  OMP_NUM_THREADS=1 train init & b=$!
  wait $a; wait $b
else
  train scratch
  train init
fi

for start in scratch init; do
  for b in $budgets; do
    if [ "$b" = "$max_budget" ]; then ckpt="$out/$start.pt"; else ckpt="$out/$start-${b}min.pt"; fi
    if [ -f "$ckpt" ]; then  # a run that ended on STEPS before a budget has no snapshot there
      dae eval "$ckpt" --data "$data" --json "$out/$start.b$b.eval.json" --overwrite > /dev/null
    fi
  done
done

python3 - "$out" "$budgets" <<'EOF'
import json, sys
from pathlib import Path
out, budgets = Path(sys.argv[1]), sys.argv[2].split()
rows = ["| snapshot | start | step | image AUROC | pixel AUROC | pixel AP | AUPRO |", "|---|---|---|---|---|---|---|"]
last = max(budgets, key=float)
for b in budgets:
    for start in ("scratch", "init"):
        path = out / f"{start}.b{b}.eval.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        o = result["overall"]
        label = "end of run" if b == last else f"{b} min"
        rows.append(f"| {label} | {start} | {result.get('step')} | {o['image_auroc']:.3f} | {o['pixel_auroc']:.3f} | "
                    f"{o['pixel_ap']:.3f} | {o['aupro']:.3f} |")
table = "\n".join(rows) + "\n"
(out / "init_curve.md").write_text(table)
print(table)
EOF
