"""cpu_contention: runnable tasks wait for a CPU (PSI cpu), or the hypervisor steals time."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext

# A secondary finding: reported beside the GPU's verdict, never as it.
PRIMARY_RANK: int | None = None
STRIP_LETTER: str | None = None  # a finding beside the verdict: nothing in the history strip


def evaluate(ctx: RuleContext) -> list[Finding]:
    th, h = ctx.th, ctx.stats.host
    some = h.psi_pct.get("cpu.some")
    steal = h.steal_pct
    signals = []
    if some is not None and some >= th.cpu_psi_pct:
        signals.append(f"PSI cpu some {some:.0f}% (tasks waiting for a CPU)")
    if steal is not None and steal >= th.steal_pct:
        signals.append(f"steal {steal:.1f}% (the hypervisor runs others on these CPUs)")
    if not signals:
        return []
    pids = [p for j in ctx.jobs for p in j.pids]
    return [Finding(
        "cpu_contention", "warning", 0.8, "CPU contention: " + "; ".join(signals), pids=pids,
        evidence={"psi_cpu_some_pct": some, "steal_pct": steal, "cpu_busy_pct": h.cpu_busy_pct},
        advice=[Advice("Keep other work off the GPU jobs' CPUs: pin the jobs to their GPU-local CPUs.",
                       tuner="pinning", params={"pids": pids}),
                Advice("On a VM with steal, ask for dedicated (pinned) vCPUs.")])]
