#!/usr/bin/env bash
# The agent's cost on a real GPU node beside node_exporter, in one run (under 9 minutes):
# bench/workloads/healthy_training.py on the GPU; the agent at default settings and
# prometheus-node-exporter (127.0.0.1 only) both scraped every SCRAPE_S (15 s, Prometheus's headers)
# by a Python loop for SCRAPED_S, after IDLE_S unscraped. Writes $OUT/agent_cost.md: % of a core
# unscraped and scraped, CPU per scrape with the idle CPU subtracted, the ratio, RSS start/end.
# The agent's CPU includes its reaped children (cutime+cstime: py-spy runs count as its own).
#   bash bench/device/agent_cost.sh        (root; python3.12; wheels in .whl/, optionally .debs/)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
OUT=${OUT:-/tmp/agent_cost}; IDLE_S=${IDLE_S:-90}; SCRAPED_S=${SCRAPED_S:-240}; SCRAPE_S=${SCRAPE_S:-15}
mkdir -p "$OUT"
PY=${PY:-python3}

# our dependencies from the carried wheels; nodetune itself from this checkout (its folders are
# the subpackages nodetune.<name>)
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
rm -rf /tmp/nt && mkdir -p /tmp/nt/nodetune
for d in agent cli config diagnosis probes tuners prefetch; do [ -d "$REPO/$d" ] && ln -s "$REPO/$d" "/tmp/nt/nodetune/$d"; done
export PYTHONPATH=/tmp/nt:/tmp/site${PYTHONPATH:+:$PYTHONPATH}

NE_BIN=$(command -v prometheus-node-exporter || command -v node_exporter || true)
if [ -z "$NE_BIN" ] && compgen -G ".debs/prometheus-node-exporter_*.deb" >/dev/null; then
  rm -rf /tmp/ne && dpkg -x "$(ls .debs/prometheus-node-exporter_*.deb | head -1)" /tmp/ne
  NE_BIN=/tmp/ne/usr/bin/prometheus-node-exporter
fi
[ -x "${NE_BIN:-}" ] || { echo "no node_exporter (install prometheus-node-exporter or carry its .deb in .debs/)" >&2; exit 2; }

TOTAL=$((IDLE_S + SCRAPED_S + 40))
$PY bench/workloads/healthy_training.py --seconds "$TOTAL" >"$OUT/workload.log" 2>&1 &
WL=$!
sleep 20  # the job is on the GPU before the exporters start
$PY -m nodetune.cli agent --listen 127.0.0.1:9847 >"$OUT/agent.log" 2>&1 &
AG=$!
"$NE_BIN" --web.listen-address=127.0.0.1:9100 >"$OUT/node_exporter.log" 2>&1 &
NE=$!
trap 'kill -TERM $AG $NE $WL 2>/dev/null || true' EXIT
sleep 10

$PY - "$AG" "$NE" "$IDLE_S" "$SCRAPED_S" "$SCRAPE_S" "$OUT/agent_cost.md" <<'PYEOF'
import http.client, os, sys, time
ag, ne, idle_s, scraped_s, every, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
hz = os.sysconf("SC_CLK_TCK")
who = {"nodetune agent": (ag, 9847), "node_exporter": (ne, 9100)}
HDR = {"Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                 "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "Accept-Encoding": "gzip"}

def ticks(pid):
    rest = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in rest[11:15])  # utime stime cutime cstime

def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def scrape(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics", headers=HDR)
    r = c.getresponse(); body = r.read(); c.close()
    if r.status != 200:
        sys.exit(f"agent_cost: :{port} answered {r.status}")
    return len(body)

for _, port in who.values():
    scrape(port)  # warm
rss0 = {k: rss_mb(p) for k, (p, _) in who.items()}
t0, c0 = time.monotonic(), {k: ticks(p) for k, (p, _) in who.items()}
time.sleep(idle_s)
t1, c1 = time.monotonic(), {k: ticks(p) for k, (p, _) in who.items()}
n, size = 0, {}
while True:
    slot = t1 + n * every
    if slot - t1 >= scraped_s:
        break
    time.sleep(max(0.0, slot - time.monotonic()))
    size = {k: scrape(port) for k, (_, port) in who.items()}
    n += 1
time.sleep(max(0.0, t1 + scraped_s - time.monotonic()))
t2, c2 = time.monotonic(), {k: ticks(p) for k, (p, _) in who.items()}
rss1 = {k: rss_mb(p) for k, (p, _) in who.items()}
rows, pct = [], {}
for k in who:
    idle, busy = (c1[k] - c0[k]) / hz, (c2[k] - c1[k]) / hz
    pct[k] = 100 * busy / (t2 - t1)
    per = (busy - idle * (t2 - t1) / (t1 - t0)) / max(n, 1) * 1e3
    rows.append(f"| {k} | {100 * idle / (t1 - t0):.3f} | {pct[k]:.3f} | {per:.1f} | {c2[k] - c1[k]} | {size.get(k, 0)} | {rss0[k]:.1f} | {rss1[k]:.1f} |")
ratio = pct["nodetune agent"] / pct["node_exporter"] if pct["node_exporter"] else float("inf")
text = "\n".join([
    "# agent cost beside node_exporter on this GPU node, healthy_training.py running",
    "",
    f"{n} scrapes every {every:g} s over {t2 - t1:.0f} s (idle phase {t1 - t0:.0f} s before); CLK_TCK {hz}; "
    "agent CPU includes reaped children (py-spy)",
    "",
    "| exporter | idle % core | scraped % core | ms/scrape (idle subtracted) | ticks scraped | bytes (gzip) | RSS MB start | RSS MB end |",
    "|---|---|---|---|---|---|---|---|",
    *rows,
    "",
    f"agent / node_exporter CPU while scraped: {ratio:.2f}x (goal <= 1.5x); agent RSS {rss1['nodetune agent']:.1f} MB (goal <= 45)",
    ""])
open(out, "w").write(text)
print(text)
PYEOF
curl -s -o "$OUT/agent_metrics.txt" http://127.0.0.1:9847/metrics || true
