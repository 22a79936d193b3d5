#!/usr/bin/env bash
# The agent's cost on a real GPU node beside node_exporter, side by side in one run (about 6.5 min):
# two agents (stacks on, the default; stacks off) and prometheus-node-exporter, all on 127.0.0.1,
# measured on one clock, unscraped then scraped every SCRAPE_S (15 s, Prometheus's headers):
#   A. bench/workloads/healthy_training.py (GPU busy throughout: the agent starts no py-spy slice
#      on a GPU that never dips)
#   B. bench/workloads/cpu_starved.py --workers 4 (DataLoader workers, GPU mostly idle: py-spy runs,
#      workers followed)
# Writes $OUT/agent_cost.md (one table per phase: % of a core unscraped and scraped, py-spy's share,
# CPU per scrape with the idle CPU subtracted, RSS start/end) and prints it; the agents' logs and
# last expositions are beside it. The agents' CPU includes the py-spy runs they reaped.
#   bash bench/device/agent_cost.sh        (root; python3 with torch; wheels in .whl/, optionally .debs/)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
OUT=${OUT:-/tmp/agent_cost}; SCRAPE_S=${SCRAPE_S:-15}
A_IDLE=${A_IDLE:-45}; A_SCRAPED=${A_SCRAPED:-120}; B_IDLE=${B_IDLE:-30}; B_SCRAPED=${B_SCRAPED:-90}
mkdir -p "$OUT"
PY=${PY:-python3}
T0=$(date +%s)

# our dependencies from the carried wheels (py-spy's binary lands in /tmp/site/bin: the agent finds
# it on PATH); nodetune itself from this checkout (its folders are the subpackages nodetune.<name>)
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
rm -rf /tmp/nt && mkdir -p /tmp/nt/nodetune
for d in agent cli config diagnosis probes tuners prefetch; do [ -d "$REPO/$d" ] && ln -s "$REPO/$d" "/tmp/nt/nodetune/$d"; done
export PYTHONPATH=/tmp/nt:/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
command -v py-spy >/dev/null || echo "warning: py-spy not on PATH: the stacks-on agent will say so and sample none" >&2
$PY -c "import prometheus_client, pynvml, torch" || { echo "agent_cost: $PY lacks prometheus_client, nvidia-ml-py or torch" >&2; exit 2; }

NE_BIN=$($PY -m bench.harness node-exporter) || exit 2

# one config per agent: its own history file (two agents, one SQLite file would contend)
for a in on off; do
  $PY -m bench.harness agent-config --out "$OUT/agent_$a/config.toml" --history "$OUT/agent_$a/history.sqlite" --stacks $a
done
: >"$OUT/agent_cost.md"
{ echo "# agent cost beside node_exporter on $(hostname) ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo '?'), $(nproc) CPUs)"
  echo; echo "Printed by bench/device/agent_cost.sh; agents at default settings but for stacks (and a history file each)."
  echo; } >>"$OUT/agent_cost.md"

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

phase() {  # TAG "TITLE" IDLE_S SCRAPED_S WARMUP_S WORKLOAD...
  local name=$1 title=$2 idle=$3 scraped=$4 warm=$5; shift 5
  local total=$((warm + 15 + idle + scraped + 20))
  $PY "$@" --seconds "$total" >"$OUT/workload_${name}.log" 2>&1 &
  local wl=$!
  PIDS=("$wl")
  sleep "$warm"  # the job is on the GPU before the exporters start
  # what `nodetune agent` execs into (the daemon's lean entry point: no typer, rich or pydantic)
  $PY -m nodetune.agent --config "$OUT/agent_on/config.toml" --listen 127.0.0.1:9847 >"$OUT/agent_on/${name}.log" 2>&1 &
  local on=$!
  $PY -m nodetune.agent --config "$OUT/agent_off/config.toml" --listen 127.0.0.1:9848 >"$OUT/agent_off/${name}.log" 2>&1 &
  local off=$!
  "$NE_BIN" --web.listen-address=127.0.0.1:9100 >"$OUT/node_exporter_${name}.log" 2>&1 &
  local ne=$!
  PIDS=("$wl" "$on" "$off" "$ne")
  sleep 15  # first samples, first diagnosis window under way
  $PY bench/device/agent_cost_measure.py --phase "$title" --idle "$idle" --scraped "$scraped" --every "$SCRAPE_S" \
    --out "$OUT/agent_cost.md" "nodetune agent, stacks on=$on:9847" "nodetune agent, stacks off=$off:9848" \
    "node_exporter=$ne:9100"
  curl -s -o "$OUT/agent_on/${name}_metrics.txt" http://127.0.0.1:9847/metrics || true
  curl -s -o "$OUT/agent_off/${name}_metrics.txt" http://127.0.0.1:9848/metrics || true
  kill -TERM "$on" "$off" "$ne" "$wl" 2>/dev/null || true
  wait "$on" "$off" "$ne" "$wl" 2>/dev/null || true
  PIDS=()
}

phase A "A: healthy_training.py (GPU busy)" "$A_IDLE" "$A_SCRAPED" 20 bench/workloads/healthy_training.py
phase B "B: cpu_starved.py --workers 4 (GPU starved, loader workers)" "$B_IDLE" "$B_SCRAPED" 15 \
  bench/workloads/cpu_starved.py --workers 4
echo "verdicts the stacks-on agent gave (last exposition of each phase):" | tee -a "$OUT/agent_cost.md"
grep -h '^nodetune_gpu_verdict{.*} 1' "$OUT"/agent_on/*_metrics.txt 2>/dev/null | tee -a "$OUT/agent_cost.md" || true
grep -h '^nodetune_agent_sample_cpu_seconds\|^nodetune_agent_diagnosis_duration_seconds_sum\|^nodetune_agent_diagnoses_total' "$OUT"/agent_on/*_metrics.txt 2>/dev/null | head -8 \
  | tee -a "$OUT/agent_cost.md" || true
echo "total $(( $(date +%s) - T0 )) s" | tee -a "$OUT/agent_cost.md"
