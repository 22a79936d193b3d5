#!/usr/bin/env bash
# Where a sample's CPU goes on the GPU machine, beside a training job with four DataLoader workers
# (about 1.5 min). Read-only on the GPU. Writes $OUT/sample_cost.md.
#   bash bench/device/sample_cost.sh
cd "$(dirname "$0")/../.."
source bench/device/setup.sh
OUT=${OUT:-/tmp/sample_cost}; mkdir -p "$OUT"
python3 bench/workloads/cpu_starved.py --workers 4 --seconds 90 >"$OUT/workload.log" 2>&1 &
WL=$!
sleep 25  # imports, model, first batches: the job holds its context and its workers run
python3 bench/device/sample_cost.py --samples 120 --interval 0.2 --out "$OUT"
rc=$?
kill "$WL" 2>/dev/null; wait "$WL" 2>/dev/null
exit $rc
