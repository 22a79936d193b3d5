"""pcie_degraded: a GPU's PCIe link trained below its maximum generation or width, judged under load
(GPUs drop the link generation when idle to save power)."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext

# A secondary finding: reported beside the GPU's verdict, never as it.
PRIMARY_RANK: int | None = None
STRIP_LETTER: str | None = None  # a finding beside the verdict: nothing in the history strip


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    for g in ctx.stats.gpus:
        if g.lost or g.busy_samples == 0:
            continue
        gen, width = g.pcie_gen_loaded, g.pcie_width_loaded
        if gen is None or width is None or g.pcie_gen_max is None or g.pcie_width_max is None:
            continue
        if gen >= g.pcie_gen_max and width >= g.pcie_width_max:
            continue
        gpu = ctx.topo.gpu(g.index)
        dev = next((d for d in ctx.topo.pci if gpu and d.address == gpu.address), None)
        slot = dev.upstream_link if dev else None
        slot_txt = ""
        if slot and slot.max_gen and slot.max_width:
            slot_txt = f"; the slot above it can do Gen{slot.max_gen} x{slot.max_width}"
        out.append(Finding(
            "pcie_degraded", "critical" if width < g.pcie_width_max else "warning", 0.9,
            f"PCIe degraded under load: Gen{gen} x{width}, the GPU can do "
            f"Gen{g.pcie_gen_max} x{g.pcie_width_max}{slot_txt}",
            gpus=[g.index], pids=g.pids,
            evidence={"gen": gen, "width": width, "max_gen": g.pcie_gen_max, "max_width": g.pcie_width_max,
                      "busy_samples": g.busy_samples,
                      "slot_max_gen": slot.max_gen if slot else None,
                      "slot_max_width": slot.max_width if slot else None},
            advice=[Advice("Reseat the GPU or its riser/retimer, check the BIOS slot speed setting and `lspci -vv` "
                           "LnkSta; a degraded link caps host<->device copies.")]))
    return out
