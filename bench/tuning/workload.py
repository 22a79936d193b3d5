"""A dummy CPU-busy workload for the tuning proof: a process with a few spinning threads.

It prints its pid, then runs until killed (or for --seconds). The threads do short bursts of
arithmetic with sleeps in between, so it is visibly busy without hogging a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time


def spin(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(20000):
            x = (x * 31 + i) % 1000003
        time.sleep(0.002)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=600.0)
    args = ap.parse_args()
    stop = threading.Event()
    workers = [threading.Thread(target=spin, args=(stop,), name=f"spin{i}", daemon=True) for i in range(args.threads)]
    for w in workers:
        w.start()
    print(os.getpid(), flush=True)
    sys.stdout.close()
    time.sleep(args.seconds)
    stop.set()


if __name__ == "__main__":
    main()
