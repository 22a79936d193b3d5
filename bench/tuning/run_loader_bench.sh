#!/usr/bin/env bash
# A CPU-starved loader (bench/tuning/loader_bench.py) before and after
# `nodetune tune apply --profile data-loading` with pinning of the loader, then rolled back.
# Run as root from the repo root:
#
#   bash bench/tuning/run_loader_bench.sh          # SECS, REPS, WORKERS, DATA, DROP_CACHES, OUT
#
# Configs alternate (baseline, tuned, baseline, tuned, ...) REPS times so drift hits both; the
# page cache is dropped before each run (DROP_CACHES=1) so readahead on the data disk matters.
# The loader is pinned with --pid (its DataLoader workers are children, pinned with it) to the
# CPUs local to GPU 0 (--gpu 0); on a one-NUMA-node VM that is every CPU and the plan says
# pinning gains nothing. CPU power knobs absent there show as "not present". No GPU setting is
# ever changed (the data-loading profile has no [gpu] table). Numbers are reported as they come.
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import nodetune.tuners.transaction" 2>/dev/null && [ -f bench/device/setup.sh ]; then
  source bench/device/setup.sh
fi
HERE=bench/tuning
NT=("$HERE/nt.sh")
WORK=$(mktemp -d /tmp/nodetune-loader.XXXXXX)
OUT=${OUT:-$WORK}
JOURNAL=$WORK/journal.jsonl
DATA=${DATA:-/var/tmp/nodetune-loader-data}
SECS=${SECS:-20}
REPS=${REPS:-2}
WORKERS=${WORKERS:-4}
DROP_CACHES=${DROP_CACHES:-1}
mkdir -p "$OUT"
[ "$(id -u)" = 0 ] || { echo "run as root (the knobs need it)"; exit 2; }

cleanup() { "${NT[@]}" tune rollback --journal "$JOURNAL" >/dev/null 2>&1; [ -n "${LPID:-}" ] && kill "$LPID" 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM PIPE

[ -f "$DATA/index.json" ] || "$PY" "$HERE/loader_bench.py" --prepare --data "$DATA" | tee "$OUT/prepare.json"

one_run() {  # $1 = config name; prints samples/s
  local cfg=$1 log="$OUT/$1.$2.log"
  "$PY" "$HERE/loader_bench.py" --data "$DATA" --seconds "$SECS" --workers "$WORKERS" --wait-signal > "$log" 2>&1 &
  LPID=$!
  for _ in $(seq 600); do grep -q '^READY' "$log" && break; kill -0 "$LPID" 2>/dev/null || break; sleep 0.1; done
  grep -q '^READY' "$log" || { echo "loader did not start: $(tail -3 "$log")" >&2; return 1; }
  if [ "$cfg" = baseline ]; then  # the same pause and CPU use as the tuned run's apply, changing nothing
    "${NT[@]}" tune plan --profile data-loading --pid "$LPID" "${GPU_ARGS[@]}" --data-path "$DATA" \
      --journal "$JOURNAL" > /dev/null 2>&1
  else
    "${NT[@]}" tune apply --profile data-loading --pid "$LPID" "${GPU_ARGS[@]}" --data-path "$DATA" \
      --journal "$JOURNAL" >> "$OUT/apply.log" 2>&1 || echo "apply failed: $(tail -2 "$OUT/apply.log")" >&2
  fi
  sync  # both configs measure from a cold page cache, so readahead on the data disk counts
  [ "$DROP_CACHES" = 1 ] && echo 3 > /proc/sys/vm/drop_caches
  kill -USR1 "$LPID"
  wait "$LPID"
  LPID=
  [ "$cfg" = tuned ] && "${NT[@]}" tune rollback --journal "$JOURNAL" >> "$OUT/rollback.log" 2>&1
  tail -1 "$log" | "$PY" -c "import json,sys; r=json.loads(sys.stdin.read()); print(r['samples_per_s'], r['mode'])"
}

# GPU-local pinning needs a GPU index for a loader NVML does not list (the CPU-only mode).
GPU_ARGS=()
if [ "$("$PY" -c "import pynvml; pynvml.nvmlInit(); print(pynvml.nvmlDeviceGetCount())" 2>/dev/null || echo 0)" -gt 0 ]; then
  GPU_ARGS=(--gpu 0)
else
  echo "no GPU through NVML: pinning has no GPU to be local to (the plan shows it skipped)"
fi

echo "== the plan for the loader (each tuned run applies it) =="
"$PY" "$HERE/loader_bench.py" --data "$DATA" --seconds 1 --warmup 1 --workers 1 --wait-signal > "$WORK/probe.log" 2>&1 &
PP=$!
for _ in $(seq 600); do grep -q '^READY' "$WORK/probe.log" && break; sleep 0.1; done
"${NT[@]}" tune plan --profile data-loading --pid "$PP" "${GPU_ARGS[@]}" --data-path "$DATA" --journal "$JOURNAL" | tee "$OUT/plan.txt"
kill "$PP" 2>/dev/null; wait "$PP" 2>/dev/null

declare -A SUM N
MODE=?
for rep in $(seq "$REPS"); do
  for cfg in baseline tuned; do
    read -r rate MODE < <(one_run "$cfg" "$rep") || { echo "run $cfg/$rep failed"; exit 1; }
    echo "$cfg run $rep: $rate samples/s ($MODE)"
    echo "$cfg $rep $rate" >> "$OUT/runs.txt"
  done
done

echo
echo "loader: $MODE, $WORKERS workers, ${SECS}s measured per run, $REPS run(s) per config, page cache dropped: $DROP_CACHES"
"$PY" - "$OUT/runs.txt" <<'PYEOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    cfg, _, rate = line.split()
    rows.setdefault(cfg, []).append(float(rate))
print(f"{'config':<48} | samples/s (mean of runs: each run)")
names = {"baseline": "baseline (untuned)", "tuned": "data-loading profile + pinning of the loader"}
for cfg in ("baseline", "tuned"):
    v = rows.get(cfg, [])
    print(f"{names[cfg]:<48} | {statistics.mean(v):.1f} ({', '.join(f'{x:.1f}' for x in v)})")
if rows.get("baseline") and rows.get("tuned"):
    b, t = statistics.mean(rows["baseline"]), statistics.mean(rows["tuned"])
    print(f"change: {100 * (t - b) / b:+.1f}%")
PYEOF
echo "applied in the tuned runs:"; grep -E "change\(s\) applied|nothing to change" "$OUT/apply.log" | sort | uniq -c
"${NT[@]}" tune status --journal "$JOURNAL" | tail -5
