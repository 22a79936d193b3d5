"""Scrape several exporters at Prometheus's rate until interrupted, then print their CPU and RSS
side by side (a markdown table, also written beside --out as .md).

    python3 scrape_side_by_side.py --every 15 --out DIR/scrapes.json "name=PID:PORT" ...

CPU is utime+stime+cutime+cstime of each PID (an agent's py-spy children count as its own) over
the whole scraped span; RSS at the start and the end. Only 127.0.0.1 is scraped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from exporter_probe import cpu_ticks, rss_mb, scrape

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: bench.harness
from bench.harness.agents import parse_target  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--every", type=float, default=15.0)
    p.add_argument("--out", required=True)
    p.add_argument("targets", nargs="+", help="name=PID:PORT")
    a = p.parse_args()
    targets = [(e.name, e.pid, e.port) for e in map(parse_target, a.targets)]
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    hz = os.sysconf("SC_CLK_TCK")
    t0 = time.monotonic()
    c0 = {n: sum(cpu_ticks(pid)) for n, pid, _ in targets}
    r0 = {n: rss_mb(pid) for n, pid, _ in targets}
    n = 0
    sizes: dict[str, list[int]] = {name: [] for name, _, _ in targets}
    lat: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    while not stop:
        for name, _, port in targets:
            try:
                status, size, dt = scrape(port)
                size = size if status == 200 else -status
            except OSError as exc:
                size, dt = -1, float("nan")
                print(f"{name}: scrape failed: {exc}", flush=True)
            sizes[name].append(size)
            lat[name].append(dt)
        n += 1
        nxt = t0 + n * a.every
        while not stop and time.monotonic() < nxt:
            time.sleep(min(0.2, max(0.0, nxt - time.monotonic())))
    wall = time.monotonic() - t0
    rows = []
    for name, pid, _ in targets:
        try:
            cpu = (sum(cpu_ticks(pid)) - c0[name]) / hz
            rss1 = rss_mb(pid)
        except OSError:
            cpu, rss1 = float("nan"), float("nan")
        ok = [s for s in sizes[name] if s > 0]
        rows.append({"name": name, "cpu_pct": 100 * cpu / wall, "cpu_ms_per_scrape": 1000 * cpu / max(n, 1),
                     "rss_start_mb": r0[name], "rss_end_mb": rss1, "scrapes": n, "ok": len(ok),
                     "bytes": (sum(ok) // len(ok)) if ok else 0,
                     "p50_ms": 1000 * sorted(lat[name])[len(lat[name]) // 2] if lat[name] else float("nan")})
    base = next((r for r in rows if r["name"] == "node_exporter"), None)
    lines = [f"Scraped every {a.every:.0f} s for {wall:.0f} s ({n} scrapes each); CPU includes reaped children.", "",
             "| exporter | CPU % of a core | x node_exporter | ms CPU per scrape interval | RSS start -> end (MB) "
             "| scrapes ok | body bytes | scrape p50 ms |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['cpu_pct'] / base['cpu_pct']:.1f}x" if base and base["cpu_pct"] > 0 else "-"
        lines.append(f"| {r['name']} | {r['cpu_pct']:.2f} | {ratio} | {r['cpu_ms_per_scrape']:.1f} | "
                     f"{r['rss_start_mb']:.0f} -> {r['rss_end_mb']:.0f} | {r['ok']}/{r['scrapes']} | {r['bytes']} | "
                     f"{r['p50_ms']:.1f} |")
    with open(a.out, "w") as fh:
        json.dump(rows, fh, indent=1)
    with open(os.path.splitext(a.out)[0] + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
