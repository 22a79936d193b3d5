#!/usr/bin/env bash
# Diagnosis on real framework jobs from their first second (bench/workloads/frameworks). For each
# workload: launch it, record a 60-s snapshot from launch (0.5-s samples, py-spy slices across the
# whole window), stop it. Two agents run throughout on the same jobs, one with stacks (the default)
# and one without, so their history rows and their CPU (py-spy children included) compare side by
# side. Windows at 2, 10 and ~50 s after launch are cut from the snapshots and diagnosed afterwards
# (bench/frameworks_table.py). node_exporter runs beside the agents and all three are scraped every
# 15 s (bench/device/scrape_side_by_side.py): their CPU and RSS side by side. Read-only on the GPU;
# page cache dropped only for the shard reader. Each launch, recording and stop is one
# `python3 -m bench.harness window`.
[ -n "${NT:-}" ] || source bench/device/setup.sh
D=$OUT/fw; mkdir -p $D /tmp/nt
REC=${REC:-60}
W=bench/workloads/frameworks
ONLY=${ONLY:-"tv_imagefolder hf_gpt2_train pl_checkpoint timm_infer hf_generate pageable_loader wds_shards"}
echo "== data"
python3 $W/tv_imagefolder.py --make 1000 --data /tmp/nt-imgs 2>&1 | tail -2 &
python3 $W/wds_shards.py --make 20 --data /tmp/nt-shards 2>&1 | tail -2 &
wait
python3 -m bench.harness agent-config --out /tmp/nt/stacks.toml --listen 127.0.0.1:9847 \
  --history /tmp/nt/history-stacks.sqlite --stacks on
python3 -m bench.harness agent-config --out /tmp/nt/nostacks.toml --listen 127.0.0.1:9848 \
  --history /tmp/nt/history-nostacks.sqlite --stacks off
ticks() { awk '{print $14+$15+$16+$17}' /proc/$1/stat; }
$NT agent --config /tmp/nt/stacks.toml > $D/agent-stacks.log 2>&1 & A1=$!
$NT agent --config /tmp/nt/nostacks.toml > $D/agent-nostacks.log 2>&1 & A2=$!
# node_exporter beside them (its Debian package carried in .debs/), all three scraped every 15 s
# with Prometheus's headers for the whole run: CPU and RSS side by side on the same node and jobs.
NE_BIN=$(python3 -m bench.harness node-exporter 2>/dev/null || true)
NE=""
if [ -x "${NE_BIN:-}" ]; then
  "$NE_BIN" --web.listen-address=127.0.0.1:9100 > $D/node_exporter.log 2>&1 & NE=$!
fi
sleep 5
python3 bench/device/scrape_side_by_side.py --every 15 --out $D/scrapes.json \
  "agent (stacks)=$A1:9847" "agent (no stacks)=$A2:9848" ${NE:+"node_exporter=$NE:9100"} > $D/scrape.log 2>&1 & SC=$!
T0=$(date +%s.%N); C1=$(ticks $A1); C2=$(ticks $A2)
for name in $ONLY; do
  args=""
  case $name in
    tv_imagefolder) args="--data /tmp/nt-imgs";;
    pl_checkpoint) args="--dir /tmp/nt-ckpt";;
    wds_shards) args="--data /tmp/nt-shards"; sync; echo 3 > /proc/sys/vm/drop_caches;;
  esac
  python3 -m bench.harness window --nodetune-cmd "$NT" --kind snapshot --tag $name --at launch+0 --seconds $REC \
    --interval 0.5 --note "$name from launch" --timeout $((REC + 40)) --stop-grace 10 --cool 3 --dir $D \
    --stdout $D/$name.out --log-tail -- python3 $W/$name.py --seconds $((REC + 30)) $args
done
T1=$(date +%s.%N); E1=$(ticks $A1); E2=$(ticks $A2)
python3 - "$T0" "$T1" "$C1" "$E1" "$C2" "$E2" <<'PY' | tee $D/agent_cpu.md
import os, sys
t0, t1, c1, e1, c2, e2 = map(float, sys.argv[1:])
hz = os.sysconf("SC_CLK_TCK"); wall = t1 - t0
print(f"| agent | CPU % of a core over {wall:.0f} s (utime+stime, py-spy children included) |")
print("|---|---|")
print(f"| stacks on (default: 5 Hz, 10-s slices) | {100 * (e1 - c1) / hz / wall:.2f} |")
print(f"| stacks off | {100 * (e2 - c2) / hz / wall:.2f} |")
PY
kill -INT $SC; wait $SC; cat $D/scrapes.md 2>/dev/null || tail -3 $D/scrape.log
sleep 16  # one more diagnosis after the last job ended
for v in stacks nostacks; do
  $NT history --db /tmp/nt/history-$v.sqlite --since 1h --json > $D/history-$v.json 2> $D/history-$v.err || \
    echo "history ($v) failed: $(tail -1 $D/history-$v.err)"
done
kill -TERM $A1 $A2 $NE; wait $A1 $A2 $NE 2>/dev/null
rm -rf /tmp/nt-ckpt
cd $D && cp /tmp/nt/*.sqlite . ; tar czf $OUT/fw.tar.gz *.json.gz *.json *.log *.md *.out *.sqlite 2>/dev/null; ls -la $OUT
