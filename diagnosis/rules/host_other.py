"""host_other: the GPU idles while its job's main thread does host work that is not loading input
nor a checkpoint: evaluation on the CPU, waiting on communication, garbage collection, sleeping,
or plain Python work, named by its commonest frame from py-spy."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext, active, confidence, scale

# Rank among primary verdicts: after the data and checkpoint causes; the largest share wins among them.
PRIMARY_RANK: int | None = 85
STRIP_LETTER: str | None = "H"  # what `nodetune history JOB`'s strip draws for this verdict

_CAUSES = ("evaluation", "communication", "gc", "sleeping", "host_other")
_ADVICE = {
    "evaluation": "Evaluate less often, keep metrics on the GPU (accumulate tensors, torchmetrics on device), or "
                  "run evaluation in another process on a copy of the weights.",
    "communication": "A rank waits for its peers: look for a straggler (uneven data per rank, one slow host) "
                     "or a host-side barrier in the loop.",
    "gc": "Python's garbage collector stalls the loop: gc.freeze() after start-up, or gc.disable() with a "
          "gc.collect() every N steps.",
    "sleeping": "The job sleeps between GPU steps: remove the sleep or polling, or release the GPU while it waits.",
}


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        att = ctx.attribution.get(g.index)
        if g.lost or att is None:
            continue
        # A GPU busy part of every sample (tiny kernels, copies) waits on dispatch, not on other host
        # work: that is launch_bound's or transfer_bound's to say.
        if (g.idle_share or 0) < th.cause_min_share:
            continue
        jobs = ctx.jobs_on(g.index)
        busy = any(active(ctx.job_procs(j), th) for j in jobs)
        # A job asleep on the host too is idle_allocated's case, not host work.
        cands = [c for c in att.causes if c.cause in _CAUSES and c.share >= th.cause_min_share
                 and (busy or c.cause != "sleeping")]
        if not cands:
            continue
        c = max(cands, key=lambda c: c.share)
        cause = "host_code" if c.cause == "host_other" else c.cause
        frame = c.detail.split(",")[0] if c.detail else None
        notes = list(att.notes)
        sev = "critical" if c.share >= th.cause_critical_share and "stacks" in c.basis and cause != "sleeping" \
            else "warning"
        text = _ADVICE.get(c.cause) or (f"The main thread spends {c.share:.0%} of the window in {frame or 'host code'} "
                                        "while the GPU waits: move it off the training loop (a background thread "
                                        "or process, overlapped with the next step) or onto the GPU.")
        out.append(Finding(
            "host_other", sev, confidence(scale(c.share, th.cause_min_share, 0.7), g, notes),
            f"host-side work holds the GPU ({cause}" + (f": {frame}" if frame else "") + f"): {att.text}",
            cause=cause, gpus=[g.index], pids=[p for j in jobs for p in j.all_pids],
            job=jobs[0].id if len(jobs) == 1 else None,
            evidence={"idle_share": att.idle_share, "cause_share": c.share, "top_frame": frame, "basis": c.basis,
                      "unexplained_share": att.unexplained_share},
            advice=[Advice(text)], notes=notes))
    return out
