#!/usr/bin/env bash
# Agent overhead on a real GPU node, one shot: the agent at default settings (plus
# prometheus-node-exporter when installed) while bench/workloads/healthy_training.py runs; both
# scraped at the same rate for MINUTES; writes CPU % of one core, RSS and CPU per scrape to $OUT.
#   MINUTES=10 SCRAPE_S=15 bash bench/device/agent_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/agent_overhead}; MINUTES=${MINUTES:-10}; SCRAPE_S=${SCRAPE_S:-15}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
$PY bench/workloads/healthy_training.py --seconds $((MINUTES * 60 + 60)) >"$OUT/workload.log" 2>&1 &
WL=$!
sleep 20  # the job is on the GPU before the agent starts
$PY -m nodetune.cli agent --listen 127.0.0.1:9847 >"$OUT/agent.log" 2>&1 &
AG=$!
NE=""
if command -v prometheus-node-exporter >/dev/null; then
  prometheus-node-exporter --web.listen-address=127.0.0.1:9100 >"$OUT/node_exporter.log" 2>&1 &
  NE=$!
else
  echo "prometheus-node-exporter not installed: reporting the agent only" | tee "$OUT/note.txt"
fi
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)
a0=$(ticks $AG); n0=${NE:+$(ticks $NE)}; t0=$(date +%s.%N); scrapes=0
end=$(( $(date +%s) + MINUTES * 60 ))
while [ "$(date +%s)" -lt "$end" ]; do
  curl -s -o /dev/null http://127.0.0.1:9847/metrics
  [ -n "$NE" ] && curl -s -o /dev/null http://127.0.0.1:9100/metrics
  scrapes=$((scrapes + 1)); sleep "$SCRAPE_S"
done
t1=$(date +%s.%N); a1=$(ticks $AG); n1=${NE:+$(ticks $NE)}
# CPU per scrape: 20 back-to-back scrapes, minus the idle CPU of the same wall time.
per_scrape() { local pid=$1 url=$2 c0 c1 w0 w1; c0=$(ticks "$pid"); w0=$(date +%s.%N)
  for _ in $(seq 20); do curl -s -o /dev/null "$url"; done
  c1=$(ticks "$pid"); w1=$(date +%s.%N)
  echo "$c0 $c1 $w0 $w1" | awk -v hz="$HZ" '{printf "%.2f", ($2-$1)/hz*1000/20}'; }
{
  echo "minutes=$MINUTES scrape_interval_s=$SCRAPE_S scrapes=$scrapes"
  echo "$a0 $a1 $t0 $t1" | awk -v hz="$HZ" '{printf "agent_cpu_pct_of_core=%.3f\n", ($2-$1)/hz/($4-$3)*100}'
  echo "agent_rss_mb=$(( $(rss_kb $AG) / 1024 ))"
  echo "agent_cpu_ms_per_scrape=$(per_scrape $AG http://127.0.0.1:9847/metrics)"
  if [ -n "$NE" ]; then
    echo "$n0 $n1 $t0 $t1" | awk -v hz="$HZ" '{printf "node_exporter_cpu_pct_of_core=%.3f\n", ($2-$1)/hz/($4-$3)*100}'
    echo "node_exporter_rss_mb=$(( $(rss_kb $NE) / 1024 ))"
    echo "node_exporter_cpu_ms_per_scrape=$(per_scrape $NE http://127.0.0.1:9100/metrics)"
  fi
} | tee "$OUT/overhead.txt"
curl -s http://127.0.0.1:9847/metrics >"$OUT/agent_metrics.txt"
kill -TERM $AG ${NE:+$NE} 2>/dev/null || true
kill $WL 2>/dev/null || true
wait 2>/dev/null || true
