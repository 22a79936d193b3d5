#!/usr/bin/env bash
# Issue 4's proof on a real node, in one run (as root, from the repo root):
#
#   bash bench/tuning/device_tuning_proof.sh            # OUT=dir keeps the logs (default: a temp dir)
#
# 1. starts a CPU-busy workload process of its own (bench/tuning/workload.py);
# 2. records BEFORE: THP enabled/defrag, read_ahead_kb of the disk under DATA_PATH (default /),
#    and every thread's affinity of the workload;
# 3. `tune plan` then `tune apply` of bench/tuning/proof.toml (THP + readahead) with pinning of
#    the workload (--pid, --pin-cpus: the first half of its CPUs, since on a one-NUMA-node VM the
#    GPU-local pinning would keep every CPU), then `tune verify`; records AFTER;
# 4. `tune rollback`, `tune verify`; records RESTORED;
# 5. a crash round: apply again with NODETUNE_TEST_CRASH_AT=after_write:2 (the apply SIGKILLs
#    itself after its second knob write), then rollback; records CRASH-RESTORED;
# 6. prints BEFORE / AFTER / RESTORED per knob and exits non-zero unless RESTORED and
#    CRASH-RESTORED equal BEFORE (and AFTER differs, so the apply did something).
#
# It never touches GPU settings (proof.toml has no [gpu] table and --allow-gpu-power is never
# passed) nor CPU power knobs; its journal is private (JOURNAL, default under the work dir), so a
# rollback here cannot undo anyone else's nodetune changes.
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import nodetune.tuners.transaction" 2>/dev/null && [ -f bench/device/setup.sh ]; then
  source bench/device/setup.sh   # the device machine: install the carried checkout into /tmp/site
fi
HERE=bench/tuning
NT=("$HERE/nt.sh")
WORK=$(mktemp -d /tmp/nodetune-proof.XXXXXX)
OUT=${OUT:-$WORK}
JOURNAL=${JOURNAL:-$WORK/journal.jsonl}
DATA_PATH=${DATA_PATH:-/}
mkdir -p "$OUT"

[ "$(id -u)" = 0 ] || { echo "run as root (the knobs need it)"; exit 2; }

# -- the disk under DATA_PATH, found without nodetune (an independent read of the same knob) ----
mm=$(findmnt -n -o MAJ:MIN --target "$DATA_PATH" | head -1 | tr -d ' ')
dev=$(basename "$(readlink -f "/sys/dev/block/$mm" 2>/dev/null)" 2>/dev/null)
if [ -n "$dev" ] && [ -e "/sys/class/block/$dev/partition" ]; then
  dev=$(basename "$(dirname "$(readlink -f "/sys/class/block/$dev")")")
fi
RA=/sys/block/$dev/queue/read_ahead_kb
[ -n "$dev" ] && [ -e "$RA" ] || { echo "no block device under $DATA_PATH (mount $mm); set DATA_PATH"; exit 2; }

# -- the workload ----------------------------------------------------------------------------
"$PY" "$HERE/workload.py" --threads 4 --seconds 900 > "$WORK/pid" &
for _ in $(seq 50); do [ -s "$WORK/pid" ] && break; sleep 0.1; done
PID=$(cat "$WORK/pid")
# Whatever ends this script (an error, Ctrl-C, a closed pipe), undo what its journal holds.
cleanup() { "${NT[@]}" tune rollback --journal "$JOURNAL" >/dev/null 2>&1; kill "$PID" 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM PIPE
sleep 0.5
ALLOWED=$(grep Cpus_allowed_list "/proc/$PID/status" | awk '{print $2}')
NCPU=$("$PY" -c "import os; print(len(os.sched_getaffinity($PID)))")
HALF=$(( NCPU > 1 ? NCPU / 2 : 1 ))
PIN=$("$PY" -c "import os; c=sorted(os.sched_getaffinity($PID))[:$HALF]; print(','.join(map(str,c)))")
echo "workload pid $PID: $(ls /proc/$PID/task | wc -l) threads on CPUs $ALLOWED; will pin to $PIN"
echo "disk under $DATA_PATH: $dev ($RA)"

# The proof needs a change to undo: where the disk already reads ahead 4096 kB or more, `>`
# semantics would keep it, so ask for twice the current value instead (same profile otherwise).
PROFILE=$HERE/proof.toml
CUR_RA=$(cat "$RA")
if [ "$CUR_RA" -ge 4096 ]; then
  PROFILE=$WORK/proof.toml
  WANT=$(( CUR_RA * 2 > 65536 ? 65536 : CUR_RA * 2 ))
  sed "s/^read_ahead_kb = .*/read_ahead_kb = $WANT/; s|^paths = .*|paths = [\"$DATA_PATH\"]|" "$HERE/proof.toml" > "$PROFILE"
  echo "read_ahead_kb is already $CUR_RA: asking for $WANT ($PROFILE)"
elif [ "$DATA_PATH" != / ]; then
  PROFILE=$WORK/proof.toml
  sed "s|^paths = .*|paths = [\"$DATA_PATH\"]|" "$HERE/proof.toml" > "$PROFILE"
fi

state() {  # one line per knob: name=value
  echo "thp_enabled=$(cat /sys/kernel/mm/transparent_hugepage/enabled)"
  echo "thp_defrag=$(cat /sys/kernel/mm/transparent_hugepage/defrag)"
  echo "read_ahead_kb[$dev]=$(cat "$RA")"
  for t in $(ls "/proc/$PID/task" | sort -n); do
    echo "affinity[tid $t]=$(grep Cpus_allowed_list "/proc/$PID/task/$t/status" | awk '{print $2}')"
  done
}

run() { echo "+ nodetune $*"; "${NT[@]}" "$@" --journal "$JOURNAL"; local rc=$?; echo "  (exit $rc)"; return $rc; }

state > "$OUT/before.txt"
echo "== what GPU-local pinning would do here (plan only; needs a GPU) =="
"${NT[@]}" tune plan --pid "$PID" --gpu 0 --journal "$JOURNAL" 2>&1
echo "== plan =="
run tune plan --profile "$PROFILE" --pid "$PID" --pin-cpus "$PIN"
echo "== apply =="
run tune apply --profile "$PROFILE" --pid "$PID" --pin-cpus "$PIN"; APPLY_RC=$?
state > "$OUT/after.txt"
echo "== verify (after apply) =="
run tune verify; VERIFY_RC=$?
run tune status
echo "== rollback =="
run tune rollback; ROLLBACK_RC=$?
state > "$OUT/restored.txt"
echo "== verify (after rollback) =="
run tune verify --json > "$OUT/verify_after_rollback.json"; VERIFY2_RC=$?
grep -o '"status": "[a-z]*"' "$OUT/verify_after_rollback.json" | sort | uniq -c

echo "== crash round: apply SIGKILLed after its 2nd knob write, then rollback =="
NODETUNE_TEST_CRASH_AT=after_write:2 "${NT[@]}" tune apply --profile "$PROFILE" --pid "$PID" \
  --pin-cpus "$PIN" --journal "$JOURNAL" > "$OUT/crash_apply.txt" 2>&1
CRASH_RC=$?
echo "  apply exit $CRASH_RC (137 = SIGKILL, as asked)"
state > "$OUT/crashed.txt"
run tune status
run tune rollback; CRASH_ROLLBACK_RC=$?
state > "$OUT/crash_restored.txt"

echo
echo "== BEFORE / AFTER / RESTORED / CRASHED / CRASH-RESTORED =="
"$PY" - "$OUT" <<'PYEOF'
import sys
out = sys.argv[1]
def load(name):
    rows = {}
    for line in open(f"{out}/{name}.txt"):
        k, _, v = line.rstrip("\n").partition("=")
        rows[k] = v
    return rows
cols = ["before", "after", "restored", "crashed", "crash_restored"]
data = {c: load(c) for c in cols}
keys = list(data["before"]) + [k for c in cols for k in data[c] if k not in data["before"]]
keys = list(dict.fromkeys(keys))
w = max(len(k) for k in keys)
print(f"{'knob':<{w}} | " + " | ".join(cols) + " | same")
for k in keys:
    vals = [data[c].get(k, "-") for c in cols]
    same = vals[0] == vals[2] == vals[4]
    print(f"{k:<{w}} | " + " | ".join(vals) + f" | {'yes' if same else 'NO'}")
PYEOF

FAIL=0
if ! cmp -s "$OUT/before.txt" "$OUT/restored.txt"; then echo "FAIL: RESTORED differs from BEFORE"; FAIL=1; fi
if ! cmp -s "$OUT/before.txt" "$OUT/crash_restored.txt"; then echo "FAIL: CRASH-RESTORED differs from BEFORE"; FAIL=1; fi
if cmp -s "$OUT/before.txt" "$OUT/after.txt"; then echo "FAIL: apply changed nothing (nothing was proven)"; FAIL=1; fi
if cmp -s "$OUT/before.txt" "$OUT/crashed.txt"; then echo "note: the crashed apply left nothing changed"; fi
[ "$APPLY_RC" = 0 ] || { echo "FAIL: apply exited $APPLY_RC"; FAIL=1; }
[ "$VERIFY_RC" = 0 ] || { echo "FAIL: verify after apply exited $VERIFY_RC"; FAIL=1; }
[ "$ROLLBACK_RC" = 0 ] || { echo "FAIL: rollback exited $ROLLBACK_RC"; FAIL=1; }
[ "$CRASH_RC" = 137 ] || { echo "FAIL: the crash round's apply exited $CRASH_RC, not 137 (SIGKILL)"; FAIL=1; }
[ "$CRASH_ROLLBACK_RC" = 0 ] || { echo "FAIL: rollback after the crash exited $CRASH_ROLLBACK_RC"; FAIL=1; }
cp "$JOURNAL" "$OUT/journal.jsonl" 2>/dev/null
[ "$FAIL" = 0 ] && echo "PASS: every knob restored exactly, after a clean apply and after a SIGKILLed one"
exit $FAIL
