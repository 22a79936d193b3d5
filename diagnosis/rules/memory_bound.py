"""memory_bound: HBM bandwidth near its ceiling while tensor pipes idle (SM activity can still be high)."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext, confidence, pct, scale, sm_busy

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 30
STRIP_LETTER: str | None = "M"  # what `nodetune history JOB`'s strip draws for this verdict


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        if g.lost or not sm_busy(g, th):
            continue
        notes: list[str] = []
        if g.gpm:
            dram, tensor = g.dram_mean or 0, g.tensor_mean or 0
            if dram < th.memory_bound_dram_pct or tensor >= th.tensor_busy_pct:
                continue
            base = scale(dram, th.memory_bound_dram_pct, 90)
            summary = (f"memory-bound: HBM bandwidth {pct(dram)} of peak, tensor pipes {pct(tensor)}, "
                       f"SMs {pct(g.sm_mean)}")
        else:
            dram = g.util_mem_mean or 0
            if dram < th.memory_bound_dram_pct_no_gpm:
                continue
            base = scale(dram, th.memory_bound_dram_pct_no_gpm, 95)
            summary = f"likely memory-bound: memory controller busy {pct(dram)}, GPU busy {pct(g.util_mean)}"
        out.append(Finding(
            "memory_bound", "info", confidence(base, g, notes), summary, gpus=[g.index], pids=g.pids,
            evidence={"dram_bw_pct": g.dram_mean, "mem_util_pct": g.util_mem_mean, "tensor_active_pct": g.tensor_mean,
                      "sm_active_pct": g.sm_mean, "util_pct": g.util_mean},
            advice=[Advice("Cut bytes moved: fuse elementwise ops (torch.compile), keep activations in bf16, "
                           "avoid needless .contiguous()/copies; bandwidth, not the node, is the limit.")],
            notes=notes))
    return out
