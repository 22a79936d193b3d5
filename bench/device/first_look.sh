#!/usr/bin/env bash
# First look at a lent GPU machine: nodetune topo/snapshot/diagnose against nvidia-smi, the sysfs
# of the GPU, GPM under a bf16 matmul. Read-only on the GPU: no setting is changed.
source bench/device/setup.sh
nvidia-smi > $OUT/nvsmi.txt; nvidia-smi topo -m > $OUT/topo_m.txt 2>&1; nvidia-smi -q > $OUT/nvsmi_q.txt
cat $OUT/topo_m.txt
python3 -c "import pynvml,torch,sys; print('pynvml', pynvml.__file__, 'torch', torch.__version__, sys.version)"
time $NT --help >/dev/null
time $NT topo --json > $OUT/topo.json
$NT topo
for d in /sys/bus/pci/devices/*; do c=$(cat $d/class); case $c in 0x03*|0x01*|0x02*|0x0680*) echo "$d $(readlink -f $d) class=$c numa=$(cat $d/numa_node) local=$(cat $d/local_cpulist) speed=$(cat $d/current_link_speed 2>&1)/$(cat $d/max_link_speed 2>&1) width=$(cat $d/current_link_width 2>&1)/$(cat $d/max_link_width 2>&1)";; esac; done > $OUT/sysfs_pci.txt 2>&1
cat $OUT/sysfs_pci.txt
ls /sys/class/hwmon /sys/class/thermal /sys/devices/system/cpu/cpu0/cpufreq 2>&1 | head; cat /proc/pressure/io; cat /sys/kernel/mm/transparent_hugepage/enabled
python3 - <<'PY' &
import torch, time
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
torch.cuda.synchronize(); print("READY", flush=True)
t = time.time()
while time.time() - t < 25:
    for _ in range(20): c = a @ b
    torch.cuda.synchronize()
PY
W=$!; sleep 8
time $NT diagnose --json --seconds 5 --save $OUT/snap_matmul.json.gz > $OUT/diag_matmul.json
$NT diagnose --replay $OUT/snap_matmul.json.gz -v
time $NT snapshot -o $OUT/snap_topo.json --seconds 2 --interval 0.5
kill $W; wait
[ -f bench/bench_sample.py ] && python3 bench/bench_sample.py --live 2>&1 | tail -15
true
