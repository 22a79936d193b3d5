"""Shared plumbing for the bench workloads: the common CLI, the run clock, SIGTERM, READY.

Every workload accepts ``--seconds S`` (how long to run once in its steady state; default 60) and
``--device cuda:N`` (default cuda:0; ``cpu`` works too, for checking the logic on a machine
without a GPU). It prints exactly one line ``READY`` to stdout once warmed up, keeps running until
its time is up or it gets SIGTERM/SIGINT, and then exits 0. Progress and rates go to stderr.

Nothing here (or in any workload) changes a GPU setting: no power limits, clocks or modes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable


def log(name: str, msg: str) -> None:
    sys.stderr.write(f"[{name} {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def parse_args(doc: str | None, extra: Callable[[argparse.ArgumentParser], None] | None = None,
               argv: list[str] | None = None) -> argparse.Namespace:
    first = (doc or "").strip().splitlines()[0] if doc else None
    p = argparse.ArgumentParser(description=first)
    p.add_argument("--seconds", type=float, default=60.0,
                   help="how long to run after READY (default 60)")
    p.add_argument("--device", default="cuda:0", help="cuda:N (default cuda:0) or cpu")
    if extra is not None:
        extra(p)
    return p.parse_args(argv)


class Run:
    """The run clock: started by ready(), stopped by time or by SIGTERM/SIGINT."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        self.deadline: float | None = None
        self.stop_requested = False
        self.started = time.monotonic()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def ready(self) -> None:
        """Say READY once (the runner waits for it) and start the steady-state clock."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds
            log(self.name, f"steady state after {time.monotonic() - self.started:.1f}s of warm-up")
            sys.stdout.write("READY\n")
            sys.stdout.flush()

    def running(self) -> bool:
        if self.stop_requested:
            return False
        return self.deadline is None or time.monotonic() < self.deadline

    def sleep(self, seconds: float) -> None:
        """Sleep in short steps so a SIGTERM ends it within ~0.1 s."""
        end = time.monotonic() + seconds
        while self.running():
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))

    def finish(self, summary: str = "") -> None:
        why = "SIGTERM" if self.stop_requested else "time up"
        log(self.name, f"stopping ({why}){': ' + summary if summary else ''}")
        sys.stdout.flush()
        sys.stderr.flush()


class Meter:
    """Counts units of work and logs a rate to stderr every `every` seconds."""

    def __init__(self, name: str, unit: str, scale: float = 1.0, every: float = 5.0) -> None:
        self.name, self.unit, self.scale, self.every = name, unit, scale, every
        self.t0 = self.last = time.monotonic()
        self.total = 0.0
        self.since_last = 0.0

    def add(self, amount: float) -> None:
        self.total += amount
        self.since_last += amount
        now = time.monotonic()
        if now - self.last >= self.every:
            rate = self.since_last / (now - self.last) / self.scale
            log(self.name, f"{rate:,.1f} {self.unit}")
            self.last, self.since_last = now, 0.0

    def mean(self) -> str:
        dt = max(time.monotonic() - self.t0, 1e-9)
        return f"mean {self.total / dt / self.scale:,.1f} {self.unit}"


def torch_device(spec: str):  # -> torch.device
    """The torch device for `spec`; a clear message and exit 2 when CUDA is asked for but absent."""
    import torch

    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            sys.stderr.write(f"{spec}: CUDA is not available (torch {torch.__version__})\n")
            raise SystemExit(2)
        index = dev.index if dev.index is not None else 0
        if index >= torch.cuda.device_count():
            sys.stderr.write(f"{spec}: only {torch.cuda.device_count()} CUDA device(s)\n")
            raise SystemExit(2)
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    return dev


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def train_for(seconds: float, run, meter, dev, step: Callable[[], None], per_round: int = 4) -> None:
    """Run `step` in rounds of `per_round` (a sync after each) for `seconds` or until the run ends."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and run.running():
        for _ in range(per_round):
            step()
        sync(dev)
        meter.add(per_round)
