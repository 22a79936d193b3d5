"""Where a sample's CPU goes on a real GPU node: each NVML call the sampler makes, each host probe,
the followed processes, and the memory NVML adds. Read-only: no NVML setter is called.

    python3 bench/device/sample_cost.py [--samples 120] [--interval 0.2] [--out DIR] [--fake]

Run beside a GPU job (bench/device/sample_cost.sh starts one). Prints three tables and writes them
to DIR/sample_cost.md:
  1. NVML calls: thread CPU and wall per call, calls per sample, share of the sample;
  2. the sample's parts (cProfile's cumulative time of each probe function, per sample);
  3. RSS: bare interpreter, after the agent's imports, after nvmlInit, after the samples.
The agent's own cost on the node comes from bench/device/agent_cost.sh; this says what to cut.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from tables import print_table  # noqa: E402

PARTS = ("probe_cpu", "probe_memory", "probe_io", "probe_thermal", "probe_nics", "sample_process",
         "_follow", "NvmlBackend.sample", "tick")


def rss_mb() -> float:
    """This process's resident set now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between samples (GPM needs >= 0.1)")
    ap.add_argument("--out", default=".")
    ap.add_argument("--fake", action="store_true",
                    help="the 8-GPU fake tree with fake NVML (checks this script where there is no GPU)")
    args = ap.parse_args()
    rss = [("python", rss_mb())]
    from nodetune.agent.application import Agent  # noqa: F401  (the agent's imports, for the RSS row)
    from nodetune.probes.host import Host
    from nodetune.probes.node import probe_topology
    from nodetune.probes.nvml_backend import NvmlBackend
    from nodetune.probes.sampler import Sampler

    rss.append(("agent imports", rss_mb()))
    calls: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # name -> [n, cpu s, wall s]

    class TimedNvml(NvmlBackend):
        def _call(self, index: int, missing: dict[str, str], name: str, fn: Any) -> Any:
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                return super()._call(index, missing, name, fn)
            finally:
                c = calls[name]
                c[0] += 1
                c[1] += time.thread_time() - c0
                c[2] += time.perf_counter() - w0

    root = "/"
    nvml = None
    if args.fake:
        import tempfile

        sys.path.insert(0, str(REPO))
        from tests.support.agent_support import dgx_with_jobs

        root = tempfile.mkdtemp(prefix="sample_cost.")
        nvml = dgx_with_jobs(root, 8, 8)
    backend = TimedNvml(nvml)
    status = backend.open()
    rss.append(("after nvmlInit", rss_mb()))
    if not status.available:
        print(f"sample_cost: no GPU backend: {status.reason}", file=sys.stderr)
        return 2
    host = Host(root)
    topo = probe_topology(host, backend, status)
    sampler = Sampler(host, backend, topo, worker_scan_every=5)
    sampler.prime()
    time.sleep(0.12)
    for _ in range(5):  # find the job and its workers; prime GPM
        sampler.sample()
        time.sleep(args.interval)
    calls.clear()
    prof = cProfile.Profile()
    cpu0 = time.thread_time()
    for _ in range(args.samples):
        prof.enable()
        sampler.sample()
        prof.disable()
        time.sleep(args.interval)
    per_sample = (time.thread_time() - cpu0) / args.samples
    rss.append((f"after {args.samples} samples", rss_mb()))
    n = args.samples
    followed = {r: sum(1 for i in sampler.infos.values() if i.role == r) for r in ("gpu", "worker", "pending")}

    out: list[str] = [f"# sample cost on this node: {len(topo.gpus)} GPUs, followed {followed}, "
                      f"{n} samples {args.interval} s apart", "",
                      f"thread CPU per sample: {per_sample * 1e3:.3f} ms", ""]
    rows = sorted(((k, v[0] / n, v[1] / max(v[0], 1) * 1e6, v[2] / max(v[0], 1) * 1e6, v[1] / n / per_sample * 100)
                   for k, v in calls.items()), key=lambda r: -r[4])
    table1 = [(k, f"{c:.1f}", f"{cpu:.0f}", f"{wall:.0f}", f"{share:.1f}") for k, c, cpu, wall, share in rows]
    st = pstats.Stats(prof)
    parts = []
    for (file, _line, fn), (_cc, _nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        qual = f"NvmlBackend.{fn}" if file.endswith("nvml_backend.py") else fn
        if qual in PARTS or fn in PARTS:
            parts.append((qual, ct / n * 1e3))
    table2 = [(k, f"{ms:.3f}") for k, ms in sorted(parts, key=lambda r: -r[1])]
    table3 = [(k, f"{v:.1f}") for k, v in rss]
    for title, head, body in (("NVML calls", ("call", "per sample", "CPU us", "wall us", "% of sample CPU"), table1),
                              ("parts of a sample (profiled)", ("function", "ms per sample"), table2),
                              ("RSS", ("point", "MB"), table3)):
        print(f"\n## {title}")
        print_table(head, body)
        out += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(map(str, r)) + " |" for r in body] + [""]
    Path(args.out, "sample_cost.md").write_text("\n".join(out) + "\n")
    print(f"\nmax RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
