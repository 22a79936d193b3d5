"""host_memory_pressure: tasks stall on memory reclaim (PSI memory) or the node swaps."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext

# A secondary finding: reported beside the GPU's verdict, never as it.
PRIMARY_RANK: int | None = None
STRIP_LETTER: str | None = None  # a finding beside the verdict: nothing in the history strip


def evaluate(ctx: RuleContext) -> list[Finding]:
    th, h = ctx.th, ctx.stats.host
    some = h.psi_pct.get("memory.some")
    full = h.psi_pct.get("memory.full")
    swap = (h.swap_in_pps or 0) + (h.swap_out_pps or 0)
    signals = []
    if some is not None and some >= th.memory_psi_pct:
        signals.append(f"PSI memory some {some:.0f}% (full {full or 0:.0f}%)")
    if swap >= th.swap_pages_per_s:
        signals.append(f"swapping {swap:.0f} pages/s")
    if not signals:
        return []
    return [Finding(
        "host_memory_pressure", "critical" if (full or 0) >= 5 or swap >= 10 * th.swap_pages_per_s else "warning", 0.85,
        "host memory pressure: " + "; ".join(signals),
        evidence={"psi_memory_some_pct": some, "psi_memory_full_pct": full, "swap_in_pps": h.swap_in_pps,
                  "swap_out_pps": h.swap_out_pps, "mem_available_pct": h.mem_available_pct},
        advice=[Advice("Reduce host memory use (fewer/lighter DataLoader workers, smaller prefetch, shared-memory "
                       "datasets) or add memory; swapping makes every input step slow."),
                Advice("Keep huge pages for the job only if it uses them; reserved hugetlb pages are unavailable "
                       "to everything else.", tuner="hugepages", params={"review": True})])]
