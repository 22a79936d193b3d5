"""An exporter as a benchmark sees it: its CPU and memory from /proc, and a scrape the way Prometheus
sends one. Shared by the benchmarks that set the agent beside node_exporter."""

from __future__ import annotations

import http.client
import time

# Prometheus 2.x's Accept header (OpenMetrics first) and gzip, as a real scrape asks.
PROM_HEADERS = {"Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                          "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "Accept-Encoding": "gzip",
                "X-Prometheus-Scrape-Timeout-Seconds": "10"}


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(own utime+stime, reaped children's cutime+cstime) in clock ticks: an agent's py-spy runs
    are its children."""
    with open(f"/proc/{pid}/stat") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def rss_mb(pid: int) -> float:
    """Resident set size in MiB (nan where the status file has none)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def scrape(port: int) -> tuple[int, int, float]:
    """One scrape of 127.0.0.1:`port`/metrics: (HTTP status, body bytes, seconds it took)."""
    t = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics", headers=PROM_HEADERS)
        r = c.getresponse()
        body = r.read()
        return r.status, len(body), time.monotonic() - t
    finally:
        c.close()
