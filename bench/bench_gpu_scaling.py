"""How the agent's CPU per sample grows with GPU count, on the 8-GPU dgx_h100 fake tree.

    python bench/bench_gpu_scaling.py [-n 40]

FakeNvml answers for the first 1, 2, 4 and 8 GPUs (busy H100s with GPM, a training process per
GPU); Sampler.sample() is timed with time.thread_time over N samples >= 105 ms apart (GPM needs
100 ms). Fake NVML costs less than the real library (bench_sample --live measured 0.93 ms per
GPU on an H200), so the slope here is the Python side: probes, process following, GPM maths.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tables import print_table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repository: tests.support


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=40)
    args = ap.parse_args()
    from nodetune.probes.host import Host
    from nodetune.probes.node import probe_topology
    from nodetune.probes.nvml_backend import NvmlBackend
    from nodetune.probes.sampler import Sampler
    from tests.support.agent_support import BUSY_GPM
    from tests.support.fakenvml import FakeNvml, hgx_gpus
    from tests.support.faketree import FakeProc, dgx_h100

    rows = []
    base = None
    for n in (1, 2, 4, 8):
        with tempfile.TemporaryDirectory() as d:
            p = dgx_h100(d)
            gpus = hgx_gpus(p.gpu_addresses[:n], util_gpu=97, gpm=dict(BUSY_GPM))
            for i, g in enumerate(gpus):
                pid = 5000 + i
                p.node.process(FakeProc(pid=pid, comm="python", cmdline=["python", "train.py"], cpus=list(range(8)),
                                        threads={pid + k * 100: ("python", "R", 10, 1) for k in range(8)}))
                g.processes = [(pid, 30 * 2**30)]
            b = NvmlBackend(FakeNvml(gpus))
            host = Host(d)
            topo = probe_topology(host, b, b.open())
            s = Sampler(host, b, topo, worker_scan_every=5)
            s.prime()
            time.sleep(0.11)
            s.sample()
            cpu = 0.0
            for _ in range(args.n):
                time.sleep(0.105)
                c0 = time.thread_time()
                s.sample()
                cpu += time.thread_time() - c0
            b.close()
        ms = cpu / args.n * 1000
        base = base or ms
        rows.append((str(n), f"{ms:.2f}", f"{ms / n:.2f}", f"{ms / base:.2f}x"))
    print_table(("GPUs", "CPU ms/sample", "ms per GPU", "vs 1 GPU"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
