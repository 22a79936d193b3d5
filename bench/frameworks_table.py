"""Verdicts of the real-framework windows: each snapshot recorded from a job's launch
(bench/device/frameworks_run.sh) cut into windows 2, 10 and 50 s after launch and diagnosed.

    python3 bench/frameworks_table.py DIR [--cut 2:12,10:20,50:60] [--save DIR]

Prints a table (verdict, cause, confidence, unexplained idle share, whether it is the workload's
expected verdict, or start-up where most of the window came before the GPU first worked) and, with
--save, writes each cut window as a snapshot for the replay tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: bench.harness from the repository

from bench.harness.judge import Expected, read_expected  # noqa: E402
from nodetune.config.diagnosis import Thresholds  # noqa: E402
from nodetune.diagnosis.engine import diagnose  # noqa: E402
from nodetune.probes.snapshot import Snapshot, Window, load_snapshot, save_snapshot  # noqa: E402

FRAMEWORKS = REPO / "bench" / "workloads" / "frameworks"
# The GPU has run the job's kernels once a sample shows it this busy: before that the job starts up.
WORK_UTIL_PCT = 10.0


def expected(name: str) -> Expected:
    """The framework workload's EXPECTED, read from its file (it imports torch: not imported)."""
    exp = read_expected(FRAMEWORKS / f"{name}.py")
    if exp is None:
        raise SystemExit(f"{FRAMEWORKS / name}.py: no EXPECTED = (verdict, cause)")
    return exp


def parse_cuts(text: str) -> list[tuple[float, float]]:
    """`2:12,10:20` as [(2, 12), (10, 20)]: seconds after launch."""
    cuts = []
    for c in text.split(","):
        a, _, b = c.partition(":")
        cuts.append((float(a), float(b)))
    return cuts


def cut(win: Window, a: float, b: float) -> Window:
    """The part of `win` from `a` to `b` seconds after its first sample (stack slices that overlap it)."""
    t0 = win.samples[0].t
    samples = [s for s in win.samples if a - 1e-6 <= s.t - t0 <= b + 1e-6]
    lo, hi = samples[0].t, samples[-1].t
    stacks = [s for s in win.stacks if s.t_start is None or (s.t_end or 0) >= lo and (s.t_start or 0) <= hi]
    return dataclasses.replace(win, seconds=round(hi - lo, 3), samples=samples, stacks=stacks)


def first_work(win: Window) -> float:
    """Seconds from launch to the first sample in which the GPU worked (inf: never)."""
    t0 = win.samples[0].t
    return next((s.t - t0 for s in win.samples if any((g.util_gpu_pct or 0) >= WORK_UTIL_PCT for g in s.gpus)),
                float("inf"))


def is_right(got: Expected, want: Expected, first_work_s: float, a: float, b: float) -> bool:
    """The expected verdict, or start-up where most of the window came before the GPU first worked."""
    return got == want or (got[0] == "startup" and first_work_s > (a + b) / 2)


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("dir")
    p.add_argument("--cut", default="2:12,10:20,50:60")
    p.add_argument("--save", default=None)
    args = p.parse_args()
    cuts = parse_cuts(args.cut)
    print("| workload | window (s after launch) | verdict (cause) | conf | unexplained idle | right |")
    print("|---|---|---|---|---|---|")
    right = total = 0
    for f in sorted(os.listdir(args.dir)):
        if not f.endswith(".json.gz"):
            continue
        name = f[:-8]
        snap = load_snapshot(os.path.join(args.dir, f))
        assert snap.window is not None
        exp = expected(name)
        for a, b in cuts:
            w = cut(snap.window, a, b)
            r = diagnose(snap.topology, w, Thresholds(), f"replay:{name}")
            g = r.gpus[0]
            un = g.attribution.unexplained_share if g.attribution else 0.0
            ok = is_right((g.verdict, g.cause), exp, first_work(snap.window), a, b)
            right += ok
            total += 1
            print(f"| {name} | {a:.0f}-{b:.0f} | {g.verdict} ({g.cause or '-'}) | {g.confidence:.2f} | {un:.0%} | "
                  f"{'yes' if ok else 'NO'} |")
            if args.save:
                os.makedirs(args.save, exist_ok=True)
                save_snapshot(Snapshot(snap.version, snap.taken_at, snap.topology, w, note=f"{name} {a:.0f}-{b:.0f} s"),
                              os.path.join(args.save, f"{name}-{a:.0f}.json.gz"))
    print(f"\n{right}/{total} right")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
