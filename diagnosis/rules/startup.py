"""startup: the job is starting (imports, CUDA context, weights, warm-up) and its GPU not yet
working, shown by evidence, never by the process's age alone; information, not a fault.

Named only from positive evidence the phases and attribution found: stacks under imports, model
construction, weight loading or compilation; a GPU context created inside the window (or not yet:
a process that has loaded CUDA) by a process busy on the CPU; GPU memory climbing. Start-up is normal:
the finding is information; a window whose start was left out says so too.
"""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext

# Rank among primary verdicts: last; a GPU's start-up is its verdict only when nothing else is.
PRIMARY_RANK: int | None = 90
STRIP_LETTER: str | None = "S"  # what `nodetune history JOB`'s strip draws for this verdict


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        att = ctx.attribution.get(g.index)
        c = next((c for c in att.causes if c.cause == "startup"), None) if att else None
        phases = ctx.phases.phases.get(g.index, [])
        first = phases[0] if phases and phases[0].kind == "startup" else None
        lead = first if ctx.phases.start_index > 0 else None
        # A job with no GPU context yet: nothing to attribute on the GPU, the phases saw it start.
        only = first is not None and g.index in ctx.phases.startup_only and (c is None or not g.pids)
        if g.lost or (lead is None and not only and (c is None or c.share < th.cause_min_share)):
            continue
        jobs = ctx.jobs_on(g.index)
        basis = ctx.phases.startup_basis.get(g.index, [])
        if lead is not None:
            summary = f"start-up left out: first {lead.end_s:.1f} s" + (f" ({lead.note})" if lead.note else "")
            share, conf = 0.0, 0.8
        elif only:
            assert first is not None
            pending = [p for j in jobs for p in j.pids if (i := ctx.window.process(p)) and i.role == "pending"]
            summary = "starting up" + (f": {first.note}" if first.note else "")
            if pending and not g.pids:
                summary += f"; no GPU context yet (pid {pending[0]} has loaded CUDA)"
            share, conf = 1.0, 0.85 if "stacks" in basis else 0.7
        else:
            assert att is not None and c is not None
            summary = f"starting up: {att.text}"
            share, conf = c.share, 0.85 if "stacks" in c.basis else 0.6
        out.append(Finding(
            "startup", "info", conf, summary, cause="startup", gpus=[g.index],
            pids=[p for j in jobs for p in j.all_pids], job=jobs[0].id if len(jobs) == 1 else None,
            evidence={"cause_share": share, "basis": c.basis if c else basis or ["phases"],
                      "detail": c.detail if c else (first.note if first else ""),
                      "left_out_s": lead.end_s if lead else None},
            advice=[] if lead else [Advice("Diagnose again once the job runs steadily; if start-up is long, cache "
                                           "the dataset index and weights locally and import lazily.")]))
    return out
