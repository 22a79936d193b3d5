"""What every rule sees, and small helpers the rules share."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetune.config.diagnosis import Thresholds
from nodetune.probes.node import Topology
from nodetune.probes.snapshot import Window

from ..findings import StackEvidence
from ..jobs import JobGroup
from ..window_stats import GpuStats, ProcessStats, WindowStats

NO_GPM_NOTE = ("no GPM counters (pre-Hopper GPU or unsupported): judged from NVML utilization, memory "
               "utilization and PCIe throughput, which cannot tell SM or tensor activity apart")


@dataclass
class RuleContext:
    topo: Topology
    window: Window
    stats: WindowStats
    th: Thresholds
    jobs: list[JobGroup]
    stacks: dict[int, StackEvidence] = field(default_factory=dict)

    def gpu(self, index: int) -> GpuStats | None:
        return next((g for g in self.stats.gpus if g.index == index), None)

    def proc(self, pid: int) -> ProcessStats | None:
        return next((p for p in self.stats.processes if p.pid == pid), None)

    def jobs_on(self, gpu: int) -> list[JobGroup]:
        return [j for j in self.jobs if gpu in j.gpus]

    def job_procs(self, job: JobGroup) -> list[ProcessStats]:
        return [p for pid in job.all_pids if (p := self.proc(pid)) is not None]


def sm_busy(g: GpuStats, th: Thresholds) -> bool:
    """Are the SMs busy (GPM) or, without GPM, is the GPU busy most of the time?

    A GPU idle for a large share of the window is not busy, however hard it works in between:
    that is starvation, not a compute or memory bound.
    """
    if (g.idle_share or 0) >= th.starved_idle_share:
        return False
    if g.gpm and g.sm_mean is not None:
        return g.sm_mean >= th.busy_sm_pct
    return (g.util_mean or 0) >= th.busy_util_pct_no_gpm


def confidence(base: float, g: GpuStats | None, notes: list[str]) -> float:
    """Lower the confidence of a GPU verdict made without GPM, and say why."""
    if g is not None and not g.gpm:
        notes.append(NO_GPM_NOTE)
        return round(min(base, 0.9) * 0.7, 2)
    return round(min(base, 0.99), 2)


def scale(value: float, threshold: float, full: float) -> float:
    """0.6 at the threshold rising to 0.95 at `full`: confidence grows with the margin."""
    if full <= threshold:
        return 0.8
    x = (value - threshold) / (full - threshold)
    return 0.6 + 0.35 * max(0.0, min(1.0, x))


def pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}%"


def active(procs: list[ProcessStats], th: Thresholds) -> bool:
    """Is a job doing anything on the host (CPU work or waiting on I/O)?"""
    return any((p.cpu_pct or 0) >= th.active_cpu_pct or p.d_threads_mean >= 0.5 or (p.blkio_pct or 0) >= th.io_blkio_pct
               for p in procs)
