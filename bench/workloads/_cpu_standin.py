"""A CPU stand-in for any bench workload, so the harness can be run without a GPU or torch.

It takes the workloads' common options (--seconds, --device) and ignores any other, waits
--warmup seconds, prints READY, then sleeps (or with --burn spins one core) until its time is up or
SIGTERM. `python -m bench.harness diagnosis --dry-run` (or --fake-workloads) runs it in place of
every workload; the harness's tests launch it.
"""

from __future__ import annotations

import argparse
import time

from _common import Run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long to run after READY (default 60)")
    p.add_argument("--device", default="cpu", help="accepted and not used")
    p.add_argument("--warmup", type=float, default=0.2, help="seconds before READY (default 0.2)")
    p.add_argument("--burn", action="store_true", help="spin one core instead of sleeping")
    args, _ = p.parse_known_args(argv)  # the real workload's own options are accepted and ignored
    run = Run("cpu_standin", args.seconds)
    time.sleep(args.warmup)
    run.ready()
    spins = 0
    while run.running():
        if args.burn:
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                spins += 1
        else:
            run.sleep(0.1)
    run.finish(f"{spins} spins" if args.burn else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
