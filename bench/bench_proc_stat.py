"""Time to parse /proc/stat of a 224-CPU node (and this node's own), as a printed table.

    python bench/bench_proc_stat.py [-n 2000]

The 224-CPU text is built like a real one: the aggregate line, 224 cpu lines, an intr line of 4,000
counters (a many-CPU node with NVMe and NICs has thousands of interrupt lines), ctxt, btime,
processes, procs_running, procs_blocked and a softirq line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tables import print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def stat_text(cpus: int, irqs: int = 4000) -> str:
    lines = ["cpu  " + " ".join(str(v * 1000003) for v in range(1, 11))]
    lines += [f"cpu{c} " + " ".join(str(v * 10007 + c) for v in range(1, 11)) for c in range(cpus)]
    lines.append("intr 123456789 " + " ".join(str(i * 13 % 100000) for i in range(irqs)))
    lines += ["ctxt 98765432101", "btime 1700000000", "processes 1234567", "procs_running 3", "procs_blocked 1",
              "softirq 1234567 " + " ".join(str(i * 1009) for i in range(10))]
    return "\n".join(lines) + "\n"


def per_call_ms(text: str, n: int) -> float:
    from nodetune.probes.cpu import parse_proc_stat

    parse_proc_stat(text)
    t0 = time.process_time()
    for _ in range(n):
        parse_proc_stat(text)
    return (time.process_time() - t0) / n * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000)
    args = ap.parse_args(argv)
    rows = [("224 CPUs, 4000 irqs (synthetic)", f"{per_call_ms(stat_text(224), args.n):.3f}")]
    try:
        own = Path("/proc/stat").read_text()
        rows.append((f"this node ({own.count(chr(10) + 'cpu')} CPUs)", f"{per_call_ms(own, args.n):.3f}"))
    except OSError as exc:
        rows.append(("this node", f"unreadable: {exc}"))
    print_table(("/proc/stat", "parse ms"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
