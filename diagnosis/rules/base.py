"""What every rule sees, and small helpers the rules share."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetune.config.diagnosis import Thresholds
from nodetune.probes.node import Topology
from nodetune.probes.snapshot import Window

from ..findings import IdleAttribution, StackEvidence
from ..jobs import JobGroup
from ..phases import PhasePlan
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
    attribution: dict[int, IdleAttribution] = field(default_factory=dict)  # gpu -> its idle time by cause
    phases: PhasePlan = field(default_factory=PhasePlan)

    def gpu_stacks(self, gpu: int) -> list[StackEvidence]:
        return [self.stacks[p] for j in self.jobs_on(gpu) for p in j.pids if p in self.stacks]

    def gpu(self, index: int) -> GpuStats | None:
        return next((g for g in self.stats.gpus if g.index == index), None)

    def __post_init__(self) -> None:
        # every rule asks for processes by pid, once per job per GPU: one lookup table
        self._procs = {p.pid: p for p in self.stats.processes}

    def proc(self, pid: int) -> ProcessStats | None:
        return self._procs.get(pid)

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


def pinning_helps(ctx: RuleContext, pids: list[int], gpus: list[int]) -> bool:
    """Pinning changes something only on a node with several NUMA nodes where the job's threads last
    ran on CPUs outside its GPUs' local CPUs."""
    if len(ctx.topo.cpu.numa_nodes) < 2:
        return False
    local = {c for i in gpus if (g := ctx.topo.gpu(i)) is not None and g.numa_node is not None for c in g.local_cpus}
    if not local:
        return False
    last = {p.pid: p for s in ctx.window.samples for p in s.processes if p.alive}
    return any(t.processor is not None and t.processor not in local
               for pid in pids if (p := last.get(pid)) for t in p.threads)


def free_cpus(ctx: RuleContext, gpu: int) -> float | None:
    """CPUs near `gpu` left idle over the window (from per-CPU busy time); None without per-CPU data."""
    g = ctx.topo.gpu(gpu)
    cpus = g.local_cpus if g and g.local_cpus else ctx.topo.cpu.online
    busy = ctx.stats.host.cpu_busy_by_cpu
    if not busy or not cpus:
        return None
    return round(sum(max(0.0, 100 - busy.get(c, 100)) / 100 for c in cpus), 1)


def cause_share(f: object) -> float:
    """The share of the window an idle-cause finding explains (for choosing between them)."""
    ev = getattr(f, "evidence", {})
    v = ev.get("cause_share") if isinstance(ev, dict) else None
    return float(v) if isinstance(v, (int, float)) else 0.0
