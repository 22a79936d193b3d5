#!/usr/bin/env bash
# The 2-GPU kind in one call: topo vs nvidia-smi for every
# GPU pair, a snapshot for examples/, one workload per GPU at once plus a 2-process NCCL
# all-reduce, `tune plan --profile training-throughput` (plan only), the sampling cost, the
# tuning proof (host knobs, rolled back in the same run) and the loader benchmark.
# GPU settings are never changed; NVLink multicast stays off (setup.sh exports the variables).
source bench/device/setup.sh
R=/tmp/res; mkdir -p $R
nvidia-smi topo -m 2>&1 | tee $R/topo_m.txt
python3 bench/device/compare_smi.py 2>&1 | tee $OUT/compare_smi.txt | grep -v "^GPU. *\(uuid\|serial\)"
$NT topo
$NT tune plan --profile training-throughput 2>&1 | tee $R/tune_plan.txt | tail -25
python3 -m bench.harness diagnosis --seconds ${W:-5} --concurrent --nodetune-cmd "$NT" --save-windows $R/windows \
  --snapshot-during allreduce:$R/h200x2-allreduce.json.gz \
  --out $R/diagnosis_results.json --save-raw $R/diagnose_raw 2>&1 | tee $R/runner.log | grep -v "^\[run_diagnosis"
cp $R/diagnosis_table.txt $OUT/ 2>/dev/null
python3 bench/bench_sample.py --live --calls 8 2>&1 | tee $OUT/bench_sample.txt
OUT=$R/proof bash bench/tuning/device_tuning_proof.sh 2>&1 | tee $OUT/tuning_proof.txt | tail -40
SECS=15 REPS=2 OUT=$R/loader bash bench/tuning/run_loader_bench.sh 2>&1 | tee $OUT/loader_bench.txt | tail -25
tar czf $OUT/results.tgz -C $R . 2>/dev/null
ls -la $OUT
