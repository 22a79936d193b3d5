#!/usr/bin/env bash
# One 10-minute call on the GPU machine: the agent's cost, the diagnosis v2 workloads and the history:
# - `nodetune agent` at default settings and Debian's prometheus-node-exporter (carried .deb,
#   unpacked under /tmp) both scraped every SCRAPE_S s for the whole run;
# - meanwhile the diagnosis v2 workloads run one after another (bench/device/diagnosis_v2_run.sh:
#   startup, checkpoint, cpu_eval, half_host; 3 positions x REPS), so the agent's history sees a
#   sequence of different jobs;
# - at the end: agent and node_exporter CPU (% of one core over the run), RSS, CPU per scrape
#   (20 back-to-back scrapes each), `nodetune history` and each job's timeline.
# Read-only on the GPU. Everything lands in $OUT (packed: the device returns at most 8 files).
source bench/device/setup.sh
SCRAPE_S=${SCRAPE_S:-15}
mkdir -p /tmp/ne && dpkg -x .debs/prometheus-node-exporter_*.deb /tmp/ne
NE_BIN=/tmp/ne/usr/bin/prometheus-node-exporter
$NT agent > $OUT/agent.log 2>&1 &
AG=$!
$NE_BIN --web.listen-address=127.0.0.1:9100 > $OUT/node_exporter.log 2>&1 &
NE=$!
sleep 4
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
a0=$(ticks $AG); n0=$(ticks $NE); t0=$(date +%s.%N)
( while kill -0 $AG 2>/dev/null; do curl -s -o /dev/null localhost:9847/metrics; curl -s -o /dev/null localhost:9100/metrics; sleep $SCRAPE_S; done ) &
SC=$!
# the agent is up and scraped: check once, so a broken agent fails the run in seconds, not minutes
curl -sf localhost:9847/metrics | grep -c '^nodetune_' | sed 's/^/agent series at start: /' || { echo "agent not serving"; tail -20 $OUT/agent.log; exit 1; }
# workloads one after another: the v2 workloads not yet measured, then long single jobs for the history
ONLY=${ONLY:-} REPS=${REPS:-3} SKIP_EARLIER=1 timeout ${V2_S:-200} bash bench/device/diagnosis_v2_run.sh > $OUT/diagnosis_v2.txt 2>&1
for w in ${SEQ:-compute_bound cpu_starved memory_bound}; do
  echo "$(date +%T) $w" >> $OUT/diagnosis_v2.txt
  python3 bench/workloads/$w.py --seconds ${JOB_S:-100} --device cuda:0 > /dev/null 2>&1
done
t1=$(date +%s.%N); a1=$(ticks $AG); n1=$(ticks $NE)
per_scrape() { local c0 c1; c0=$(ticks $1); for _ in $(seq 20); do curl -s -o /dev/null $2; done; c1=$(ticks $1)
  echo "$c0 $c1" | awk -v hz=$HZ '{printf "%.2f", ($2-$1)/hz*1000/20}'; }
{
  echo "run_s=$(echo "$t0 $t1" | awk '{printf "%.0f", $2-$1}') scrape_interval_s=$SCRAPE_S"
  echo "$a0 $a1 $t0 $t1" | awk -v hz=$HZ '{printf "agent_cpu_pct_of_core=%.3f\n", ($2-$1)/hz/($4-$3)*100}'
  echo "agent_rss_mb=$(( $(rss_kb $AG) / 1024 ))"
  echo "$n0 $n1 $t0 $t1" | awk -v hz=$HZ '{printf "node_exporter_cpu_pct_of_core=%.3f\n", ($2-$1)/hz/($4-$3)*100}'
  echo "node_exporter_rss_mb=$(( $(rss_kb $NE) / 1024 ))"
  echo "agent_cpu_ms_per_scrape=$(per_scrape $AG localhost:9847/metrics)"
  echo "node_exporter_cpu_ms_per_scrape=$(per_scrape $NE localhost:9100/metrics)"
  echo "agent_exposition_bytes=$(curl -s localhost:9847/metrics | wc -c) node_exporter_exposition_bytes=$(curl -s localhost:9100/metrics | wc -c)"
} 2>&1 | tee $OUT/overhead.txt
curl -s localhost:9847/metrics > $OUT/v2/agent_metrics.txt
kill $SC 2>/dev/null
{ echo "== nodetune history"; $NT history
  for j in $($NT history --json | python3 -c "import json,sys; print(' '.join(j['job'] for j in json.load(sys.stdin)[:6]))"); do
    echo; echo "== nodetune history $j"; $NT history $j; done; } 2>&1 | tee $OUT/history.txt
kill -TERM $AG $NE; wait $AG
grep -c . $OUT/agent.log | sed 's/^/agent log lines: /'; tail -5 $OUT/agent.log
mv $OUT/agent.log $OUT/node_exporter.log $OUT/v2/ 2>/dev/null
tar czf $OUT/v2.tgz -C $OUT v2 && rm -rf $OUT/v2
ls -la $OUT
