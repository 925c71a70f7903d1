#!/usr/bin/env bash
# Regenerates the numbers quoted in README.md on this kind of machine: the built-in dataset, the
# edge preset trained for the demo's fixed 200 steps, its evaluation, the four CPU bundles and the benchmark
# (with the machine described in bench/bench.json: CPU model, cores, ISA flags, library versions).
#
# Usage: bash benchmarks/readme_numbers.sh [OUT_DIR]        (about 11 minutes on 2 idle cores)
set -euo pipefail
out="${1:-benchmarks/results}"
dae demo --out "$out"
echo "numbers: $out/report.md  (benchmark table: $out/bench/bench.md, chart: $out/bench/bench.png)"
