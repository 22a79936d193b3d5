"""100 concurrent scrapers for 30 s on loopback against an agent on the 8-GPU fake tree.

The agent runs in its own process (with fake NVML: 8 busy H100s) so the scrapers' GIL is not the
agent's; scrapers are 4 processes x 25 threads, each a new connection per scrape (http.client).
Prints scrapes, failures, p50/p99 latency, and the sampling cadence's lateness p99 (from the
agent's own histogram, read after the run).

    .venv/bin/python bench/bench_agent_load.py [--seconds 30] [--scrapers 100]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def serve(root: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    from agent_support import BUSY_GPM, write_config
    from fakenvml import FakeNvml, hgx_gpus
    from faketree import dgx_h100

    from nodetune.agent.daemon import Agent

    p = dgx_h100(root)
    nv = FakeNvml(hgx_gpus(p.gpu_addresses, util_gpu=97, power_mw=650000, gpm=dict(BUSY_GPM)))
    cfg = write_config(Path(root), '[agent]\nlisten = "127.0.0.1:0"\n')  # defaults otherwise: 1 s samples
    a = Agent(root=root, config_path=str(cfg), nvml=nv)
    a.install_signals()
    a.start()
    assert a.served is not None
    q.put(a.served.port)
    try:
        a.run()
    finally:
        a.stop()


def scraper(port: int, threads: int, seconds: float, out: mp.Queue, pause: float = 0.0) -> None:  # type: ignore[type-arg]
    lat: list[float] = []
    fails = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def loop() -> None:
        mine, bad = [], 0
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", "/metrics")
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status != 200 or b"nodetune_gpu_utilization_ratio" not in body:
                    bad += 1
                    continue
            except OSError:
                bad += 1
                continue
            mine.append(time.perf_counter() - t0)
            if pause:
                time.sleep(pause)  # a paced scraper (a Prometheus with this scrape interval)
        with lock:
            lat.extend(mine)
            fails[0] += bad

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((lat, fails[0]))


def lateness_p99(port: int) -> tuple[float, int]:
    from prometheus_client.parser import text_string_to_metric_families

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    buckets = []
    for fam in text_string_to_metric_families(text):
        if fam.name == "nodetune_agent_sample_lateness_seconds":
            buckets = [(float(s.labels["le"]), s.value) for s in fam.samples if s.name.endswith("_bucket")]
    total = buckets[-1][1]
    ub = next(le for le, n in buckets if n >= 0.99 * total)
    return ub, int(total)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--scrapers", type=int, default=100)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--pause", type=float, default=0.0, help="seconds each scraper waits between scrapes (0: closed loop)")
    ap.add_argument("--wrk", action="store_true",
                    help="scrape with wrk (C, keep-alive, closed loop) instead of Python clients: the server's ceiling")
    args = ap.parse_args()
    from tables import print_table

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as root:
        q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        agent = ctx.Process(target=serve, args=(root, q))
        agent.start()
        port = q.get(timeout=60)
        time.sleep(2)
        if args.wrk:
            import shutil
            import subprocess

            if not shutil.which("wrk"):
                sys.exit("wrk not installed (apt-get install wrk)")
            r = subprocess.run(["wrk", "-t2", f"-c{args.scrapers}", f"-d{int(args.seconds)}s", "--latency",
                                f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True)
            late_ub, samples = lateness_p99(port)
            agent.terminate()
            agent.join(timeout=10)
            print(f"wrk: {args.scrapers} connections x {args.seconds:g} s, keep-alive, closed loop, against the "
                  f"8-GPU fake tree\n{r.stdout}\nsampling lateness p99 <= {late_ub * 1000:g} ms over {samples} samples")
            return
        out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        per = args.scrapers // args.procs
        ps = [ctx.Process(target=scraper, args=(port, per, args.seconds, out, args.pause)) for _ in range(args.procs)]
        for p in ps:
            p.start()
        lat: list[float] = []
        fails = 0
        for _ in ps:
            lt, f = out.get(timeout=args.seconds + 120)
            lat += lt
            fails += f
        for p in ps:
            p.join()
        late_ub, samples = lateness_p99(port)
        assert agent.pid is not None
        import os
        os.kill(agent.pid, signal.SIGTERM)
        agent.join(timeout=10)
    lat.sort()
    pct = (lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000) if lat else (lambda f: float("nan"))
    print(f"agent on the 8-GPU fake tree (fake NVML), {args.scrapers} scrapers x {args.seconds:g} s, loopback, "
          f"{'closed loop' if not args.pause else f'{args.pause:g} s between scrapes'}")
    print_table(("scrapes", "failures", "scrapes/s", "p50 ms", "p99 ms", "max ms", "samples", "lateness p99"),
                [(str(len(lat)), str(fails), f"{len(lat) / args.seconds:.0f}", f"{pct(0.5):.1f}", f"{pct(0.99):.1f}",
                  f"{lat[-1] * 1000 if lat else float('nan'):.1f}", str(samples), f"<= {late_ub * 1000:g} ms")])


if __name__ == "__main__":
    main()
