"""Idle-time attribution: each idle GPU second split by what its job's host side was doing.

A sample interval's idle time is (1 - utilization) of it: NVML utilization is the share of the
sample period in which a kernel ran. The start-up stretch the phases found (by stacks or GPU
memory) is start-up; an interval whose own stack slices are mostly start-up is too, its reads
being imports and weights, not data. Counters that line up with the interval name a cause next:
bytes the job wrote (/proc/PID/io write_bytes is charged when pages are dirtied, so it is as
current as the write calls; a checkpoint), bytes it read or threads in D state (loading from
storage), saturated DataLoader workers (loading on the CPU). py-spy's main-thread stacks of the
same interval then split what is left by category; the GPU-facing ones (dispatching kernels,
waiting on them) are `dispatch` once the GPU has worked (it idles between the work the host
launches) and start-up warm-up before. Intervals no slice covers (files written before stacks were
sliced) are split by the window's stacks as a whole. What neither explains is `unexplained`,
never guessed.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

from nodetune.config.diagnosis import Thresholds
from nodetune.probes.processes import ProcessSample
from nodetune.probes.snapshot import Window

from .findings import CauseShare, IdleAttribution, StackEvidence
from .jobs import JobGroup
from .phases import ACTIVE_PCT
from .stack_timeline import Timeline
from .stacks import GPU_FACING

# Stack category -> cause of idle time.
CAUSE_OF = {"data_loading": "data_loading", "checkpoint": "checkpoint", "startup": "startup",
            "evaluation": "evaluation", "communication": "communication", "gc": "gc", "sleeping": "sleeping",
            "other": "host_other"}
WORDS = {"data_loading": "loading data", "checkpoint": "writing a checkpoint", "startup": "starting up",
         "evaluation": "evaluating", "communication": "waiting on communication", "gc": "in garbage collection",
         "sleeping": "sleeping", "host_other": "in host code", "dispatch": "launching GPU work"}


@dataclass
class _Acc:
    seconds: dict[str, float] = field(default_factory=dict)
    basis: dict[str, set[str]] = field(default_factory=dict)

    def add(self, cause: str, s: float, basis: str) -> None:
        self.seconds[cause] = self.seconds.get(cause, 0.0) + s
        self.basis.setdefault(cause, set()).add(basis)


def process_index(win: Window) -> list[dict[int, ProcessSample]]:
    """Each sample's living processes by pid, built once per window (every lookup after is O(1))."""
    return [{p.pid: p for p in s.processes if p.alive} for s in win.samples]


def _window_total(first: dict[int, ProcessSample], last: dict[int, ProcessSample], pids: list[int],
                  attr: str) -> int:
    """The growth of counter `attr` of `pids` from the first sample to the last (in neither: 0).
    One comprehension: a call per process was a tenth of a 10k-worker diagnosis."""
    get = operator.attrgetter(attr)
    return sum([max(0, y - x) for p in pids
                if (a := first.get(p)) is not None and (b := last.get(p)) is not None
                and (x := get(a)) is not None and (y := get(b)) is not None])


def _spread_io(times: list[float], idx: list[dict[int, ProcessSample]], pid: int,
               clk: int | None = None) -> tuple[list[float], list[float], list[float] | None]:
    """`pid`'s bytes written and read between each two of its consecutive readings, given to every
    sample interval between them split by time, and with `clk` its CPU rate (a worker's) held over
    them: the agent reads loader workers only every few samples, so the intervals between two
    readings share what the second one shows. One walk of the samples (a 10k-worker window has 10k)."""
    wr, rd = [0.0] * len(times), [0.0] * len(times)
    cpu = [0.0] * len(times) if clk is not None else None
    prev: ProcessSample | None = None
    kp = 0
    for k, b in enumerate([d.get(pid) for d in idx]):
        if b is None:
            continue
        if prev is not None:
            # the deltas and the CPU rate written out: three calls per reading were most of this loop
            span = max(times[k] - times[kp], 1e-6)
            x, y = prev.write_bytes, b.write_bytes
            vw = max(0, y - x) if x is not None and y is not None else 0
            x, y = prev.read_bytes, b.read_bytes
            vr = max(0, y - x) if x is not None and y is not None else 0
            vc = 0.0
            if clk is not None and prev.utime is not None and b.utime is not None and prev.stime is not None \
                    and b.stime is not None:
                vc = 100.0 * ((b.utime + b.stime) - (prev.utime + prev.stime)) / clk / span
            for j in range(kp + 1, k + 1):
                share = times[j] - times[j - 1]
                wr[j], rd[j] = vw * share / span, vr * share / span
                if cpu is not None:
                    cpu[j] = vc
        prev, kp = b, k
    return wr, rd, cpu


def combine_stacks(stacks: list[StackEvidence]) -> tuple[dict[str, float], dict[str, str], float | None]:
    """Mean category shares over the usable stacks of a GPU's processes, their frames, coverage (s)."""
    ok = [s for s in stacks if s.ok and s.main_samples > 0 and s.categories]
    if not ok:
        return {}, {}, None
    cats: dict[str, float] = {}
    for s in ok:
        for c, v in s.categories.items():
            cats[c] = cats.get(c, 0.0) + v / len(ok)
    frames: dict[str, str] = {}
    for s in ok:
        for c, f in s.category_frames.items():
            frames.setdefault(c, f)
    return cats, frames, max(s.duration_s for s in ok)


@dataclass
class _Interval:
    """What one sample interval of a GPU shows, independent of any threshold."""

    t: float  # end, from the window's first sample
    dt: float
    util: float
    sm: float | None
    written: int  # bytes the job wrote in the interval
    read: int
    d_state: int  # job threads in D state at its end
    worker_cpu: list[float]  # each loader worker's CPU (% of a core) over the interval
    age: float | None  # the job's youngest main process's age at its end
    cats: dict[str, float] | None = None  # main-thread stack categories in this interval (None: no slice)


@dataclass
class Facts:
    """A GPU's window reduced to per-interval facts, once; `classify` turns them into an attribution
    for any thresholds (the borderline check re-runs only that)."""

    gpu: int
    total_s: float
    intervals: list[_Interval]
    window_writes: int
    window_reads: int
    workers: int
    cats: dict[str, float]
    frames: dict[str, str]
    coverage: float | None
    stack_reasons: list[str]
    startup_s: float | None  # idle before this (from the window's start) is start-up
    startup_basis: list[str] = field(default_factory=list)
    iv_frames: dict[str, str] = field(default_factory=dict)  # deciding frames of the per-interval stacks
    covered_s: float | None = None  # seconds of the window some stack slice covers


def prepare(win: Window, gpu: int, jobs: list[JobGroup], stacks: list[StackEvidence], clk_tck: int,
            index: list[dict[int, ProcessSample]] | None = None, startup_s: float | None = None,
            memo: dict[tuple[int, ...], list[tuple[int, int, int, list[float]]]] | None = None,
            tl: Timeline | None = None, t_shift: float = 0.0) -> Facts | None:
    """The per-interval facts of GPU `gpu`; None when the window has fewer than two samples.
    `tl` holds the stack slices on the clock of the window `t_shift` seconds before this one."""
    samples = win.samples
    if len(samples) < 2:
        return None
    idx = index if index is not None else process_index(win)
    t0 = samples[0].t
    main_pids = [p for j in jobs for p in j.pids]
    workers = [p for j in jobs for p in j.workers]
    pids = main_pids + workers
    infos = {p.pid: p for p in win.processes}
    starts = [info.starttime / clk_tck for p in main_pids
              if (info := infos.get(p)) is not None and info.starttime is not None and clk_tck > 0]
    born = max(starts) if starts else None
    first, last = idx[0], idx[-1]
    facts = Facts(gpu, max(samples[-1].t - t0, 1e-6), [],
                  _window_total(first, last, pids, "write_bytes"), _window_total(first, last, pids, "read_bytes"),
                  len(workers), *combine_stacks(stacks), sorted({s.reason for s in stacks if s.reason}), startup_s)
    # Per interval: bytes written, bytes read, threads in D state, each worker's CPU; the same for
    # every GPU of a job.
    key = tuple(pids)
    io = memo.get(key) if memo is not None else None
    if io is None:
        times = [s.t for s in samples]
        written, read, cpu_of = [], [], {}
        worker_set = set(workers)
        for p in pids:
            w, r, rate = _spread_io(times, idx, p, clk_tck if p in worker_set else None)
            written.append(w)
            read.append(r)
            if rate is not None:
                cpu_of[p] = rate
        cpu = [cpu_of[p] for p in workers]
        io = [(0, 0, 0, [])]
        for k in range(1, len(samples)):
            b = idx[k]
            io.append((round(sum(w[k] for w in written)), round(sum(r[k] for r in read)),
                       sum(1 for p in pids if p in b for t in b[p].threads if t.state == "D"),
                       [c[k] for c in cpu]))
        if memo is not None:
            memo[key] = io
    for k in range(1, len(samples)):
        s0, s1 = samples[k - 1], samples[k]
        g = next((x for x in s1.gpus if x.index == gpu and x.state == "ok"), None)
        if g is None or g.util_gpu_pct is None:
            continue
        dt = max(s1.t - s0.t, 1e-6)
        age = s1.t - born if born is not None else None
        # Same sanity bound as phases.process_age_s: a clock not counted from boot says nothing.
        if age is not None and not -win.seconds - 5 <= age <= 10 * 365 * 86400:
            age = None
        cats = None
        if tl is not None:
            got = tl.shares(main_pids, s0.t - t0 + t_shift, s1.t - t0 + t_shift)
            if got is not None:
                cats, fr = got
                for c, f in fr.items():
                    facts.iv_frames.setdefault(c, f)
        facts.intervals.append(_Interval(
            s1.t - t0, dt, g.util_gpu_pct, g.gpm.sm_util_pct if g.gpm else None, *io[k], age, cats))
    if tl is not None and tl.slices:
        facts.covered_s = round(tl.covered_s(main_pids, t_shift, t_shift + facts.total_s), 2)
    return facts


def attribute(win: Window, gpu: int, jobs: list[JobGroup], stacks: list[StackEvidence], th: Thresholds,
              clk_tck: int, startup_s: float | None = None) -> IdleAttribution | None:
    """Split GPU `gpu`'s idle time over the window by cause; None when the GPU has no samples."""
    facts = prepare(win, gpu, jobs, stacks, clk_tck, startup_s=startup_s)
    return classify(facts, th) if facts is not None else None


def classify(f: Facts, th: Thresholds) -> IdleAttribution:
    """The attribution of prepared facts under thresholds `th`."""
    total_s, cats = f.total_s, f.cats
    acc = _Acc()
    idle_s = remaining = 0.0
    active = False
    written = sum(iv.written for iv in f.intervals)
    read = 0  # bytes read in intervals the counters gave to data loading (imports are not data)
    ages = [iv.age for iv in f.intervals if iv.age is not None]
    startup_s = f.startup_s or 0.0
    startup_basis = f.startup_basis or ["stacks"]
    busy_pct = th.loader_busy_pct
    for iv in f.intervals:
        w = max(0.0, 1 - iv.util / 100) * iv.dt
        idle_s += w
        if w <= 0:
            if iv.util >= ACTIVE_PCT or (iv.sm or 0) >= ACTIVE_PCT:
                active = True
            continue
        io_rate = th.attr_io_mibps * 2**20 * iv.dt
        if iv.t <= startup_s + 1e-6:
            # The phases' start-up stretch, shown by stacks or the GPU memory a job loads.
            for b in startup_basis:
                acc.add("startup", w / len(startup_basis), b)
        elif iv.cats is not None and iv.cats.get("startup", 0.0) >= 0.5:
            acc.add("startup", w, "stacks")  # its reads are imports and weights, not the job's data
        elif iv.written >= io_rate and iv.written > iv.read:
            acc.add("checkpoint", w, "counters")
        elif iv.d_state and f.window_writes > max(f.window_reads, io_rate / iv.dt * total_s * 0.1):
            acc.add("checkpoint", w, "counters")  # waiting on writeback/fsync of what it wrote
        elif iv.read >= io_rate or iv.d_state:
            acc.add("data_loading", w, "counters")
            read += iv.read
        elif f.workers and len([c for c in iv.worker_cpu if c >= busy_pct]) >= max(1, 0.75 * f.workers):
            acc.add("data_loading", w, "counters")
        elif iv.cats:
            # What the main thread did in this very interval splits its idle time.
            for c, v in iv.cats.items():
                if v <= 0:
                    continue
                if c in GPU_FACING:
                    acc.add("dispatch" if active else "startup", w * v, "stacks")
                elif c in CAUSE_OF:
                    acc.add(CAUSE_OF[c], w * v, "stacks")
        else:
            remaining += w
        if iv.util >= ACTIVE_PCT or (iv.sm or 0) >= ACTIVE_PCT:
            active = True
    if idle_s <= 0 and not acc.seconds:
        return IdleAttribution(f.gpu, 0.0, 0.0, stack_seconds=f.coverage, text="idle 0%")
    # Intervals no slice covered: the window's stacks as a whole split them, less what the counters
    # already gave each category (they speak for the time after start-up).
    span = max(total_s - startup_s, 0.0)
    if cats and remaining > 0:
        left = {c: max(0.0, v * span - acc.seconds.get(CAUSE_OF[c], 0.0))
                for c, v in cats.items() if c not in GPU_FACING and c in CAUSE_OF}
        mass = sum(left.values())
        if mass > 0:
            explained = min(remaining, mass)
            for c, v in left.items():
                if v > 0:
                    acc.add(CAUSE_OF[c], explained * v / mass, "stacks")
    for c, v in cats.items():  # stacks that agree with what the counters named corroborate them
        if c in CAUSE_OF and CAUSE_OF[c] in acc.seconds and v >= 0.1:
            acc.basis[CAUSE_OF[c]].add("stacks")
    unexplained = max(0.0, idle_s - sum(acc.seconds.values()))
    att = IdleAttribution(gpu=f.gpu, idle_share=round(idle_s / total_s, 3), idle_s=round(idle_s, 2),
                          unexplained_share=round(unexplained / total_s, 3), stack_seconds=f.coverage)
    for cause, secs in sorted(acc.seconds.items(), key=lambda kv: -kv[1]):
        share = round(secs / total_s, 3)
        if share <= 0:
            continue
        att.causes.append(CauseShare(cause, share, round(secs, 2), sorted(acc.basis[cause]),
                                     _detail(cause, {**f.frames, **f.iv_frames}, written, read, total_s, ages)))
    if not cats:
        att.notes.append("no usable stack samples" + (f" ({'; '.join(f.stack_reasons)})" if f.stack_reasons else "")
                         + ": only counters split the idle time")
    elif f.covered_s is not None and f.covered_s < total_s * 0.8:
        att.notes.append(f"stacks cover {f.covered_s:.1f} s of the {total_s:.1f} s window")
    elif f.covered_s is None and f.coverage is not None and f.coverage < total_s / 2:
        att.notes.append(f"stacks cover the last {f.coverage:.1f} s of the {total_s:.1f} s window")
    att.text = describe(att)
    return att


def _detail(cause: str, frames: dict[str, str], written: int, read: int, total_s: float, ages: list[float]) -> str:
    cat = "gpu_dispatch" if cause == "dispatch" else next((c for c, v in CAUSE_OF.items() if v == cause), cause)
    parts = []
    if cat in frames:
        parts.append(frames[cat].split(" (")[0])
    if cause == "checkpoint" and written:
        parts.append(f"{written / 2**30:.1f} GiB written" if written >= 2**29 else f"{written / 2**20:.0f} MiB written")
    if cause == "data_loading" and read >= 2**20:
        parts.append(f"reading {read / total_s / 2**20:.0f} MiB/s")
    if cause == "startup" and ages:
        parts.append(f"process {max(min(ages), 0):.0f} s old")
    return ", ".join(parts)


def describe(att: IdleAttribution) -> str:
    """'idle 86%: 71% writing a checkpoint (torch.save, 2.9 GiB written), 15% unexplained'."""
    if att.idle_share < 0.01:
        return "idle 0%"
    parts = [f"{c.share:.0%} {WORDS.get(c.cause, c.cause)}" + (f" ({c.detail})" if c.detail else "")
             for c in att.causes if c.share >= 0.01]
    if att.unexplained_share >= 0.01:
        parts.append(f"{att.unexplained_share:.0%} unexplained")
    return f"idle {att.idle_share:.0%}" + (": " + ", ".join(parts) if parts else "")
