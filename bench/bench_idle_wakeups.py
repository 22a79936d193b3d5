"""How often an idle agent wakes: context switches per second of each of its threads.

    python bench/bench_idle_wakeups.py [--seconds 30]

The agent runs in its own process on the 8-GPU fake tree (fake NVML, no jobs, nobody scraping).
After a 5 s settle, /proc/PID/task/*/status voluntary_ctxt_switches and nonvoluntary_ctxt_switches
are read, again after `--seconds`; the difference per second is how often each thread was woken.
The sampling loop wakes once a sample (1/s by default). Goal: <= 2 wakeups/s in all.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support
sys.path.insert(0, str(Path(__file__).resolve().parent))

GOAL_PER_S = 2.0


def serve(root: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    from nodetune.agent.application import Agent
    from tests.support.agent_support import write_config
    from tests.support.fakenvml import FakeNvml, hgx_gpus
    from tests.support.faketree import dgx_h100

    p = dgx_h100(root)
    nv = FakeNvml(hgx_gpus(p.gpu_addresses))
    cfg = write_config(Path(root), '[agent]\nlisten = "127.0.0.1:0"\n')
    a = Agent(root=root, config_path=str(cfg), nvml=nv)
    a.install_signals()
    a.start()
    q.put(os.getpid())
    try:
        a.run()
    finally:
        a.stop()


def switches(pid: int) -> dict[str, int]:
    """Context switches (voluntary + involuntary) by thread name (tid appended where names repeat)."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue  # the thread ended
        f = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        name = f["Name"].strip()
        key = name if name not in out else f"{name} ({tid})"
        out[key] = int(f["voluntary_ctxt_switches"]) + int(f["nonvoluntary_ctxt_switches"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    from tables import print_table

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as root:
        q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        agent = ctx.Process(target=serve, args=(root, q))
        agent.start()
        pid = q.get(timeout=60)
        time.sleep(5)
        a = switches(pid)
        time.sleep(args.seconds)
        b = switches(pid)
        os.kill(pid, signal.SIGTERM)
        agent.join(timeout=10)
    rows = [(name, f"{(b[name] - a.get(name, 0)) / args.seconds:.2f}") for name in sorted(b)]
    total = sum((b[n] - a.get(n, 0)) for n in b) / args.seconds
    print(f"idle agent on the 8-GPU fake tree, {args.seconds:g} s, context switches per second by thread")
    print_table(("thread", "wakeups/s"), [*rows, ("all", f"{total:.2f}"),
                                         ("goal", f"<= {GOAL_PER_S:g} ({'yes' if total <= GOAL_PER_S else 'NO'})")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
