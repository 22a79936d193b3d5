"""Stacks over time: py-spy slices matched with the window's sample intervals.

A window holds py-spy slices (a few seconds each, stamped with the sampler's clock) across its
whole length. Each sample interval gets the main-thread category shares of the slices that overlap
it, weighted by overlap and by how many samples each slice holds; the rules get one merged
`StackEvidence` per process over the part of the window they judge. Slices written before stacks
were sliced carry no times: they stand for the window's last `duration_s`, as they always did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetune.probes.pystacks import FoldedStack, StackSample
from nodetune.probes.snapshot import Window

from .findings import StackEvidence
from .stacks import stack_evidence


@dataclass
class Slice:
    """One py-spy slice reduced to what attribution needs, with its span on the window's clock."""

    pid: int
    t0: float  # from the window's first sample
    t1: float
    main_samples: int
    categories: dict[str, float]
    frames: dict[str, str]


@dataclass
class Timeline:
    """Every usable slice of a window, by process."""

    slices: dict[int, list[Slice]] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)  # pid -> why py-spy saw nothing

    def shares(self, pids: list[int], a: float, b: float) -> tuple[dict[str, float], dict[str, str]] | None:
        """Category shares of the main threads of `pids` over [a, b] (window seconds), with each
        category's commonest deciding frame; None where no slice covers any of it."""
        acc: dict[str, float] = {}
        frames: dict[str, str] = {}
        weight = 0.0
        for pid in pids:
            for s in self.slices.get(pid, ()):
                over = min(b, s.t1) - max(a, s.t0)
                if over <= 0 or s.main_samples <= 0:
                    continue
                w = s.main_samples * over / max(s.t1 - s.t0, 1e-6)
                weight += w
                for c, v in s.categories.items():
                    acc[c] = acc.get(c, 0.0) + v * w
                for c, f in s.frames.items():
                    frames.setdefault(c, f)
        if weight <= 0:
            return None
        return {c: v / weight for c, v in acc.items()}, frames

    def covered_s(self, pids: list[int], a: float, b: float) -> float:
        """Seconds of [a, b] some slice of `pids` covers (slices of one process do not overlap)."""
        spans = sorted((max(a, s.t0), min(b, s.t1)) for p in pids for s in self.slices.get(p, ()) if s.main_samples)
        total, end = 0.0, a
        for x, y in spans:
            x = max(x, end)
            if y > x:
                total += y - x
                end = y
        return total


def _span(s: StackSample, win: Window) -> tuple[float, float]:
    t0 = win.samples[0].t if win.samples else 0.0
    if s.t_start is not None and s.t_end is not None:
        return s.t_start - t0, s.t_end - t0
    end = win.samples[-1].t - t0 if win.samples else 0.0
    return max(0.0, end - s.duration_s), end  # an older file: the window's last seconds


def timeline(win: Window) -> Timeline:
    """The window's slices as a Timeline (each slice's categories computed once)."""
    tl = Timeline()
    for s in win.stacks:
        ev = stack_evidence(s)
        if not ev.ok or ev.main_samples <= 0:
            if ev.reason:
                tl.reasons.setdefault(s.pid, ev.reason)
            continue
        a, b = _span(s, win)
        tl.slices.setdefault(s.pid, []).append(Slice(s.pid, a, b, ev.main_samples, ev.categories,
                                                     ev.category_frames))
    return tl


def merged_evidence(win: Window, a: float | None = None, b: float | None = None) -> dict[int, StackEvidence]:
    """One StackEvidence per process over the slices overlapping [a, b] (window seconds; the whole
    window when unset): their folded stacks summed, so shares and the top stack are over all of it."""
    by_pid: dict[int, list[StackSample]] = {}
    for s in win.stacks:
        x, y = _span(s, win)
        if a is not None and b is not None and s.ok and (y < a or x > b):
            continue
        by_pid.setdefault(s.pid, []).append(s)
    out: dict[int, StackEvidence] = {}
    for pid, samples in by_pid.items():
        ok = [s for s in samples if s.ok]
        if not ok:
            out[pid] = stack_evidence(samples[-1])
            continue
        counts: dict[tuple[int, int | None, str, tuple[str, ...]], int] = {}
        for s in ok:
            for f in s.stacks:
                key = (f.pid, f.tid, f.thread, tuple(f.frames))
                counts[key] = counts.get(key, 0) + f.count
        merged = StackSample(pid=pid, ok=True, duration_s=round(sum(s.duration_s for s in ok), 2),
                             rate_hz=ok[0].rate_hz, samples=sum(s.samples for s in ok),
                             stacks=[FoldedStack(p, t, th, list(fr), n) for (p, t, th, fr), n in counts.items()],
                             t_start=ok[0].t_start, t_end=ok[-1].t_end)
        ev = stack_evidence(merged)
        spans = [_span(s, win) for s in ok]
        ev.duration_s = round(sum(y - x for x, y in spans), 2)
        out[pid] = ev
    return out
