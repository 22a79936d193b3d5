#!/usr/bin/env bash
# The final single-GPU pass on the committed code: the diagnosis runner (confusion table), the
# sampling cost with the NVML call breakdown, --help time, `exec --gpu` binding, and plan-only
# tuning against real NVML. Read-only on the GPU.
source bench/device/setup.sh
R=/tmp/res; mkdir -p $R
python3 -m bench.harness diagnosis --seconds ${W:-5} --nodetune-cmd "$NT" --save-windows $R/windows \
  --out $R/diagnosis_results.json --save-raw $R/diagnose_raw 2>&1 | tee $R/runner.log | grep -v "^\[run_diagnosis"
cp $R/diagnosis_table.txt $OUT/ 2>/dev/null
python3 bench/bench_sample.py --live --calls 8 2>&1 | tee $OUT/bench_sample.txt
python3 bench/bench_help.py 2>&1 | tee $OUT/bench_help.txt | head -5
echo "== exec --gpu 0 =="; $NT exec --gpu 0 -- python3 -c "import os; print('affinity', sorted(os.sched_getaffinity(0)))"
echo "== tune plan (plan only) with a GPU job running =="
python3 bench/workloads/cpu_starved.py --seconds 40 >/dev/null 2>&1 &
sleep 12; $NT tune plan --profile training-throughput --gpu-jobs 2>&1 | tail -20
$NT tune recommend --seconds 3 2>&1 | tail -20
echo "== diagnose, human output =="; $NT diagnose --seconds 4 2>&1
kill %1; wait
tar czf $OUT/results.tgz -C $R . 2>/dev/null
