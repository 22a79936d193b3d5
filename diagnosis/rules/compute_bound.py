"""compute_bound: the SMs are busy and memory bandwidth is not the limit. Healthy when tensor pipes work."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext, confidence, pct, sm_busy

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 50
STRIP_LETTER: str | None = "C"  # what `nodetune history JOB`'s strip draws for this verdict


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        if g.lost or not sm_busy(g, th):
            continue
        if g.gpm:
            if (g.dram_mean or 0) >= th.memory_bound_dram_pct and (g.tensor_mean or 0) < th.tensor_busy_pct:
                continue  # memory_bound's case
        elif (g.util_mem_mean or 0) >= th.memory_bound_dram_pct_no_gpm:
            continue
        notes: list[str] = []
        tensor = g.tensor_mean or 0
        healthy = g.gpm and tensor >= th.tensor_busy_pct
        ev = {"util_pct": g.util_mean, "sm_active_pct": g.sm_mean, "tensor_active_pct": g.tensor_mean,
              "dram_bw_pct": g.dram_mean, "fp32_active_pct": g.fp32_mean, "fp16_active_pct": g.fp16_mean,
              "idle_share": g.idle_share}
        advice = []
        if healthy:
            summary = f"compute-bound and healthy: SMs {pct(g.sm_mean)} active, tensor pipes {pct(tensor)}"
            sev, base = "info", 0.9
        elif g.gpm and (g.fp32_mean or 0) >= th.fp32_note_pct:
            summary = (f"compute-bound on FP32 without tensor cores: SMs {pct(g.sm_mean)}, FP32 pipes "
                       f"{pct(g.fp32_mean)}, tensor {pct(tensor)}")
            sev, base = "warning", 0.85
            advice.append(Advice("Use tensor cores: bf16/fp16 autocast, or allow TF32 "
                                 "(torch.backends.cuda.matmul.allow_tf32 = True) for FP32 matmuls."))
        else:
            summary = f"compute-bound: SMs {pct(g.sm_mean)} active, tensor {pct(g.tensor_mean)}"
            sev, base = "info", 0.75
        if not g.gpm:
            summary = (f"busy {pct(g.util_mean)} of the time, memory controller {pct(g.util_mem_mean)} "
                       "(likely compute-bound)")
        out.append(Finding("compute_bound", sev, confidence(base, g, notes), summary, gpus=[g.index],
                           pids=g.pids, evidence=ev, advice=advice, notes=notes))
    return out
