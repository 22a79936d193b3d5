"""checkpoint: the GPU idles while its job writes a checkpoint (torch.save, pickling, fsync).

Named only from evidence: bytes the job wrote in the idle intervals (/proc/PID/io write_bytes)
or main-thread stacks inside serialization; the attribution says how much of the window it cost.
"""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext, confidence, scale

# Rank among primary verdicts: between the busy verdicts and the other idle causes; where several
# idle causes fire, the one explaining the most time is the verdict.
PRIMARY_RANK: int | None = 78
STRIP_LETTER: str | None = "K"  # what `nodetune history JOB`'s strip draws for this verdict


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        att = ctx.attribution.get(g.index)
        if g.lost or att is None:
            continue
        c = next((c for c in att.causes if c.cause == "checkpoint"), None)
        if c is None or c.share < th.cause_min_share:
            continue
        both = {"counters", "stacks"} <= set(c.basis)
        notes: list[str] = list(att.notes)
        sev = "critical" if c.share >= th.cause_critical_share else "warning"
        base = scale(c.share, th.cause_min_share, 0.7) + (0.05 if both else 0.0)
        jobs = ctx.jobs_on(g.index)
        out.append(Finding(
            "checkpoint", sev, confidence(base, g, notes),
            f"checkpoint stalls: {att.text}",
            cause="checkpoint", gpus=[g.index], pids=[p for j in jobs for p in j.all_pids],
            job=jobs[0].id if len(jobs) == 1 else None,
            evidence={"idle_share": att.idle_share, "cause_share": c.share, "checkpoint_seconds": c.seconds,
                      "basis": c.basis, "detail": c.detail, "unexplained_share": att.unexplained_share},
            advice=[Advice("Checkpoint without stopping the GPU: save from a background thread or process on a "
                           "copy of the state (torch.distributed.checkpoint.async_save, or state_dict() to CPU then "
                           "torch.save in a thread), and fsync off the training loop."),
                    Advice("Checkpoint less often, or to fast local NVMe and copy it off later; shard large "
                           "checkpoints so each rank writes its own part.")],
            notes=notes))
    return out
