#!/usr/bin/env bash
# The diagnosis workloads that change phase, on one GPU (two for straggler_2gpu). For each, diagnose
# three times in each of three positions: 2 s after launch, in steady state, and across a phase
# change (start-up -> steps, or steps -> the workload's stall pattern via --steady-first). Each
# launch, window and stop is one `python3 -m bench.harness window`; every report (JSON) and window
# (snapshot, for replay tests) lands in $OUT/v2; a table of verdicts, stability and unexplained idle
# share per run is printed and saved. Then the other workloads through the diagnosis benchmark, to
# show their verdicts are still right. Read-only on the GPU.
# Without a GPU: STANDIN=1 runs bench/workloads/_cpu_standin.py in place of each workload (pass NT,
# e.g. NT="python3 bench/workloads/_fake_diagnose.py", and SKIP_EARLIER=1).
[ -n "${NT:-}" ] || source bench/device/setup.sh
W=${W:-5}
D=$OUT/v2; mkdir -p $D
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
CKPT_DIR=${CKPT_DIR:-/tmp/nodetune-ckpt}

win() {  # win <tag> <offset> <window s> <workload> <args...>: launch, one diagnose at the offset, stop
  local tag=$1 at=$2 secs=$3 name=$4 script=bench/workloads/$4.py; shift 4
  [ -n "${STANDIN:-}" ] && script="bench/workloads/_cpu_standin.py --warmup 1"
  python3 -m bench.harness window --nodetune-cmd "$NT" --kind diagnose --tag "$tag" --at "$at" --seconds "$secs" \
    --interval 0.5 --timeout 120 --stop-grace 10 --cool 2 --dir "$D" --name $name -- \
    python3 $script --seconds 120 "$@"
}

run_one() {  # run_one <name> <phase args> <extra args...>
  local name=$1 phase_args=$2 settle=3; shift 2
  [ "$name" = startup ] && settle=15  # startup's steady state comes after its long start-up
  for n in $(seq 1 ${REPS:-3}); do
    win $name-launch-$n launch+2 $W $name "$@"
    win $name-steady-$n ready+$settle $W $name "$@"
    if [ "$name" = startup ]; then win $name-phase-$n launch+1 10 $name "$@"
    else win $name-phase-$n ready+1 10 $name $phase_args "$@"; fi
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
python3 -m bench.harness v2-table "$D" | tee $OUT/diagnosis_v2_table.txt

[ -n "${SKIP_EARLIER:-}" ] && exit 0
echo "== earlier workloads, still right"
python3 -m bench.harness diagnosis --seconds $W --nodetune-cmd "$NT" --save-windows $D/earlier \
  --skip startup,checkpoint,cpu_eval,half_host,straggler_2gpu --out $D/earlier_results.json 2>&1 | grep -v "^\[run_diagnosis"
ls -la $D | tail -5
