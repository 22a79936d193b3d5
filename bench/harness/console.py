"""The progress line every harness step prints (the device scripts filter on its prefix)."""

from __future__ import annotations

import time

# The device scripts drop these lines with `grep -v "^\[run_diagnosis"`: the tables stay readable.
TAG = "run_diagnosis"


def say(msg: str, tag: str = TAG) -> None:
    """Print `[tag HH:MM:SS] msg` and flush (the output is tee'd while the benchmark runs)."""
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", flush=True)
