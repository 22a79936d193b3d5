"""The agent under scrapes on the 8-GPU fake tree: its cost at Prometheus's rate, or its ceiling.

`--rate` (the cost): the agent (8 busy GPUs, a training process per GPU with 8 loader workers)
beside Debian's prometheus-node-exporter bound to 127.0.0.1, each scraped every `--scrape-every`
seconds (15, as Prometheus) with Prometheus's headers, for `--seconds`; before that the same wall
time unscraped. CPU is utime+stime of /proc/PID/stat, plus cutime+cstime (the py-spy runs the agent
starts and reaps count as its own). Prints each one's % of a core idle and scraped, CPU per scrape
with the idle CPU subtracted, the ratio, and RSS at the start and end of the run.

    .venv/bin/python bench/bench_agent_load.py --rate [--seconds 90] [--scrape-every 15]

Without `--rate`: 100 concurrent scrapers for 30 s on loopback against an agent on the 8-GPU fake tree.

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "device"))  # exporter_probe

import exporter_probe  # noqa: E402
from exporter_probe import rss_mb, scrape  # noqa: E402


def serve(root: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    from tests.support.agent_support import BUSY_GPM, serve_in_process
    from tests.support.fakenvml import FakeNvml, hgx_gpus
    from tests.support.faketree import dgx_h100

    p = dgx_h100(root)
    nv = FakeNvml(hgx_gpus(p.gpu_addresses, util_gpu=97, power_mw=650000, gpm=dict(BUSY_GPM)))
    serve_in_process(root, '[agent]\nlisten = "127.0.0.1:0"\n', nv, q)  # defaults otherwise: 1 s samples


def serve_jobs(root: str, q: mp.Queue, gpus: int, workers: int,  # type: ignore[type-arg]
               idle_threads: int = 0) -> None:
    """The agent on the 8-GPU tree with a training process per GPU and `workers` loader workers each."""
    from tests.support.agent_support import dgx_with_jobs, serve_in_process

    # the agent's defaults otherwise
    serve_in_process(root, '[agent]\nlisten = "127.0.0.1:0"\n', dgx_with_jobs(root, gpus, workers, idle_threads), q)


def body_bytes(port: int) -> int:
    status, size, _ = scrape(port)
    if status != 200:
        raise SystemExit(f"bench_agent_load: scrape of :{port} answered {status}")
    return size


def cpu_ticks(pid: int) -> int:
    """utime+stime+cutime+cstime of `pid` (children it reaped, e.g. py-spy, count as its own)."""
    return sum(exporter_probe.cpu_ticks(pid))


def rate_cost(args: argparse.Namespace) -> None:
    import os
    import shutil
    import socket
    import subprocess

    from tables import print_table

    ne_bin = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if not ne_bin:
        sys.exit("prometheus-node-exporter not installed (apt-get install prometheus-node-exporter)")
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        ne_port = sk.getsockname()[1]
    clk = os.sysconf("SC_CLK_TCK")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as root:
        q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        agent = ctx.Process(target=serve_jobs, args=(root, q, 8, args.workers, args.idle_threads))
        agent.start()
        port = q.get(timeout=60)
        ne = subprocess.Popen([ne_bin, f"--web.listen-address=127.0.0.1:{ne_port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        try:
            time.sleep(5)
            assert agent.pid is not None
            pids = {"nodetune agent": agent.pid, "node_exporter": ne.pid}
            body_bytes(port), body_bytes(ne_port)  # both warm (first render, collectors' setup)
            rss0 = {k: rss_mb(p) for k, p in pids.items()}
            t0, c0 = time.monotonic(), {k: cpu_ticks(p) for k, p in pids.items()}
            time.sleep(args.seconds)
            t1, c1 = time.monotonic(), {k: cpu_ticks(p) for k, p in pids.items()}
            n = 0
            sizes = {}
            while time.monotonic() - t1 < args.seconds:
                slot = t1 + n * args.scrape_every
                if slot > time.monotonic():
                    time.sleep(slot - time.monotonic())
                sizes = {"nodetune agent": body_bytes(port), "node_exporter": body_bytes(ne_port)}
                n += 1
                nxt = t1 + n * args.scrape_every
                if nxt - t1 >= args.seconds:
                    time.sleep(max(0.0, t1 + args.seconds - time.monotonic()))
                    break
            t2, c2 = time.monotonic(), {k: cpu_ticks(p) for k, p in pids.items()}
            rss1 = {k: rss_mb(p) for k, p in pids.items()}
        finally:
            ne.terminate()
            ne.wait(timeout=10)
            if agent.pid is not None:
                os.kill(agent.pid, signal.SIGTERM)
            agent.join(timeout=10)
    rows = []
    pct = {}
    for k in pids:
        idle_s, busy_s = (c1[k] - c0[k]) / clk, (c2[k] - c1[k]) / clk
        idle_pct, busy_pct = 100 * idle_s / (t1 - t0), 100 * busy_s / (t2 - t1)
        per = (busy_s - idle_s * (t2 - t1) / (t1 - t0)) / max(n, 1) * 1e3
        pct[k] = busy_pct
        rows.append((k, f"{idle_pct:.3f}", f"{busy_pct:.3f}", f"{per:.1f}", str(c2[k] - c1[k]), str(sizes.get(k, 0)),
                     f"{rss0[k]:.1f}", f"{rss1[k]:.1f}"))
    print(f"8-GPU fake tree, 8 training processes ({9 + args.idle_threads} threads, 9 working) x {args.workers} "
          f"loader workers, {n} scrapes every "
          f"{args.scrape_every:g} s over {t2 - t1:.0f} s (idle phase {t1 - t0:.0f} s before), CLK_TCK {clk}")
    print_table(("exporter", "idle % core", "scraped % core", "ms/scrape (idle subtracted)", "ticks scraped",
                 "bytes (gzip)", "RSS MB start", "RSS MB end"), rows)
    ratio = pct["nodetune agent"] / pct["node_exporter"] if pct["node_exporter"] > 0 else float("inf")
    print(f"agent / node_exporter CPU while scraped: {ratio:.2f}x; agent {pct['nodetune agent']:.3f}% of a core "
          f"(goal <= 0.5%: {'yes' if pct['nodetune agent'] <= 0.5 else 'NO'})")


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
    ap.add_argument("--rate", action="store_true", help="cost at Prometheus's rate beside node_exporter")
    ap.add_argument("--scrape-every", type=float, default=15.0)
    ap.add_argument("--workers", type=int, default=8, help="--rate: loader workers per training process")
    ap.add_argument("--idle-threads", type=int, default=25,
                    help="--rate: sleeping threads per training process (34 threads in all, as the H200's trainers)")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds each scraper waits between scrapes (0: closed loop)")
    ap.add_argument("--wrk", action="store_true",
                    help="scrape with wrk (C, keep-alive, closed loop) instead of Python clients: the server's ceiling")
    args = ap.parse_args()
    if args.rate:
        rate_cost(args)
        return
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
