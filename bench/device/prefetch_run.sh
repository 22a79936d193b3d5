#!/usr/bin/env bash
# The prefetcher on one GPU, one call: the cold-read table (page cache dropped before each run) and the
# closed loop (a loader reading files cold: diagnose -> tune recommend/apply + prefetcher -> diagnose
# again), 3 runs each, everything into $OUT. Every host knob is rolled back in this script (trap).
source bench/device/setup.sh
set -u
uname -r | tee $OUT/uname.txt
cat /proc/sys/kernel/io_uring_disabled 2>/dev/null | sed 's/^/io_uring_disabled=/' | tee -a $OUT/uname.txt
D=${DATA:-/var/tmp/nodetune-prefetch-data}
python3 bench/bench_prefetch.py --dir $D ${TABLE_ARGS:-} 2>&1 | tee $OUT/cold_read_table.txt
J=/tmp/nt-journal.jsonl; rm -f $J
trap '$NT tune rollback --journal $J >$OUT/rollback.txt 2>&1; cat /sys/block/*/queue/read_ahead_kb > $OUT/read_ahead_after.txt' EXIT
loop() {  # $1: label, $2...: extra train args; a diagnose window taken while it runs
  for i in 1 2 3; do
    sync; echo 3 > /proc/sys/vm/drop_caches
    python3 bench/bench_prefetch.py --dir $D --train --seconds ${S:-40} --small ${TRAIN_SMALL:-2000} "${@:2}" > $OUT/$1_$i.json 2>$OUT/$1_$i.err &
    P=$!; sleep ${DIAG_AFTER:-8}
    $NT diagnose --seconds 10 --json > $OUT/diag_$1_$i.json 2>$OUT/diag_$1_$i.err
    wait $P
  done
}
loop before
$NT tune recommend --advice $OUT/diag_before_1.json > $OUT/recommend.txt 2>&1
$NT tune apply --profile data-loading --data-path $D --journal $J > $OUT/apply.txt 2>&1
loop after --prefetch
python3 - "$OUT" <<'PY' | tee $OUT/closed_loop.txt
import json, statistics, sys, glob
out = sys.argv[1]
for label in ("before", "after"):
    sps = [json.loads(open(f).read().splitlines()[-1])["samples_per_s"] for f in sorted(glob.glob(f"{out}/{label}_*.json"))]
    idle, verdicts = [], []
    for f in sorted(glob.glob(f"{out}/diag_{label}_*.json")):
        try:
            rep = json.load(open(f))
        except ValueError:
            continue
        for g in rep.get("gpus", []):
            verdicts.append(f"{g.get('verdict')}/{g.get('cause')}")
        # the idle share is data_starved's evidence; a GPU no longer starved shows its metrics' util instead
        ev = [f["evidence"]["gpu_idle_share"] for f in rep.get("findings", []) if "gpu_idle_share" in f.get("evidence", {})]
        idle.append(ev[0] if ev else float("nan"))
    fmt = lambda xs: f"{statistics.mean(xs):.3g} (min {min(xs):.3g}, max {max(xs):.3g})" if xs else "n/a"
    print(f"{label:6}  samples/s {fmt(sps)}  GPU idle share {fmt(idle)}  verdicts {verdicts}")
PY
grep -h "prefetch" $OUT/recommend.txt | head -3
ls -la $OUT
