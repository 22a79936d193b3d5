"""communication_bound: NVLink (or NIC) traffic high and tensor pipes low; or the NCCL-wait signature
of high utilization at low power (kernels spinning on peers)."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext, confidence, pct

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 40


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        if g.lost:
            continue
        nvlink = (g.nvlink_rx_mibps or 0.0) + (g.nvlink_tx_mibps or 0.0)
        tensor = g.tensor_mean or 0.0
        if g.gpm and (g.sm_mean or 0) >= th.busy_sm_pct and tensor >= th.comm_tensor_max_pct:
            continue  # communication overlapped with real compute
        power_share = (g.power_mean_w / g.power_limit_w) if g.power_mean_w and g.power_limit_w else None
        traffic = nvlink >= th.comm_nvlink_min_mibps and tensor < th.comm_tensor_max_pct
        spin = ((g.util_mean or 0) >= th.comm_util_min_pct and power_share is not None
                and power_share <= th.comm_power_max_share and tensor < th.comm_tensor_max_pct
                and (g.sm_mean is None or g.sm_mean < th.busy_sm_pct)
                and len(ctx.stats.gpus) > 1)
        if not (traffic or spin):
            continue
        notes: list[str] = []
        why = []
        if traffic:
            why.append(f"NVLink {nvlink / 1024:.1f} GiB/s")
        if spin:
            why.append(f"busy {pct(g.util_mean)} at {power_share:.0%} of the power limit (NCCL waiting on peers)")
        base = 0.85 if traffic and spin else 0.75 if traffic else 0.6
        out.append(Finding(
            "communication_bound", "warning", confidence(base, g, notes),
            "communication-bound: " + "; ".join(why) + f", tensor pipes {pct(tensor)}",
            gpus=[g.index], pids=g.pids,
            evidence={"nvlink_rx_mibps": g.nvlink_rx_mibps, "nvlink_tx_mibps": g.nvlink_tx_mibps,
                      "tensor_active_pct": g.tensor_mean, "sm_active_pct": g.sm_mean, "util_pct": g.util_mean,
                      "power_share": round(power_share, 3) if power_share else None},
            advice=[Advice("Overlap communication with compute (DDP gradient bucketing, FSDP prefetch), grow the "
                           "per-GPU batch so compute per all-reduce rises, and check NCCL uses NVLink "
                           "(NCCL_DEBUG=INFO shows the transport)."),
                    Advice("Keep NIC and GPU on one PCIe switch/NUMA node for cross-node traffic (see `nodetune topo`).")],
            notes=notes))
    return out
