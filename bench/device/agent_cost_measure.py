"""Side-by-side CPU and RSS of exporters already running, unscraped then scraped at Prometheus's rate.

    python3 bench/device/agent_cost_measure.py --phase NAME --idle 45 --scraped 120 --every 15 \
        --out FILE.md "agent, stacks on=PID:PORT" "agent, stacks off=PID:PORT" "node_exporter=PID:PORT"

One clock for all of them: every exporter's ticks are read at the same instants, so the machine's
load hits them alike. CPU is utime+stime of /proc/PID/stat plus cutime+cstime (children it reaped:
the agent's py-spy runs count as its own), shown apart as "children". Per scrape: the scraped
phase's CPU minus the idle phase's rate over the same time, over the scrapes. Appends a markdown
section to --out and prints it. Standard library only (runs before anything is installed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from exporter_probe import cpu_ticks, rss_mb, scrape

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: bench.harness
from bench.harness.agents import parse_target  # noqa: E402


def body_bytes(port: int) -> int:
    status, size, _ = scrape(port)
    if status != 200:
        sys.exit(f"agent_cost: :{port} answered {status}")
    return size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", required=True)
    ap.add_argument("--idle", type=float, default=45)
    ap.add_argument("--scraped", type=float, default=120)
    ap.add_argument("--every", type=float, default=15)
    ap.add_argument("--out", required=True)
    ap.add_argument("targets", nargs="+", help="NAME=PID:PORT")
    a = ap.parse_args()
    who = {e.name: (e.pid, e.port) for e in map(parse_target, a.targets)}
    hz = os.sysconf("SC_CLK_TCK")
    for _, port in who.values():
        body_bytes(port)  # warm: first render, collectors' set-up
    rss0 = {k: rss_mb(p) for k, (p, _) in who.items()}
    t0, c0 = time.monotonic(), {k: cpu_ticks(p) for k, (p, _) in who.items()}
    time.sleep(a.idle)
    t1, c1 = time.monotonic(), {k: cpu_ticks(p) for k, (p, _) in who.items()}
    n, size = 0, {k: 0 for k in who}
    while t1 + n * a.every - t1 < a.scraped:
        time.sleep(max(0.0, t1 + n * a.every - time.monotonic()))
        size = {k: body_bytes(port) for k, (_, port) in who.items()}
        n += 1
    time.sleep(max(0.0, t1 + a.scraped - time.monotonic()))
    t2, c2 = time.monotonic(), {k: cpu_ticks(p) for k, (p, _) in who.items()}
    rss1 = {k: rss_mb(p) for k, (p, _) in who.items()}
    rows, pct = [], {}
    for k in who:
        idle = (sum(c1[k]) - sum(c0[k])) / hz
        busy = (sum(c2[k]) - sum(c1[k])) / hz
        kids = (c2[k][1] - c0[k][1]) / hz
        pct[k] = 100 * busy / (t2 - t1)
        per = (busy - idle * (t2 - t1) / (t1 - t0)) / max(n, 1) * 1e3
        rows.append(f"| {k} | {100 * idle / (t1 - t0):.3f} | {pct[k]:.3f} | {100 * kids / (t2 - t0):.3f} | {per:.1f} | "
                    f"{sum(c2[k]) - sum(c1[k])} | {size[k]} | {rss0[k]:.1f} | {rss1[k]:.1f} |")
    ne = next((k for k in who if "node_exporter" in k), None)
    lines = [f"## {a.phase}", "",
             f"{n} scrapes every {a.every:g} s over {t2 - t1:.0f} s, after {t1 - t0:.0f} s unscraped; CLK_TCK {hz}; "
             "CPU includes reaped children (py-spy), also shown alone over both phases", "",
             "| exporter | unscraped % core | scraped % core | children % core | ms/scrape (idle subtracted) | "
             "ticks scraped | bytes (gzip) | RSS MB start | RSS MB end |",
             "|---|---|---|---|---|---|---|---|---|", *rows, ""]
    if ne is not None and pct[ne] > 0:
        for k in who:
            if k != ne:
                lines.append(f"- {k} / node_exporter CPU while scraped: {pct[k] / pct[ne]:.2f}x (goal <= 1.5x); "
                             f"RSS {rss1[k]:.1f} MB (goal <= 45)")
        lines.append("")
    text = "\n".join(lines)
    with open(a.out, "a") as fh:
        fh.write(text + "\n")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
