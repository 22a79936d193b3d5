"""Phases inside a window: step changes of GPU activity, a job younger than the window, a job that ends.

A window is not one regime. Start-up is the window's leading stretch in which the job shows that
it is starting (stacks under imports, model construction, weight loading, compilation; dispatching
its first kernels or GPU memory climbing before the GPU ever worked): positive evidence, never the
process's age or a low utilization alone. Binary segmentation on the utilization series of the rest
finds step changes (a split is kept where the means on either side differ by at least
`phase_step_pct` points and both sides last `phase_min_s`); a trailing stretch after every GPU
process exited is the end. The verdict is drawn from what lies between (the steady part); the rest
is said in words. Where start-up leaves no steady part of `phase_min_s`, the window is start-up.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from nodetune.config.diagnosis import Thresholds
from nodetune.probes.snapshot import Sample, Window

from .findings import Phase
from .jobs import JobGroup
from .stack_timeline import Timeline
from .stacks import GPU_FACING
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
    startup_basis: dict[int, list[str]] = field(default_factory=dict)  # gpu -> what showed the start-up

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
    basis: list[str] = field(default_factory=list)  # stacks | gpu_memory


# A GPU that showed this much activity has run the job's kernels: dispatching after that is no
# longer the first-use warm-up of start-up (a launch-bound loop at 20% is steady, not starting).
ACTIVE_PCT = 10.0
# GPU memory a job's processes gained in one interval that says weights are still arriving.
MEMORY_CLIMB_BYTES = 64 * 2**20
# Share of an interval's main-thread stack samples that makes it start-up (or, with the GPU-facing
# categories before the GPU first worked, its warm-up).
STARTUP_STACK_SHARE = 0.5


def _job_gpu_memory(s: Sample, gpu: int, pids: set[int]) -> int | None:
    g = next((x for x in s.gpus if x.index == gpu and x.state == "ok"), None)
    if g is None:
        return None
    mem = [p.used_memory_bytes for p in g.processes if p.pid in pids and p.used_memory_bytes is not None]
    return sum(mem) if mem else None


# Main-thread stack categories that show a job doing its regular work, not starting.
CONTRARY = ("data_loading", "sleeping", "checkpoint", "evaluation", "communication", "gc")
# A process this busy on the CPU with a young GPU context and no GPU work yet is initialising (CUDA
# context, module loading, cuBLAS: native code whose Python frame is just the caller); an
# allocated-but-idle process sleeps.
BUSY_MAIN_PCT = 50.0
# Busy on the CPU with CUDA loaded and still no context past this age: a script that imports torch
# and computes on the CPU, not a GPU job starting (stacks can still show a long model build).
PENDING_BUSY_MAX_S = 60.0


def _cpu_pct(win: Window, pids: list[int], k: int, clk_tck: int) -> float:
    a = {p.pid: p for p in win.samples[k - 1].processes}
    b = {p.pid: p for p in win.samples[k].processes}
    dt = max(win.samples[k].t - win.samples[k - 1].t, 1e-6)
    best = 0.0
    for pid in pids:
        x, y = a.get(pid), b.get(pid)
        if x is None or y is None or None in (x.utime, x.stime, y.utime, y.stime):
            continue
        best = max(best, 100.0 * ((y.utime or 0) + (y.stime or 0) - (x.utime or 0) - (x.stime or 0)) / clk_tck / dt)
    return best


def _worker_readings(win: Window, workers: set[int]) -> dict[int, list[tuple[float, int]]]:
    """Each worker's (time, CPU ticks) readings, in one pass over the window; the agent reads
    workers every few samples."""
    out: dict[int, list[tuple[float, int]]] = {}
    for s in win.samples:
        for p in s.processes:
            if p.pid in workers and p.alive and p.utime is not None and p.stime is not None:
                out.setdefault(p.pid, []).append((s.t, p.utime + p.stime))
    return out


def _workers_busy(readings: list[list[tuple[float, int]]], a: float, b: float, clk_tck: int) -> bool:
    """Did a loader worker run at BUSY_MAIN_PCT or more between times a and b (its nearest readings
    around them)? Workers exist once the job iterates its data: it has started."""
    for rs in readings:
        before = [r for r in rs if r[0] <= a + 1e-6]
        after = [r for r in rs if r[0] >= b - 1e-6]
        if not before or not after or after[0][0] <= before[-1][0]:
            continue
        (t0, c0), (t1, c1) = before[-1], after[0]
        if 100.0 * (c1 - c0) / clk_tck / (t1 - t0) >= BUSY_MAIN_PCT:
            return True
    return False


def _startup(win: Window, gpu: int, pids: list[int], th: Thresholds, clk_tck: int, tl: Timeline,
             readings: list[list[tuple[float, int]]] | None = None) -> _Startup | None:
    """The window's leading stretch in which the job was starting up, by positive evidence only:
    stacks under imports, model construction, weight loading, CUDA initialisation or compilation;
    and before the GPU first ran any of the job's work: stacks dispatching it (the first use of
    each kernel), GPU memory climbing, or a GPU context created inside the window by a process busy
    on the CPU. Age alone never makes start-up: a young job whose GPU idles while it loads data,
    sleeps or holds memory is judged like any other. The stretch ends at its last interval with
    evidence; stacks showing regular work, busy loader workers or the GPU working end it."""
    samples = win.samples
    t0 = samples[0].t
    pidset = set(pids)
    cut = None
    frames: dict[str, str] = {}
    basis: set[str] = set()
    active = False
    infos = [win.process(p) for p in pids]
    born = [i.starttime / clk_tck for i in infos if i is not None and i.starttime is not None and clk_tck > 0]
    born_in_window = bool(born) and max(born) > t0 and process_age_s(win, pids[0], clk_tck, t0) is not None
    seen = any(p.pid in pidset for g in samples[0].gpus if g.index == gpu for p in g.processes)
    appeared = False
    mem_end = _job_gpu_memory(samples[0], gpu, pidset)
    readings = readings or []
    for k in range(1, len(samples)):
        s = samples[k]
        g = next((x for x in s.gpus if x.index == gpu and x.state == "ok"), None)
        if g is None:
            break
        util, sm = g.util_gpu_pct or 0.0, (g.gpm.sm_util_pct if g.gpm else None) or 0.0
        if worked(util, sm):
            break  # the GPU is doing the job's work: what came before was start-up or a stall
        ages = [a for p in pids if (a := process_age_s(win, p, clk_tck, s.t)) is not None]
        if ages and min(ages) > th.startup_max_age_s:
            break
        if ages and max(ages) < 0:
            continue  # before the job existed: nothing to judge, left out with its start-up
        on_gpu = any(p.pid in pidset for p in g.processes)
        appeared = appeared or (on_gpu and not seen)  # its context was created inside the window
        young_context = on_gpu and (born_in_window or appeared)
        mem = _job_gpu_memory(s, gpu, pidset)
        climbing = mem is not None and mem_end is not None and mem - mem_end >= MEMORY_CLIMB_BYTES and not active
        climbing = climbing or (mem is not None and mem_end is None and mem >= MEMORY_CLIMB_BYTES and not active)
        mem_end = mem if mem is not None else mem_end
        got = tl.shares(pids, samples[k - 1].t - t0, s.t - t0)
        sh, fr = got if got is not None else ({}, {})
        facing = sum(v for c, v in sh.items() if c in GPU_FACING)
        evidence = ""
        if sh.get("startup", 0.0) >= STARTUP_STACK_SHARE:
            evidence = "stacks"
            if "startup" in fr:
                frames.setdefault("startup", fr["startup"])
        elif sum(v for c, v in sh.items() if c in CONTRARY) >= STARTUP_STACK_SHARE or active or (
                readings and _workers_busy(readings, samples[k - 1].t, s.t, clk_tck)):
            # regular work (loading, sleeping, a checkpoint, busy loader workers...), or the GPU already ran the
            # job's kernels
            break
        elif not (young_context or not on_gpu):
            pass  # its GPU context predates the window: it may have worked before, only stacks can tell
        elif climbing:
            evidence = "gpu_memory"
        elif facing >= STARTUP_STACK_SHARE:
            evidence = "stacks"
            frames.setdefault("warmup", "first use of the GPU's kernels")
        elif _cpu_pct(win, pids, k, clk_tck) >= BUSY_MAIN_PCT and (
                on_gpu or not ages or min(ages) <= PENDING_BUSY_MAX_S):
            evidence = "gpu_context"
        if evidence:
            cut = k
            basis.add(evidence)
        if util >= ACTIVE_PCT or sm >= ACTIVE_PCT:
            active = True
    if cut is None:
        return None
    end_s = samples[cut].t - t0
    what = []
    if "startup" in frames:
        what.append(frames["startup"].split(" (")[0])
    if "warmup" in frames:
        what.append("first steps: kernels loading on first use")
    if "gpu_memory" in basis and mem_end is not None:
        what.append(f"GPU memory climbing to {mem_end / 2**30:.1f} GiB")
    if "gpu_context" in basis:
        what.append("creating its GPU context")
    ages = [a for p in pids if (a := process_age_s(win, p, clk_tck, samples[cut].t)) is not None]
    note = ", ".join(what) + (f"; process {max(min(ages), 0):.0f} s old" if ages else "")
    if born_in_window and born:
        note += f"; it started {max(born) - t0:.1f} s into the window"
    return _Startup(cut, end_s, note, sorted(basis))


def find_phases(win: Window, gpus: list[GpuStats], jobs: list[JobGroup], th: Thresholds, clk_tck: int,
                tl: Timeline | None = None) -> PhasePlan:
    """Start-up (by evidence), steady segments and the job's end, per GPU; the part to diagnose."""
    plan = PhasePlan()
    tl = tl or Timeline()
    if len(win.samples) < 3:
        return plan
    t0 = win.samples[0].t
    interval = max(win.interval_s, 1e-3)
    min_len = max(2, math.ceil(th.phase_min_s / interval))
    start_cut: list[int] = []
    end_cut: list[int | None] = []
    readings = _worker_readings(win, {w for j in jobs for w in j.workers})
    for g in gpus:
        xs = _activity(g)
        if len(xs) < 3:
            continue
        pids = [p for j in jobs if g.index in j.gpus for p in j.pids]
        mine = [readings[w] for j in jobs if g.index in j.gpus for w in j.workers if w in readings]
        su = _startup(win, g.index, pids, th, clk_tck, tl, mine) if pids else None
        phases: list[Phase] = []
        first = 0
        if su is not None:
            # the GPU series counts ok samples only: start-up ends at the last one not after su.end_s
            first = sum(1 for t in g.times if t <= su.end_s + 1e-6)
            phases.append(Phase(0.0, round(su.end_s, 2), "startup", round(statistics.fmean(xs[:max(first, 1)]), 1),
                                su.note))
            plan.startup_s[g.index] = su.end_s
            plan.startup_basis[g.index] = su.basis
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
