"""Idle-time attribution: each idle GPU second split by what its job's host side was doing.

A sample interval's idle time is (1 - utilization) of it: NVML utilization is the share of the
sample period in which a kernel ran. Counters that line up with the interval name a cause first:
bytes the job wrote (/proc/PID/io write_bytes is charged when pages are dirtied, so it is as
current as the write calls; a checkpoint), bytes it read or threads in D state (loading from
storage), saturated DataLoader workers (loading on the CPU), a process too young to have started
its GPU work (start-up). py-spy's main-thread stacks then split what is left: a stack category
holding share p of the thread's samples is taken to hold p of the wall time, less what counters
already gave that category. Stacks waiting for the GPU (synchronize, kernel dispatch) explain no
idle time. What neither explains is `unexplained`, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetune.config.diagnosis import Thresholds
from nodetune.probes.processes import ProcessSample
from nodetune.probes.snapshot import Window

from .findings import CauseShare, IdleAttribution, StackEvidence
from .jobs import JobGroup
from .phases import process_age_s
from .stacks import GPU_FACING

# Stack category -> cause of idle time.
CAUSE_OF = {"data_loading": "data_loading", "checkpoint": "checkpoint", "startup": "startup",
            "evaluation": "evaluation", "communication": "communication", "gc": "gc", "sleeping": "sleeping",
            "other": "host_other"}
WORDS = {"data_loading": "loading data", "checkpoint": "writing a checkpoint", "startup": "starting up",
         "evaluation": "evaluating", "communication": "waiting on communication", "gc": "in garbage collection",
         "sleeping": "sleeping", "host_other": "in host code", "dispatch": "launching GPU work"}
# A GPU counts as having started work once a sample shows it this busy.
WORKED_UTIL_PCT = 50.0


@dataclass
class _Acc:
    seconds: dict[str, float] = field(default_factory=dict)
    basis: dict[str, set[str]] = field(default_factory=dict)

    def add(self, cause: str, s: float, basis: str) -> None:
        self.seconds[cause] = self.seconds.get(cause, 0.0) + s
        self.basis.setdefault(cause, set()).add(basis)


def _proc_at(win: Window, k: int) -> dict[int, ProcessSample]:
    return {p.pid: p for p in win.samples[k].processes if p.alive}


def _delta(a: ProcessSample | None, b: ProcessSample | None, attr: str) -> int:
    if a is None or b is None:
        return 0
    x, y = getattr(a, attr), getattr(b, attr)
    return max(0, y - x) if x is not None and y is not None else 0


def _cpu_pct(a: ProcessSample | None, b: ProcessSample | None, dt: float, clk: int) -> float:
    if a is None or b is None or a.utime is None or b.utime is None or a.stime is None or b.stime is None:
        return 0.0
    return 100.0 * ((b.utime + b.stime) - (a.utime + a.stime)) / clk / dt


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


def attribute(win: Window, gpu: int, jobs: list[JobGroup], stacks: list[StackEvidence], th: Thresholds,
              clk_tck: int) -> IdleAttribution | None:
    """Split GPU `gpu`'s idle time over the window by cause; None when the GPU has no samples."""
    samples = win.samples
    if len(samples) < 2:
        return None
    total_s = max(samples[-1].t - samples[0].t, 1e-6)
    main_pids = [p for j in jobs for p in j.pids]
    workers = [p for j in jobs for p in j.workers]
    acc = _Acc()
    idle_s = 0.0
    remaining = 0.0
    worked = False
    written = read = 0
    window_writes = sum(_delta(_proc_at(win, 0).get(p), _proc_at(win, len(samples) - 1).get(p), "write_bytes")
                        for p in main_pids + workers)
    window_reads = sum(_delta(_proc_at(win, 0).get(p), _proc_at(win, len(samples) - 1).get(p), "read_bytes")
                       for p in main_pids + workers)
    cats, frames, coverage = combine_stacks(stacks)
    stacks_say_startup = bool(cats) and max(((c, v) for c, v in cats.items() if c not in GPU_FACING),
                                            key=lambda cv: cv[1], default=("", 0.0))[0] == "startup"
    ages: list[float] = []
    for k in range(1, len(samples)):
        s0, s1 = samples[k - 1], samples[k]
        g = next((x for x in s1.gpus if x.index == gpu and x.state == "ok"), None)
        if g is None or g.util_gpu_pct is None:
            continue
        dt = max(s1.t - s0.t, 1e-6)
        util = g.util_gpu_pct
        w = max(0.0, 1 - util / 100) * dt
        idle_s += w
        a, b = _proc_at(win, k - 1), _proc_at(win, k)
        wr = sum(_delta(a.get(p), b.get(p), "write_bytes") for p in main_pids + workers)
        rd = sum(_delta(a.get(p), b.get(p), "read_bytes") for p in main_pids + workers)
        written += wr
        read += rd
        age = min((x for p in main_pids if (x := process_age_s(win, p, clk_tck, s1.t)) is not None), default=None)
        if age is not None:
            ages.append(age)
        if util >= WORKED_UTIL_PCT:
            worked = True
        if w <= 0:
            continue
        d_state = sum(1 for p in main_pids + workers if p in b for t in b[p].threads if t.state == "D")
        io_rate = th.attr_io_mibps * 2**20 * dt
        busy_workers = [p for p in workers if _cpu_pct(a.get(p), b.get(p), dt, clk_tck) >= th.loader_busy_pct]
        if not worked and age is not None and age <= th.startup_max_age_s and (not cats or stacks_say_startup):
            acc.add("startup", w, "process_age")
        elif wr >= io_rate and wr > rd:
            acc.add("checkpoint", w, "counters")
        elif d_state and window_writes > max(window_reads, io_rate / dt * total_s * 0.1):
            acc.add("checkpoint", w, "counters")  # waiting on writeback/fsync of what it wrote
        elif rd >= io_rate or d_state:
            acc.add("data_loading", w, "counters")
        elif workers and len(busy_workers) >= max(1, 0.75 * len(workers)):
            acc.add("data_loading", w, "counters")
        else:
            remaining += w
    if idle_s <= 0 and not acc.seconds:
        return IdleAttribution(gpu, 0.0, 0.0, stack_seconds=coverage, text="idle 0%")
    # Stacks split what the counters left, less what the counters already gave each category.
    explained_by_stacks = 0.0
    if cats and remaining > 0:
        left = {c: max(0.0, v * total_s - acc.seconds.get(CAUSE_OF[c], 0.0))
                for c, v in cats.items() if c not in GPU_FACING and c in CAUSE_OF}
        mass = sum(left.values())
        if mass > 0:
            explained_by_stacks = min(remaining, mass)
            for c, v in left.items():
                if v > 0:
                    acc.add(CAUSE_OF[c], explained_by_stacks * v / mass, "stacks")
    for c, v in cats.items():  # stacks that agree with what the counters named corroborate them
        if c in CAUSE_OF and CAUSE_OF[c] in acc.seconds and v >= 0.1:
            acc.basis[CAUSE_OF[c]].add("stacks")
    unexplained = max(0.0, idle_s - sum(acc.seconds.values()))
    att = IdleAttribution(gpu=gpu, idle_share=round(idle_s / total_s, 3), idle_s=round(idle_s, 2),
                          unexplained_share=round(unexplained / total_s, 3), stack_seconds=coverage)
    for cause, secs in sorted(acc.seconds.items(), key=lambda kv: -kv[1]):
        share = round(secs / total_s, 3)
        if share <= 0:
            continue
        att.causes.append(CauseShare(cause, share, round(secs, 2), sorted(acc.basis[cause]),
                                     _detail(cause, frames, written, read, total_s, ages)))
    if not cats:
        reasons = sorted({s.reason for s in stacks if s.reason})
        att.notes.append("no usable stack samples" + (f" ({'; '.join(reasons)})" if reasons else "")
                         + ": only counters split the idle time")
    elif coverage is not None and coverage < total_s / 2:
        att.notes.append(f"stacks cover the last {coverage:.1f} s of the {total_s:.1f} s window")
    att.text = describe(att)
    return att


def _detail(cause: str, frames: dict[str, str], written: int, read: int, total_s: float, ages: list[float]) -> str:
    cat = next((c for c, v in CAUSE_OF.items() if v == cause), cause)
    parts = []
    if cat in frames:
        parts.append(frames[cat].split(" (")[0])
    if cause == "checkpoint" and written:
        parts.append(f"{written / 2**30:.1f} GiB written" if written >= 2**29 else f"{written / 2**20:.0f} MiB written")
    if cause == "data_loading" and read >= 2**20:
        parts.append(f"reading {read / total_s / 2**20:.0f} MiB/s")
    if cause == "startup" and ages:
        parts.append(f"process {min(ages):.0f} s old")
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
