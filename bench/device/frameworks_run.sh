#!/usr/bin/env bash
# Diagnosis on real framework jobs from their first second (bench/workloads/frameworks). For each
# workload: launch it, record a 60-s snapshot from launch (0.5-s samples, py-spy slices across the
# whole window), stop it. Two agents run throughout on the same jobs, one with stacks (the default)
# and one without, so their history rows and their CPU (py-spy children included) compare side by
# side. Windows at 2, 10 and ~50 s after launch are cut from the snapshots and diagnosed afterwards
# (bench/frameworks_table.py). node_exporter runs beside the agents and all three are scraped every
# 15 s (bench/device/scrape_side_by_side.py): their CPU and RSS side by side. Read-only on the GPU;
# page cache dropped only for the shard reader.
[ -n "${NT:-}" ] || source bench/device/setup.sh
D=$OUT/fw; mkdir -p $D /tmp/nt
REC=${REC:-60}
W=bench/workloads/frameworks
ONLY=${ONLY:-"tv_imagefolder hf_gpt2_train pl_checkpoint timm_infer hf_generate pageable_loader wds_shards"}
echo "== data"
python3 $W/tv_imagefolder.py --make 1000 --data /tmp/nt-imgs 2>&1 | tail -2 &
python3 $W/wds_shards.py --make 20 --data /tmp/nt-shards 2>&1 | tail -2 &
wait
cat > /tmp/nt/stacks.toml <<'TOML'
[agent]
listen = "127.0.0.1:9847"
history_path = "/tmp/nt/history-stacks.sqlite"
TOML
cat > /tmp/nt/nostacks.toml <<'TOML'
[agent]
listen = "127.0.0.1:9848"
history_path = "/tmp/nt/history-nostacks.sqlite"
stacks = false
TOML
ticks() { awk '{print $14+$15+$16+$17}' /proc/$1/stat; }
$NT agent --config /tmp/nt/stacks.toml > $D/agent-stacks.log 2>&1 & A1=$!
$NT agent --config /tmp/nt/nostacks.toml > $D/agent-nostacks.log 2>&1 & A2=$!
# node_exporter beside them (its Debian package carried in .debs/), all three scraped every 15 s
# with Prometheus's headers for the whole run: CPU and RSS side by side on the same node and jobs.
NE_BIN=$(command -v prometheus-node-exporter || true)
if [ -z "$NE_BIN" ] && compgen -G ".debs/prometheus-node-exporter_*.deb" >/dev/null; then
  rm -rf /tmp/ne && dpkg -x "$(ls .debs/prometheus-node-exporter_*.deb | head -1)" /tmp/ne
  NE_BIN=/tmp/ne/usr/bin/prometheus-node-exporter
fi
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
  setsid python3 $W/$name.py --seconds $((REC + 30)) $args > $D/$name.out 2> $D/$name.log &
  P=$!
  timeout $((REC + 40)) $NT snapshot -o $D/$name.json.gz --seconds $REC --interval 0.5 --note "$name from launch" \
    > /dev/null 2> $D/$name.snap.err || echo "  snapshot of $name failed: $(tail -1 $D/$name.snap.err)"
  kill -TERM -- -$P 2>/dev/null; for _ in $(seq 1 40); do kill -0 $P 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- -$P 2>/dev/null; wait $P 2>/dev/null
  echo "  $name: $(tail -2 $D/$name.log | tr '\n' ' ' | cut -c1-200)"
  sleep 3
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
