"""throttled: clocks held back under load by the power cap, thermal limits or hardware slowdown."""

from __future__ import annotations

from ..findings import Advice, Finding
from .base import RuleContext

# A secondary finding: reported beside the GPU's verdict, never as it.
PRIMARY_RANK: int | None = None
STRIP_LETTER: str | None = "P"  # what `nodetune history JOB`'s strip draws for this verdict

_HW = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")


def evaluate(ctx: RuleContext) -> list[Finding]:
    out: list[Finding] = []
    th = ctx.th
    for g in ctx.stats.gpus:
        if g.lost or g.busy_samples == 0:
            continue
        reasons = {r: s for r, s in g.throttle_share.items() if s >= th.throttle_share}
        if not reasons:
            continue
        gpu = ctx.topo.gpu(g.index)
        default = gpu.static.power_limit_default_w if gpu else None
        hw = [r for r in reasons if r in _HW]
        lowered = bool(default and g.power_limit_w and g.power_limit_w < default * 0.98)
        # Power-capped at the default limit is how a Hopper GPU runs dense tensor work (seen on the
        # H200: 692 of 700 W, SM clock 1478 of 1980 MHz): worth knowing, nothing for the node to fix.
        severity = "critical" if hw else "warning" if (lowered or set(reasons) != {"sw_power_cap"}) else "info"
        advice = []
        if "sw_power_cap" in reasons:
            if lowered and default and g.power_limit_w:
                advice.append(Advice(f"The power limit is {g.power_limit_w:.0f} W, below the default {default:.0f} W: "
                                     "restore it (needs the profile to ask and the config to allow GPU power changes).",
                                     tuner="power", params={"gpu": g.index, "gpu_power_limit_w": default}))
            else:
                advice.append(Advice("Power-capped at the default limit: expected under heavy tensor load; "
                                     "check rack power and inlet temperature if clocks drop far."))
        if any("thermal" in r for r in reasons):
            advice.append(Advice(f"Thermal slowdown (max {g.temp_max_c or 0:.0f} C, slowdown at "
                                 f"{g.temp_slowdown_c or '?'} C): check airflow, fans and inlet temperature."))
        if "hw_slowdown" in reasons or "hw_power_brake_slowdown" in reasons:
            advice.append(Advice("Hardware slowdown (power brake or external signal): check the PSU and BMC "
                                 "event log."))
        out.append(Finding(
            "throttled", severity, 0.9,
            "throttled: " + ", ".join(f"{r} {s:.0%}" for r, s in sorted(reasons.items(), key=lambda kv: -kv[1]))
            + f" of busy samples; SM clock {g.sm_clock_mean_mhz or 0:.0f}/{g.sm_clock_max_mhz or '?'} MHz",
            gpus=[g.index], pids=g.pids,
            evidence={"reasons": reasons, "sm_clock_mean_mhz": g.sm_clock_mean_mhz,
                      "sm_clock_max_mhz": g.sm_clock_max_mhz,
                      "power_mean_w": g.power_mean_w, "power_limit_w": g.power_limit_w, "temp_max_c": g.temp_max_c,
                      "busy_samples": g.busy_samples},
            advice=advice))
    return out
