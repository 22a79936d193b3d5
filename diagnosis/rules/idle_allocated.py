"""idle_allocated: a job holds GPU memory but does no work, for longer than a threshold."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext, active

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 20
STRIP_LETTER: str | None = "A"  # what `nodetune history JOB`'s strip draws for this verdict


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        if g.lost or not g.pids or g.idle_run_s < th.idle_allocated_min_s:
            continue
        held = g.process_memory_bytes if g.process_memory_bytes is not None else g.memory_used_bytes
        if held is None or held < th.idle_allocated_min_gib * 2**30:
            continue
        for job in ctx.jobs_on(g.index):
            procs = ctx.job_procs(job)
            if procs and active(procs, th):
                continue  # busy on the host: data_starved decides
            out.append(Finding(
                "idle_allocated", "warning", 0.9 if g.idle_run_s >= 2 * th.idle_allocated_min_s else 0.75,
                f"idle but allocated: {job.command[:60]!r} holds {held / 2**30:.1f} GiB on GPU{g.index} "
                f"with no GPU work for {g.idle_run_s:.0f} s",
                gpus=[g.index], pids=job.all_pids, job=job.id,
                evidence={"memory_held_gib": round(held / 2**30, 2), "idle_seconds": g.idle_run_s,
                          "util_pct": g.util_mean, "sm_active_pct": g.sm_mean,
                          "job_cpu_pct": round(sum(p.cpu_pct or 0 for p in procs), 1)},
                advice=[Advice("Release the GPU (end the job, or torch.cuda.empty_cache() after use); an idle "
                               "notebook or a hung job keeps others off this GPU.")]))
    return out
