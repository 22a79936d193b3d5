#!/usr/bin/env bash
# Issue 12's proof (diagnosis second pass), modelled on diagnosis_run.sh. For each new workload,
# diagnose three times in each of three positions: 2 s after launch, in steady state, and across a
# phase change (start-up -> steps, or steps -> the workload's stall pattern via --steady-first).
# Every report (JSON) and window (snapshot, for replay tests) lands in $OUT/v2; a table of verdicts,
# stability and unexplained idle share per run is printed and saved. Then the earlier workloads
# through the runner, to show their verdicts are still right. Read-only on the GPU.
[ -n "${NT:-}" ] || source bench/device/setup.sh
W=${W:-5}
D=$OUT/v2; mkdir -p $D
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
CKPT_DIR=${CKPT_DIR:-/tmp/nodetune-ckpt}

start() {  # start <name> <args...>: the workload in its own process group; sets PID, READYFILE
  local name=$1; shift
  READYFILE=$D/.ready-$name; rm -f $READYFILE
  setsid python3 bench/workloads/$name.py --seconds 120 "$@" > >(tee $READYFILE > /dev/null) 2> $D/$name.log &
  PID=$!
}
wait_ready() { for _ in $(seq 1 600); do grep -q READY $READYFILE 2>/dev/null && return 0; sleep 0.2; done; return 1; }
stop() { kill -TERM -- -$PID 2>/dev/null; for _ in $(seq 1 50); do kill -0 $PID 2>/dev/null || break; sleep 0.2; done
         kill -KILL -- -$PID 2>/dev/null; wait $PID 2>/dev/null; sleep 2; }
diag() {  # diag <tag> <window s>
  timeout 120 $NT diagnose --seconds $2 --interval 0.5 --json --save $D/$1.json.gz > $D/$1.json 2> $D/$1.err
  echo "  $1: $(python3 -c "import json,sys; r=json.load(open('$D/$1.json')); print('; '.join(f\"GPU{g['index']} {g['verdict']}/{g['cause']} conf {g['confidence']:.2f} healthy {g['healthy']} border {g['borderline']} | {(g.get('attribution') or {}).get('text','')}\" for g in r['gpus']))" 2>&1)"
}

run_one() {  # run_one <name> <phase args> <extra args...>
  local name=$1 phase_args=$2; shift 2
  for n in $(seq 1 ${REPS:-3}); do
    start $name "$@"; sleep 2; diag $name-launch-$n $W; stop
    start $name "$@"; wait_ready; [ $name = startup ] && sleep 15 || sleep 3; diag $name-steady-$n $W; stop
    if [ $name = startup ]; then start $name "$@"; sleep 1; diag $name-phase-$n 10; stop
    else start $name $phase_args "$@"; wait_ready; sleep 1; diag $name-phase-$n 10; stop; fi
  done
}

echo "== new workloads (W=$W s; phase windows 10 s)"
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
want startup && run_one startup "" --device cuda:0
want checkpoint && run_one checkpoint "--steady-first 5" --device cuda:0 --dir $CKPT_DIR
want cpu_eval && run_one cpu_eval "--steady-first 5" --device cuda:0
want half_host && run_one half_host "--steady-first 5" --device cuda:0
if [ "$NGPU" -ge 2 ]; then run_one straggler_2gpu ""; else echo "straggler_2gpu: needs 2 GPUs (have $NGPU): skipped"; fi
rm -rf $CKPT_DIR

echo "== summary"
python3 - "$D" <<'PY' | tee $OUT/diagnosis_v2_table.txt
import collections, glob, json, os, sys
d = sys.argv[1]
runs = collections.defaultdict(list)
for f in sorted(glob.glob(f"{d}/*-*-[123].json")):
    name, pos, _ = os.path.basename(f)[:-5].rsplit("-", 2)
    try:
        r = json.load(open(f))
    except ValueError as exc:
        print(f"{f}: no report ({exc})"); continue
    for g in r["gpus"]:
        a = g.get("attribution") or {}
        runs[(name, pos, g["index"])].append((g["verdict"], g["cause"], g["borderline"], a.get("idle_share"),
                                              a.get("unexplained_share")))
print(f"{'workload':16} {'position':8} gpu  verdicts (3 runs)                              stable  idle  unexplained")
for (name, pos, gpu), rs in sorted(runs.items()):
    vs = [f"{v}/{c}" + ("~" if b else "") for v, c, b, _, _ in rs]
    idle = max((i or 0) for *_, i, _ in rs)
    unex = max((u or 0) for *_, u in rs)
    print(f"{name:16} {pos:8} {gpu:3}  {', '.join(vs):46} {'yes' if len({v[:2] for v in rs}) == 1 else 'NO':6} "
          f"{idle:4.0%}  {unex:4.0%}")
PY

[ -n "${SKIP_EARLIER:-}" ] && exit 0
echo "== earlier workloads, still right"
python3 bench/run_diagnosis.py --seconds $W --nodetune-cmd "$NT" --save-windows $D/earlier \
  --skip startup,checkpoint,cpu_eval,half_host,straggler_2gpu --out $D/earlier_results.json 2>&1 | grep -v "^\[run_diagnosis"
ls -la $D | tail -5
