"""straggler: one GPU of a multi-GPU job idles while its peers work; its rank holds the others back.

In data-parallel training every rank waits at each collective for the slowest: the peers' GPUs
spin in NCCL kernels (busy at low power) while the straggler's GPU waits for its own host side.
"""

from __future__ import annotations

import statistics

from ..findings import Advice, Finding
from .base import RuleContext, scale

# Rank among primary verdicts: before compute/communication, which describe the peers' waiting.
PRIMARY_RANK: int | None = 45
STRIP_LETTER: str | None = "G"  # what `nodetune history JOB`'s strip draws for this verdict


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for job in ctx.jobs:
        gs = [g for i in job.gpus if (g := ctx.gpu(i)) is not None and not g.lost and g.idle_time_share is not None]
        if len(gs) < 2:
            continue
        idle = {g.index: g.idle_time_share or 0.0 for g in gs}
        slow = max(gs, key=lambda g: idle[g.index])
        peers = [idle[g.index] for g in gs if g.index != slow.index]
        gap = idle[slow.index] - statistics.median(peers)
        if gap < th.straggler_gap_share:
            continue
        rank_pids = [p for p in job.pids if (info := ctx.window.process(p)) and slow.index in info.gpus]
        cpu = {p: ps.main_thread_pct for p in job.pids if (ps := ctx.proc(p)) is not None}
        att = ctx.attribution.get(slow.index)
        why = f"; its host side: {att.text}" if att and att.causes else ""
        peer_stacks = [ctx.stacks[p] for p in job.pids if p not in rank_pids and p in ctx.stacks]
        waiting = [s.categories.get("communication", 0.0) for s in peer_stacks if s.categories]
        out.append(Finding(
            "straggler", "warning", round(scale(gap, th.straggler_gap_share, 0.8) + (0.05 if waiting else 0.0), 2),
            f"straggler: GPU{slow.index}" + (f" (pid {', '.join(map(str, rank_pids))})" if rank_pids else "")
            + f" idle {idle[slow.index]:.0%} while its {len(peers)} peer GPU(s) idle "
              f"{statistics.median(peers):.0%}" + why,
            cause=att.top().cause if att and att.top() else None,  # type: ignore[union-attr]
            gpus=[slow.index], pids=rank_pids, job=job.id,
            evidence={"slow_gpu": slow.index, "idle_share_by_gpu": idle, "gap": round(gap, 3),
                      "main_thread_cpu_pct_by_pid": cpu,
                      "peer_communication_stack_share": round(statistics.fmean(waiting), 3) if waiting else None},
            advice=[Advice(f"Find what makes rank on GPU{slow.index} slower: uneven input per rank, a slower or "
                           "busier host CPU set, extra work on one rank (logging, evaluation, checkpoint on rank 0 "
                           "only); the other ranks wait for it at every collective.")]))
    return out
