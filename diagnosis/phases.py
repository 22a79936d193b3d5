"""Phases inside a window: step changes of GPU activity, a job younger than the window, a job that ends.

A window is not one regime. Start-up is the stretch before the GPU first works while its job is
young: from the window's start to the first sample in which the GPU worked after the job's youngest
process started, counted only where the window saw most of that process's life (a process older
than the stretch may have used its GPU before the window: its idle start is a stall, not start-up).
Binary segmentation on the utilization series of the rest finds step changes (a split is kept where
the means on either side differ by at least `phase_step_pct` points and both sides last
`phase_min_s`); a trailing stretch after every GPU process exited is the end. The verdict is drawn
from what lies between (the steady part); the rest is said in words. Where start-up leaves no steady
part of `phase_min_s`, the window is start-up.
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
# A GPU counts as having started work once a sample shows it this busy (NVML utilization, or GPM
# SM activity: utilization is sampled at an instant and can miss a burst GPM saw over the interval).
WORKED_PCT = 50.0


def worked(util: float | None, sm: float | None) -> bool:
    return (util or 0.0) >= WORKED_PCT or (sm or 0.0) >= WORKED_PCT


@dataclass
class PhasePlan:
    phases: dict[int, list[Phase]] = field(default_factory=dict)  # gpu -> phases
    start_index: int = 0  # first sample of the diagnosed part (its deltas start there)
    end_index: int | None = None  # last sample of it (inclusive); None: the window's last
    trimmed: list[str] = field(default_factory=list)  # what was left out, in words
    startup_s: dict[int, float] = field(default_factory=dict)  # gpu -> seconds of start-up from the window's start
    startup_only: set[int] = field(default_factory=set)  # GPUs whose window is start-up with no steady part

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


@dataclass
class _Startup:
    cut: int  # index of the last sample of start-up (the diagnosed part starts there)
    end_s: float  # from the window's first sample (unrounded: it is compared with sample times)
    note: str


def _startup(win: Window, gpu: int, pids: list[int], th: Thresholds, clk_tck: int) -> _Startup | None:
    """The stretch from the window's start to the GPU's first work after its job's youngest process
    started, where that process is young and the window saw most of its life before that work."""
    t0 = win.samples[0].t
    ages0 = [(a, p) for p in pids if (a := process_age_s(win, p, clk_tck, t0)) is not None]
    if not ages0:
        return None
    age0, _ = min(ages0)
    born = t0 - age0
    last = len(win.samples) - 1
    k_work = None
    for k, s in enumerate(win.samples):
        if s.t < born:
            continue
        g = next((x for x in s.gpus if x.index == gpu and x.state == "ok"), None)
        if g is not None and worked(g.util_gpu_pct, g.gpm.sm_util_pct if g.gpm else None):
            k_work = k
            break
    # Each sample stands for the interval before it: start-up ends where the working interval begins.
    cut = last if k_work is None else k_work - 1
    if cut <= 0:
        return None
    end_s = win.samples[cut].t - t0
    age_at_work = end_s + age0
    # Most of its life seen without GPU work (born inside the window, or before it by no more than the
    # idle stretch we saw), and young enough that not having used its GPU yet means starting up.
    if age0 > end_s or age_at_work > th.startup_max_age_s:
        return None
    note = f"process {max(age_at_work, 0):.0f} s old when the GPU started working" if k_work is not None \
        else f"process {max(age_at_work, 0):.0f} s old, its GPU not yet working"
    if age0 < -win.interval_s:
        note += f"; it started {-age0:.1f} s into the window"
    return _Startup(cut, end_s, note)


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
        pids = [p for j in jobs if g.index in j.gpus for p in j.pids]
        su = _startup(win, g.index, pids, th, clk_tck)
        phases: list[Phase] = []
        first = 0
        if su is not None:
            # the GPU series counts ok samples only: start-up ends at the last one not after su.end_s
            first = sum(1 for t in g.times if t <= su.end_s + 1e-6)
            phases.append(Phase(0.0, round(su.end_s, 2), "startup", round(statistics.fmean(xs[:max(first, 1)]), 1),
                                su.note))
            plan.startup_s[g.index] = su.end_s
        # the rest from the first working sample (it stands for the interval after start-up)
        segs = _segments(xs, first, len(xs), min_len, th.phase_step_pct)[:MAX_PHASES] if len(xs) - first >= 1 else []
        for n, (a, b) in enumerate(segs):
            mean = statistics.fmean(xs[a:b])
            start = g.times[a - 1] if a > 0 else 0.0  # each sample stands for the interval before it
            ph = Phase(round(start, 2), round(g.times[b - 1], 2), "steady", round(mean, 1))
            if len(segs) > 1:
                higher = any(statistics.fmean(xs[c:d]) - mean >= th.phase_step_pct for c, d in segs[n + 1:])
                ph.kind = "stall" if higher else "busy" if mean >= th.phase_step_pct else "idle"
            elif su is not None:
                ph.kind = "busy" if mean >= th.phase_step_pct else "idle"
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
        if su is not None:
            last = (ended - 1) if ended is not None and ended > 0 else len(win.samples) - 1
            if last - su.cut < min_len or win.samples[last].t - win.samples[su.cut].t < th.phase_min_s:
                plan.startup_only.add(g.index)  # no steady part long enough to judge: the window is start-up
            else:
                start_cut.append(su.cut)
        if pids:
            end_cut.append(ended - 1 if ended is not None and ended > 0 else None)
    # A GPU that is all start-up leaves no cut: it is diagnosed over the whole window.
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
