"""Each job's own part of a window, where jobs took turns on a GPU.

A script that runs short programs one after another on one GPU puts the end of one and the start
of the next in the same window. The GPU's verdict over the whole window belongs to neither: each
job is diagnosed over the samples in which it was alive, and its history rows cover only that span.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodetune.probes.snapshot import Window

from .jobs import JobGroup

# Fewer samples than this say nothing steady about a job: it keeps the GPU's verdict for the window.
MIN_SPAN_SAMPLES = 4


@dataclass(frozen=True)
class JobSpan:
    """Indices of the first and last samples in which a job had a process alive."""

    first: int
    last: int

    def covers(self, n_samples: int) -> bool:
        """True where the job was there from (about) the window's start to its end."""
        return self.first <= 1 and self.last >= n_samples - 2


def job_spans(win: Window, jobs: list[JobGroup]) -> dict[str, JobSpan]:
    """Each job's span in `win`, from the samples that saw its GPU processes alive; a job whose
    processes no sample saw (recorded from the process list only) spans the whole window."""
    pids = {p: j.id for j in jobs for p in j.pids}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for k, s in enumerate(win.samples):
        for p in s.processes:
            jid = pids.get(p.pid)
            if jid is not None and p.alive:
                first.setdefault(jid, k)
                last[jid] = k
    end = max(len(win.samples) - 1, 0)
    return {j.id: JobSpan(first.get(j.id, 0), last.get(j.id, end)) for j in jobs}


def _strangers_outside(win: Window, gpu: int, span: JobSpan, mine: set[int]) -> bool:
    """Did the GPU hold another process's context in a sample outside `span`? (A job that ended
    long enough ago has left the window's process list, but not its GPU samples.)"""
    for k, s in enumerate(win.samples):
        if span.first <= k <= span.last:
            continue
        g = next((x for x in s.gpus if x.index == gpu), None)
        if g is not None and any(p.pid not in mine for p in g.processes):
            return True
    return False


def turns(win: Window, jobs: list[JobGroup]) -> dict[str, JobSpan]:
    """The jobs that shared a GPU with another job in turn, each with its span; empty where every
    job on a GPU was there throughout (ranks, or one job alone)."""
    spans = job_spans(win, jobs)
    n = len(win.samples)
    out: dict[str, JobSpan] = {}
    for gpu in sorted({g for j in jobs for g in j.gpus}):
        on = [j for j in jobs if gpu in j.gpus]
        if all(spans[j.id].covers(n) for j in on):
            continue
        if len(on) < 2:
            j = on[0]
            if not _strangers_outside(win, gpu, spans[j.id], set(j.all_pids)):
                continue  # alone on its GPU: its start-up or its end are phases of its own window
        for j in on:
            out[j.id] = spans[j.id]
    return out


def job_window(win: Window, job: JobGroup, span: JobSpan) -> Window:
    """The samples of `span`, with only this job's processes among the GPU and pending ones (the
    other jobs' were alive in other samples, or at the edges of this span)."""
    mine = set(job.all_pids)
    samples = win.samples[span.first:span.last + 1]
    procs = [p for p in win.processes if p.pid in mine or p.role not in ("gpu", "pending", "worker")]
    t0, t1 = samples[0].t, samples[-1].t
    stacks = [s for s in win.stacks if s.pid in mine]
    return Window(seconds=round(t1 - t0, 3), interval_s=win.interval_s, samples=samples, processes=procs,
                  stacks=stacks, missing=dict(win.missing))
