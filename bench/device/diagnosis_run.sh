#!/usr/bin/env bash
# The diagnosis on one GPU: every bench workload diagnosed by nodetune (confusion table and the
# time diagnose takes beyond its window), the diagnosed windows kept for replay tests, the
# sampling-cost benchmark, and a field-by-field comparison with nvidia-smi. Read-only on the GPU.
source bench/device/setup.sh
R=/tmp/res; mkdir -p $R
python3 -m bench.harness diagnosis --seconds ${W:-5} --nodetune-cmd "$NT" --save-windows $R/windows \
  --out $R/diagnosis_results.json --save-raw $R/diagnose_raw ${RUNNER_ARGS:-} 2>&1 | tee $R/runner.log | grep -v "^\[run_diagnosis" 
cp $R/diagnosis_table.txt $OUT/ 2>/dev/null
python3 bench/bench_sample.py --live 2>&1 | tee $OUT/bench_sample.txt
python3 bench/bench_help.py 2>&1 | tee $OUT/bench_help.txt | tail -8
python3 bench/device/compare_smi.py 2>&1 | tee $OUT/compare_smi.txt | tail -45
tar czf $OUT/results.tgz -C $R . 2>/dev/null
ls -la $OUT
