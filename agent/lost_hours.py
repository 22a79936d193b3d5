"""Lost GPU-hours: the one definition the job history, the exporter and `nodetune fleet` share.

A GPU's time in a diagnosis interval is lost when
- the GPU sat idle: every idle second counts, split by what its job's host side was doing (the
  diagnosis's idle attribution: data loading, checkpoint, start-up, ...; what it cannot explain is
  `unexplained`; a GPU no job holds idles for `no_job`), or
- the GPU was busy under a verdict that is not productive work (anything but compute_bound and
  memory_bound: launch_bound, transfer_bound, throttled, ...): the busy seconds count under the
  verdict's name.
A GPU that fell off the bus loses the whole interval (`gpu_lost`). A GPU the node cannot see
(no NVML, no samples) has no verdict (`unknown`) and loses nothing: absence of data is not idleness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from nodetune.diagnosis.findings import GpuVerdict, Report
from nodetune.diagnosis.rules import UNKNOWN

PRODUCTIVE = frozenset({"compute_bound", "memory_bound"})
IDLE, BUSY = "idle", "busy"  # the `state` of a lost second: the GPU idled, or worked unproductively


def has_data(g: GpuVerdict) -> bool:
    """True when the diagnosis saw the GPU's utilization at least once (NVML answered)."""
    return g.verdict == "gpu_lost" or isinstance(g.metrics.get("util_pct"), int | float)


def verdict_of(g: GpuVerdict) -> str:
    """The GPU's verdict as the exporter and history show it: `unknown` where there was no data."""
    return g.verdict if has_data(g) else UNKNOWN


def idle_share(g: GpuVerdict) -> float:
    """Share of the interval the GPU idled (attribution first, else the window statistics)."""
    if g.attribution is not None:
        return min(1.0, max(0.0, g.attribution.idle_share))
    v = g.metrics.get("idle_share")
    return min(1.0, max(0.0, float(v))) if isinstance(v, int | float) else 0.0


def idle_by_cause(g: GpuVerdict, dt: float) -> dict[str, float]:
    """Idle seconds of the GPU over `dt` seconds by cause; they sum to its idle time."""
    if not has_data(g) or g.verdict == "gpu_lost":
        return {}
    idle = idle_share(g) * dt
    if idle <= 0:
        return {}
    if g.verdict == "idle":  # the engine's verdict for a GPU with no process on it
        return {"no_job": idle}
    out: dict[str, float] = {}
    for c in g.attribution.causes if g.attribution is not None else []:
        out[c.cause] = out.get(c.cause, 0.0) + max(0.0, c.share) * dt
    explained = sum(out.values())
    if explained > idle:  # shares of a longer window: keep the split, fit the interval's idle time
        out = {k: v * idle / explained for k, v in out.items()}
    elif idle - explained > 1e-9:
        out["unexplained"] = idle - explained
    return out


def lost_seconds(g: GpuVerdict, dt: float) -> dict[tuple[str, str], float]:
    """(state, cause) -> GPU-seconds lost by one GPU over an interval of `dt` seconds."""
    if g.verdict == "gpu_lost":
        return {(IDLE, "gpu_lost"): dt}
    if not has_data(g):
        return {}
    out = {(IDLE, c): s for c, s in idle_by_cause(g, dt).items()}
    busy = dt * (1.0 - idle_share(g))
    if busy > 0 and g.verdict not in PRODUCTIVE and g.verdict != "idle":
        out[(BUSY, g.verdict)] = busy
    return out


def total(lost: Mapping[tuple[str, str], float]) -> float:
    return sum(lost.values())


def add_into(acc: dict[tuple[str, str], float], more: Mapping[tuple[str, str], float]) -> None:
    for k, v in more.items():
        acc[k] = acc.get(k, 0.0) + v


@dataclass
class GpuBook:
    """Per GPU, seconds by verdict and lost seconds by (state, cause), accumulated over diagnoses
    (the exporter's counters). Bounded: GPU indices x verdict and cause names."""

    verdict_s: dict[tuple[str, str], float] = field(default_factory=dict)  # (gpu, verdict) -> s
    lost_s: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (gpu, state, cause) -> s

    def add(self, report: Report, dt: float) -> None:
        for g in report.gpus:
            gpu = str(g.index)
            key = (gpu, verdict_of(g))
            self.verdict_s[key] = self.verdict_s.get(key, 0.0) + dt
            for (state, cause), s in lost_seconds(g, dt).items():
                k3 = (gpu, state, cause)
                self.lost_s[k3] = self.lost_s.get(k3, 0.0) + s

    def frozen(self) -> tuple[Mapping[tuple[str, str], float], Mapping[tuple[str, str, str], float]]:
        return MappingProxyType(dict(self.verdict_s)), MappingProxyType(dict(self.lost_s))
