"""transfer_bound: host<->device PCIe traffic dominates while the SMs sit idle (often pageable copies)."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext, confidence, pct, scale

# Rank among primary verdicts: a GPU's verdict is its lowest-ranked finding.
PRIMARY_RANK: int | None = 60
STRIP_LETTER: str | None = "T"  # what `nodetune history JOB`'s strip draws for this verdict

# Pinned copies reach ~75-90 % of a link; pageable ones stall on a CPU bounce buffer well below it.
PAGEABLE_SHARE = 0.35


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        if g.lost:
            continue
        rx, tx = g.pcie_rx_mibps or 0.0, g.pcie_tx_mibps or 0.0
        traffic = max(rx, tx)
        link_mibps = g.pcie_link_gbps * 1e9 / 2**20 if g.pcie_link_gbps else None
        share = traffic / link_mibps if link_mibps else None
        sm = g.sm_mean if g.gpm else None
        # Pageable copies run far below a wide link's rate (5 GiB/s of a Gen5 x16's 63 GB/s): with the
        # SMs idle, the absolute rate says the GPU waits on copies even where the link share is small.
        idle_sms = sm is not None and sm < th.launch_sm_max_pct / 2
        if traffic < th.transfer_min_mibps or (share is not None and share < th.transfer_link_share
                                               and not idle_sms):
            continue
        if sm is not None and sm >= th.transfer_sm_max_pct:
            continue  # copies overlap real work
        if sm is None and (g.util_mean or 0) >= th.busy_util_pct_no_gpm:
            continue
        notes: list[str] = []
        direction = "host-to-device" if rx >= tx else "device-to-host"
        ev = {"pcie_rx_mibps": round(rx), "pcie_tx_mibps": round(tx), "link_share": round(share, 3) if share else None,
              "link_gbps": g.pcie_link_gbps, "sm_active_pct": sm, "util_pct": g.util_mean, "source": g.pcie_source}
        advice = []
        if share is not None and share < PAGEABLE_SHARE:
            notes.append(f"{share:.0%} of the link: far below what pinned copies reach, the signature of "
                         "pageable (non-pinned) host memory")
            advice.append(Advice("Copy from pinned memory: DataLoader(pin_memory=True) or tensor.pin_memory(), "
                                 "and .to(device, non_blocking=True) so copies overlap compute."))
        advice.append(Advice("Overlap transfers with compute (CUDA streams / prefetch the next batch) and keep "
                             "data resident on the GPU between steps where it fits."))
        if g.pcie_source == "nvml":
            notes.append("PCIe rate from NVML's 20 ms throughput window, not GPM counters")
        base = scale(share or 0.1, th.transfer_link_share, 0.5)
        out.append(Finding("transfer_bound", "warning", confidence(base, g, notes),
                           f"transfer-bound: {direction} PCIe {traffic / 1024:.1f} GiB/s"
                           + (f" ({share:.0%} of a {g.pcie_link_gbps:.0f} GB/s link)" if share else "")
                           + f", SMs {pct(sm)} active",
                           gpus=[g.index], pids=g.pids, evidence=ev, advice=advice, notes=notes))
    return out
