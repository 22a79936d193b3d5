"""Phases inside a window: step changes of GPU activity, a job younger than the window, a job that ends.

A window is not one regime. Binary segmentation on the utilization series finds step changes
(a split is kept where the means on either side differ by at least `phase_step_pct` points and
both sides last `phase_min_s`); a leading stretch of low activity while the job is young is its
start-up, a trailing stretch after every GPU process exited is the end. The verdict is drawn from
what lies between (the steady part); the rest is said in words.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from nodetune.config.diagnosis import Thresholds
from nodetune.probes.snapshot import Window

from .findings import Phase
from .jobs import JobGroup
from .window_stats import GpuStats

# Characters of the per-GPU strip, from idle to saturated (eighths of activity).
STRIP = "·▁▂▃▄▅▆▇█"
MAX_PHASES = 6


@dataclass
class PhasePlan:
    phases: dict[int, list[Phase]] = field(default_factory=dict)  # gpu -> phases
    start_index: int = 0  # first sample of the diagnosed part (its deltas start there)
    end_index: int | None = None  # last sample of it (inclusive); None: the window's last
    trimmed: list[str] = field(default_factory=list)  # what was left out, in words

    @property
    def trims(self) -> bool:
        return self.start_index > 0 or self.end_index is not None


def _activity(g: GpuStats) -> list[float]:
    return [u if u is not None else 0.0 for u in g.utils]


def _segments(xs: list[float], a: int, b: int, min_len: int, step: float, depth: int = 0) -> list[tuple[int, int]]:
    """Split xs[a:b] where the mean steps by `step` or more; each part at least `min_len` long."""
    if depth >= 3 or b - a < 2 * min_len:
        return [(a, b)]
    best, at = 0.0, None
    for s in range(a + min_len, b - min_len + 1):
        d = abs(statistics.fmean(xs[a:s]) - statistics.fmean(xs[s:b]))
        if d > best:
            best, at = d, s
    if at is None or best < step:
        return [(a, b)]
    return (_segments(xs, a, at, min_len, step, depth + 1) + _segments(xs, at, b, min_len, step, depth + 1))


def process_age_s(win: Window, pid: int, clk_tck: int, at_t: float) -> float | None:
    """Seconds `pid` had run at monotonic time `at_t` (start time in ticks since boot, and the
    sampler's monotonic clock, also counted from boot)."""
    info = win.process(pid)
    if info is None or info.starttime is None or clk_tck <= 0:
        return None
    age = at_t - info.starttime / clk_tck
    # A clock that does not count from boot (another time namespace) gives nonsense: say nothing.
    return round(age, 2) if -win.seconds - 5 <= age <= 10 * 365 * 86400 else None


def _ended_at(win: Window, pids: list[int]) -> int | None:
    """Index of the first sample from which every one of `pids` is gone."""
    if not pids:
        return None
    for k, s in enumerate(win.samples):
        gone = {p.pid for p in s.processes if not p.alive}
        if set(pids) <= gone:
            return k
    return None


def find_phases(win: Window, gpus: list[GpuStats], jobs: list[JobGroup], th: Thresholds, clk_tck: int) -> PhasePlan:
    plan = PhasePlan()
    if len(win.samples) < 3:
        return plan
    t0 = win.samples[0].t
    interval = max(win.interval_s, 1e-3)
    min_len = max(2, math.ceil(th.phase_min_s / interval))
    start_cut: list[int] = []
    end_cut: list[int | None] = []
    for g in gpus:
        xs = _activity(g)
        if len(xs) < 3:
            continue
        segs = _segments(xs, 0, len(xs), min_len, th.phase_step_pct)[:MAX_PHASES]
        pids = [p for j in jobs if g.index in j.gpus for p in j.pids]
        ages = [a for p in pids if (a := process_age_s(win, p, clk_tck, t0 + g.times[segs[0][1] - 1])) is not None]
        phases: list[Phase] = []
        for n, (a, b) in enumerate(segs):
            mean = statistics.fmean(xs[a:b])
            start = g.times[a - 1] if a > 0 else 0.0  # each sample stands for the interval before it
            ph = Phase(round(start, 2), round(g.times[b - 1], 2), "steady", round(mean, 1))
            if len(segs) > 1:
                higher = any(statistics.fmean(xs[c:d]) - mean >= th.phase_step_pct for c, d in segs[n + 1:])
                ph.kind = "stall" if higher else "busy" if mean >= th.phase_step_pct else "idle"
            if n == 0 and len(segs) > 1 and ph.kind == "stall" and ages and min(ages) <= th.startup_max_age_s:
                ph.kind = "startup"
                ph.note = f"process {min(ages):.0f} s old when the GPU started working"
            phases.append(ph)
        ended = _ended_at(win, pids)
        if ended is not None and ended > 0:
            t_end = round(win.samples[ended].t - t0, 2)
            phases = [p for p in phases if p.start_s < t_end]
            if phases:
                phases[-1].end_s = min(phases[-1].end_s, round(win.samples[ended - 1].t - t0, 2))
            phases.append(Phase(round(win.samples[ended - 1].t - t0, 2), round(win.samples[-1].t - t0, 2), "ended", 0.0,
                                "every GPU process of the job had exited"))
        plan.phases[g.index] = phases
        if phases and phases[0].kind == "startup":
            # the diagnosed part starts at the sample that ends start-up (its deltas reach forward)
            start_cut.append(segs[0][1] - 1)
        if pids:
            end_cut.append(ended - 1 if ended is not None and ended > 0 else None)
    a = max(start_cut, default=0)
    e = None if not end_cut or any(c is None for c in end_cut) else max(c for c in end_cut if c is not None)
    last = e if e is not None else len(win.samples) - 1
    # Keep a trim only where enough of the window remains to judge.
    if last - a < min_len or (win.samples[last].t - win.samples[a].t) < th.phase_min_s:
        return plan
    plan.start_index, plan.end_index = a, e
    if a > 0:
        plan.trimmed.append(f"first {win.samples[a].t - t0:.1f} s: start-up")
    if e is not None:
        plan.trimmed.append(f"after {win.samples[e].t - t0:.1f} s: the job had ended")
    return plan


def trim(win: Window, plan: PhasePlan) -> Window:
    if not plan.trims:
        return win
    end = plan.end_index + 1 if plan.end_index is not None else len(win.samples)
    samples = win.samples[plan.start_index:end]
    return Window(seconds=round(samples[-1].t - samples[0].t, 3), interval_s=win.interval_s, samples=samples,
                  processes=win.processes, stacks=win.stacks, missing=win.missing)


def strip(g: GpuStats, phases: list[Phase], width: int = 60) -> str:
    """SM activity (utilization without GPM) over the window, one character a sample, `|` at phase edges."""
    vals = [sm if sm is not None else u for sm, u in zip(g.sms, g.utils, strict=True)]
    if not vals:
        return ""
    if len(vals) > width:  # fold to width: each character is the mean of its samples
        k = len(vals) / width
        vals = [_mean_or_none(vals[int(i * k):max(int((i + 1) * k), int(i * k) + 1)]) for i in range(width)]
    edges = {p.start_s for p in phases[1:]}
    times = g.times if len(g.times) == len(vals) else [g.times[min(int(i * len(g.times) / len(vals)), len(g.times) - 1)]
                                                       for i in range(len(vals))]
    out = []
    prev = None
    for t, v in zip(times, vals, strict=True):
        if prev is not None and any(prev <= e < t for e in edges):
            out.append("|")
        out.append("·" if v is None else STRIP[min(8, max(0, round(v / 12.5)))])
        prev = t
    return "".join(out)


def _mean_or_none(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return statistics.fmean(v) if v else None
