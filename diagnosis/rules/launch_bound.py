"""launch_bound: the GPU is busy part of the time but its SMs do almost nothing: kernels too small,
the CPU launching them is the limit."""

from __future__ import annotations

from ..findings import Advice, Finding
from ..stacks import GPU_FACING
from .base import RuleContext, confidence, pct, pinning_helps

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 70


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        if g.lost or not g.pids:
            continue
        if max(g.pcie_rx_mibps or 0, g.pcie_tx_mibps or 0) >= th.transfer_min_mibps:
            continue  # copies, not kernel launches, keep this GPU busy: transfer_bound's case
        util = g.util_mean or 0.0
        notes: list[str] = []
        procs = [p for j in ctx.jobs_on(g.index) for p in ctx.job_procs(j)]
        main = max((p.main_thread_pct or 0 for p in procs if p.role == "gpu"), default=0.0)
        stacks = [ctx.stacks[p] for p in g.pids if p in ctx.stacks]
        # py-spy can vouch for a saturated thread that dispatches kernels rather than loading data:
        # then even a GPU that is mostly idle is held back by launch overhead.
        dispatching = (main >= th.loader_busy_pct and util >= 1 and bool(stacks)
                       and all(s.ok and s.data_loading_share is not None and s.data_loading_share < 0.1 for s in stacks))
        if util < th.launch_util_min_pct and not dispatching:
            continue
        if dispatching and util < th.launch_util_min_pct:
            notes.append(f"GPU busy only {util:.0f}% of the time, but the launching thread is saturated and its "
                         "stack samples show kernel dispatch, not data loading")
        if g.gpm:
            sm = g.sm_mean or 0.0
            tiny = sm < th.launch_sm_max_pct and sm / max(util, 1e-6) < th.launch_sm_util_ratio
            # A saturated thread dispatching kernels to a GPU that idles between them is the limit
            # whatever each kernel's size (eager batch-1 inference: SMs ~40% of its busy time).
            waiting = (main >= th.loader_busy_pct and util < th.busy_util_pct_no_gpm and sm < th.transfer_sm_max_pct
                       and bool(stacks) and all(s.ok and (s.data_loading_share or 0) < 0.1
                                                and sum(s.categories.get(c, 0.0) for c in GPU_FACING) >= 0.5
                                                for s in stacks))
            if not tiny and not waiting:
                continue
            base = 0.85 if main >= th.loader_busy_pct else 0.7
        else:
            # Without GPM: busy-time moderate, memory controller idle, a launching thread saturated.
            if util >= th.busy_util_pct_no_gpm or (g.util_mem_mean or 0) >= 10 or main < th.loader_busy_pct:
                continue
            base = 0.55
        if any(s.data_loading_share is not None and s.data_loading_share >= th.stack_loading_share for s in stacks):
            continue  # the thread is busy loading data, not launching kernels: data_starved's case
        out.append(Finding(
            "launch_bound", "warning", confidence(base, g, notes),
            f"launch-bound: GPU busy {pct(util)} of the time but SMs only {pct(g.sm_mean)} active; "
            f"the launching thread uses {main:.0f}% of a core",
            gpus=[g.index], pids=g.pids,
            evidence={"util_pct": util, "sm_active_pct": g.sm_mean, "sm_per_util": round((g.sm_mean or 0) / max(util, 1e-6), 3) if g.gpm else None,
                      "launch_thread_cpu_pct": main},
            advice=[Advice("Launch fewer, larger kernels: batch more work per step, fuse ops (torch.compile), or "
                           "capture the step in a CUDA graph (torch.compile(mode='reduce-overhead')).")]
            + ([Advice("Give the launching thread a fast, uncontended core near the GPU.", tuner="pinning",
                       params={"pids": g.pids})] if pinning_helps(ctx, g.pids, [g.index]) else [])
            + [Advice("Run CPUs at full clock while launching.", tuner="power", params={"governor": "performance"})],
            notes=notes))
    return out
