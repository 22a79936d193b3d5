"""communication_bound: NVLink (or NIC) traffic high and tensor pipes low; or the NCCL-wait signature
of high utilization at low power (kernels spinning on peers)."""

from __future__ import annotations

from ..findings import Advice, Finding
from ..host_stats import NicStats
from .base import RuleContext, confidence, pct

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 40
STRIP_LETTER: str | None = "N"  # what `nodetune history JOB`'s strip draws for this verdict


def _busy_nic(ctx: RuleContext, sm_busy: bool, tensor: float, names: list[str]) -> NicStats | None:
    """The NIC near the GPU that runs near its link rate while the GPU does little else: cross-node
    traffic the job waits on. InfiniBand port counters (RDMA included) win over a netdev of the
    same device, whose counters miss RDMA."""
    th = ctx.th
    if sm_busy and tensor >= th.comm_tensor_max_pct:
        return None
    near = [n for n in ctx.stats.host.nics if n.device.split("/")[0] in names]
    ib = [n for n in near if n.kind == "infiniband"]
    cands = ib or near
    busy = [n for n in cands if n.rx_mibps + n.tx_mibps >= th.comm_nic_min_mibps
            and (n.link_share is None or n.link_share >= th.comm_nic_link_share)]
    return max(busy, key=lambda n: n.rx_mibps + n.tx_mibps, default=None)


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
        nic = _busy_nic(ctx, g.gpm and (g.sm_mean or 0) >= th.busy_sm_pct, tensor, g.nics)
        # The spin signature needs peers to wait for: other GPUs here, or a NIC carrying traffic
        # to other nodes.
        spin = ((g.util_mean or 0) >= th.comm_util_min_pct and power_share is not None
                and power_share <= th.comm_power_max_share and tensor < th.comm_tensor_max_pct
                and (g.sm_mean is None or g.sm_mean < th.busy_sm_pct)
                and (len(ctx.stats.gpus) > 1 or nic is not None))
        if not (traffic or spin or nic is not None):
            continue
        notes: list[str] = []
        why = []
        if traffic:
            why.append(f"NVLink {nvlink / 1024:.1f} GiB/s")
        if nic is not None:
            why.append(f"{nic.device} {(nic.rx_mibps + nic.tx_mibps) / 1024:.1f} GiB/s"
                       + (f", {nic.link_share:.0%} of its {nic.rate_gbps:.0f} Gb/s link" if nic.link_share is not None
                          and nic.rate_gbps else ""))
            if nic.xmit_wait_share:
                notes.append(f"{nic.device} waited for credits {nic.xmit_wait_share:.0%} of the window (congestion)")
        if spin:
            why.append(f"busy {pct(g.util_mean)} at {power_share:.0%} of the power limit (NCCL waiting on peers)")
        base = 0.85 if (traffic or nic is not None) and spin else 0.75 if traffic or nic is not None else 0.6
        out.append(Finding(
            "communication_bound", "warning", confidence(base, g, notes),
            "communication-bound: " + "; ".join(why) + f", tensor pipes {pct(tensor)}",
            gpus=[g.index], pids=g.pids,
            evidence={"nvlink_rx_mibps": g.nvlink_rx_mibps, "nvlink_tx_mibps": g.nvlink_tx_mibps,
                      "tensor_active_pct": g.tensor_mean, "sm_active_pct": g.sm_mean, "util_pct": g.util_mean,
                      "power_share": round(power_share, 3) if power_share else None,
                      "nic": nic.device if nic else None,
                      "nic_mibps": round(nic.rx_mibps + nic.tx_mibps, 1) if nic else None,
                      "nic_link_share": nic.link_share if nic else None,
                      "nic_xmit_wait_share": nic.xmit_wait_share if nic else None},
            advice=[Advice("Overlap communication with compute (DDP gradient bucketing, FSDP prefetch), grow the "
                           "per-GPU batch so compute per all-reduce rises, and check NCCL uses NVLink "
                           "(NCCL_DEBUG=INFO shows the transport)."),
                    Advice("Keep NIC and GPU on one PCIe switch/NUMA node for cross-node traffic "
                           "(see `nodetune topo`).")],
            notes=notes))
    return out
