"""launch_bound: the GPU is busy part of the time but its SMs do almost nothing: kernels too small,
the CPU launching them is the limit. Also a saturated thread whose stacks dispatch to a GPU idling
between kernels; without stacks, kernels trickling in every sample from a thread with no loader
workers or reads (confidence 0.6)."""

from __future__ import annotations

from ..findings import Advice, Finding
from ..stacks import GPU_FACING
from .base import RuleContext, confidence, pct, pinning_helps

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 70
STRIP_LETTER: str | None = "L"  # what `nodetune history JOB`'s strip draws for this verdict
# Main-thread work that is not dispatching kernels: a thread mostly here is busy, but not launching.
# A GPU idle in at most this share of samples is fed continuously, not in bursts between batches.
TRICKLE_IDLE_SHARE = 0.1
# SM activity per busy-time below this: small kernels (a training step's arrive with the SMs busy).
TRICKLE_SM_UTIL_RATIO = 0.5
# A job reading this much (MB/s) from storage may be loading its input in the launching thread.
TRICKLE_READ_MBPS = 5.0
ELSEWHERE = ("checkpoint", "startup", "sleeping", "communication", "data_loading")


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
                       and all(s.ok and s.data_loading_share is not None and s.data_loading_share < 0.1
                               for s in stacks))
        # Without stacks: a saturated thread with no loader workers and no reads, and a GPU busy a
        # little in every sample (never a whole sample idle, as a GPU waiting for batches is):
        # kernels trickle in as fast as one thread can launch them.
        trickle = (not any(s.ok for s in stacks) and main >= th.loader_busy_pct
                   and th.idle_util_pct <= util < th.busy_util_pct_no_gpm
                   and (g.idle_share or 0.0) <= TRICKLE_IDLE_SHARE
                   and (not g.gpm or ((g.sm_mean or 0.0) < th.transfer_sm_max_pct
                                      and (g.sm_mean or 0.0) / max(util, 1e-6) < TRICKLE_SM_UTIL_RATIO))
                   and not any(p.role == "worker" and p.alive_samples >= 2 for p in procs)
                   and sum(p.read_mbps or 0.0 for p in procs) < TRICKLE_READ_MBPS
                   and not any(p.d_threads_mean >= 0.5 for p in procs))
        if util < th.launch_util_min_pct and not dispatching and not trickle:
            continue
        if trickle and not dispatching:
            notes.append("no stack samples: judged from a saturated launching thread with no loader workers or "
                         "reads, and a GPU busy a little in every sample")
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
            if not tiny and not waiting and not trickle:
                continue
            base = 0.6 if trickle and not (tiny and util >= th.launch_util_min_pct) else (
                0.85 if main >= th.loader_busy_pct else 0.7)
        else:
            # Without GPM: busy-time moderate, memory controller idle, a launching thread saturated.
            if util >= th.busy_util_pct_no_gpm or (g.util_mem_mean or 0) >= 10 or main < th.loader_busy_pct:
                continue
            base = 0.5 if trickle else 0.55
        if any(s.data_loading_share is not None and s.data_loading_share >= th.stack_loading_share for s in stacks):
            continue  # the thread is busy loading data, not launching kernels: data_starved's case
        if stacks and all(s.ok and sum(s.categories.get(c, 0.0) for c in ELSEWHERE) >= 0.5 for s in stacks):
            continue  # the busy thread serialises a checkpoint, starts up or waits: not kernel launches
        out.append(Finding(
            "launch_bound", "warning", confidence(base, g, notes),
            f"launch-bound: GPU busy {pct(util)} of the time but SMs only {pct(g.sm_mean)} active; "
            f"the launching thread uses {main:.0f}% of a core",
            gpus=[g.index], pids=g.pids,
            evidence={"util_pct": util, "sm_active_pct": g.sm_mean,
                      "sm_per_util": round((g.sm_mean or 0) / max(util, 1e-6), 3) if g.gpm else None,
                      "launch_thread_cpu_pct": main},
            advice=[Advice("Launch fewer, larger kernels: batch more work per step, fuse ops (torch.compile), or "
                           "capture the step in a CUDA graph (torch.compile(mode='reduce-overhead')).")]
            + ([Advice("Give the launching thread a fast, uncontended core near the GPU.", tuner="pinning",
                       params={"pids": g.pids})] if pinning_helps(ctx, g.pids, [g.index]) else [])
            + [Advice("Run CPUs at full clock while launching.", tuner="power", params={"governor": "performance"})],
            notes=notes))
    return out
