#!/usr/bin/env bash
# The house on a real GPU node: the moved CLI (--version, topo, diagnose live and --replay,
# snapshot, config check, one-line errors) against real NVML, plus facts the next runs need
# (kernel, io_uring, node_exporter, typer). Read-only on the GPU.
source bench/device/setup.sh
{
echo "== facts"; uname -r; cat /proc/sys/kernel/io_uring_disabled 2>&1; nproc; python3 -c "import typer, prometheus_client; print('typer', typer.__version__, 'prometheus_client', prometheus_client.__version__ if hasattr(prometheus_client,'__version__') else '?')"
command -v prometheus-node-exporter node_exporter fio prometheus 2>&1; ls /usr/bin | grep -i -E "node.exporter|fio$" ; getconf PAGE_SIZE
echo "== version"; $NT --version
echo "== topo"; $NT topo
echo "== diagnose idle node (4 s)"; $NT diagnose --seconds 4
echo "== diagnose with a compute-bound job"; python3 bench/workloads/compute_bound.py --seconds 30 >/dev/null 2>&1 & sleep 10
$NT diagnose --seconds 5 --json > $OUT/live_compute.json; python3 -c "import json; r=json.load(open('$OUT/live_compute.json')); print([(g['verdict'], g['cause'], g['healthy'], g['confidence']) for g in r['gpus']])"
$NT snapshot -o $OUT/snap.json.gz --seconds 3 --interval 0.5; kill %1; wait
echo "== replay shipped + fresh snapshot"; $NT diagnose --replay examples/h200-dataloader-starved.json.gz | head -12; $NT diagnose --replay $OUT/snap.json.gz --json | python3 -c "import json,sys; r=json.load(sys.stdin); print([(g['verdict'], g['cause']) for g in r['gpus']], 'page_kb')"
python3 -c "import gzip,json; print('page_kb in snapshot:', json.load(gzip.open('$OUT/snap.json.gz'))['topology']['node'].get('page_kb'))"
echo "== one-line errors"; $NT diagnose --seconds abc; echo "rc=$?"; $NT exec --gpu abc -- true; echo "rc=$?"; $NT config check; echo "rc=$?"
echo "== bench_sample"; python3 bench/bench_sample.py --live 2>&1 | tail -12
} 2>&1 | tee $OUT/house_check.txt
