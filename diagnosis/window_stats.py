"""Rates and summaries of a window, from counter deltas (not the kernel's moving averages).

PSI `avg10` lags a change by tens of seconds; the `total` counters differenced over the window
give the stall share of exactly the window. The same holds for /proc/stat, /proc/diskstats and
per-process times.
"""

from __future__ import annotations

import dataclasses
import operator
import statistics
from collections import Counter
from dataclasses import dataclass, field

from nodetune.probes.gpu import GpuSample
from nodetune.probes.node import Topology
from nodetune.probes.pci import link_bandwidth_gbps
from nodetune.probes.processes import ProcessInfo, ProcessSample, ThreadSample
from nodetune.probes.snapshot import Window

from .host_stats import HostStats, host_stats

# Clock-event reasons that mean the GPU is held back (idle and app-clock settings do not).
THROTTLE_REASONS = ("sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
                    "hw_power_brake_slowdown")


def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 3) if xs else None


def _max(xs: list[float]) -> float | None:
    return max(xs) if xs else None


@dataclass
class GpuStats:
    index: int
    name: str | None
    samples: int
    lost: bool = False
    lost_reason: str | None = None
    util_mean: float | None = None
    idle_share: float | None = None  # share of samples with utilization below the idle threshold
    util_mem_mean: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    gpm: bool = False
    sm_mean: float | None = None
    occupancy_mean: float | None = None
    tensor_mean: float | None = None
    dram_mean: float | None = None
    fp64_mean: float | None = None
    fp32_mean: float | None = None
    fp16_mean: float | None = None
    pcie_rx_mibps: float | None = None
    pcie_tx_mibps: float | None = None
    pcie_source: str | None = None  # gpm | nvml
    nvlink_rx_mibps: float | None = None
    nvlink_tx_mibps: float | None = None
    power_mean_w: float | None = None
    power_limit_w: float | None = None
    temp_max_c: float | None = None
    temp_slowdown_c: int | None = None
    sm_clock_mean_mhz: float | None = None
    sm_clock_max_mhz: int | None = None
    throttle_share: dict[str, float] = field(default_factory=dict)  # reason -> share of busy samples
    busy_samples: int = 0
    pcie_gen_loaded: int | None = None  # lowest current gen seen under load
    pcie_width_loaded: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_max: int | None = None
    pcie_link_gbps: float | None = None  # one direction, at the max gen/width
    idle_run_s: float = 0.0  # longest stretch with no activity and memory held
    pids: list[int] = field(default_factory=list)
    process_memory_bytes: int | None = None
    missing: dict[str, str] = field(default_factory=dict)
    # Per-sample series (samples in state ok): seconds from the window's first sample, utilization,
    # GPM SM activity (None without GPM or in the priming sample).
    times: list[float] = field(default_factory=list)
    utils: list[float | None] = field(default_factory=list)
    sms: list[float | None] = field(default_factory=list)
    idle_time_share: float | None = None  # mean of (1 - utilization): the time no kernel ran
    nics: list[str] = field(default_factory=list)  # NIC ports nearest this GPU (PIX/PXB/PHB), nearest first


@dataclass(slots=True)
class ThreadStats:
    tid: int
    name: str
    cpu_pct: float
    d_share: float  # share of samples in D state
    r_share: float


@dataclass(slots=True)
class ProcessStats:
    pid: int
    role: str
    gpus: list[int]
    alive_samples: int
    exited: bool
    cpu_pct: float | None = None  # of one core
    blkio_pct: float | None = None  # share of wall time the process waited on block I/O
    read_mbps: float | None = None
    threads: list[ThreadStats] = field(default_factory=list)
    d_threads_mean: float = 0.0
    busiest_thread_pct: float | None = None
    main_thread_pct: float | None = None


@dataclass
class WindowStats:
    seconds: float
    samples: int
    host: HostStats
    gpus: list[GpuStats]
    processes: list[ProcessStats]


def gpu_stats(win: Window, topo: Topology, idle_util_pct: float = 5.0) -> list[GpuStats]:
    out = []
    by_gpu: dict[int, list[GpuSample]] = {}
    for s in win.samples:
        for g in s.gpus:
            by_gpu.setdefault(g.index, []).append(g)
    for gpu in topo.gpus:
        seq = by_gpu.get(gpu.index, [])
        st = GpuStats(index=gpu.index, name=gpu.static.name, samples=len(seq))
        st.temp_slowdown_c = gpu.static.temp_slowdown_c
        st.sm_clock_max_mhz = gpu.static.sm_clock_max_mhz
        st.pcie_gen_max = gpu.static.pcie_max_gen
        st.pcie_width_max = gpu.static.pcie_max_width
        st.pcie_link_gbps = link_bandwidth_gbps(st.pcie_gen_max, st.pcie_width_max)
        lost = [g for g in seq if g.state == "lost"]
        if lost:
            st.lost, st.lost_reason = True, lost[0].missing.get("*")
        ok = [g for g in seq if g.state == "ok"]
        # The first sample primes GPM and rate counters; utilisation is instantaneous and counts.
        util = [g.util_gpu_pct for g in ok if g.util_gpu_pct is not None]
        st.util_mean = _mean(util)
        st.idle_share = round(sum(1 for u in util if u < idle_util_pct) / len(util), 3) if util else None
        st.util_mem_mean = _mean([g.util_mem_pct for g in ok if g.util_mem_pct is not None])
        if ok:
            last = ok[-1]
            st.memory_used_bytes, st.memory_total_bytes = last.memory_used_bytes, last.memory_total_bytes
        gpm = [g.gpm for g in ok if g.gpm is not None]
        st.gpm = bool(gpm)
        if gpm:
            for attr, field_ in (("sm_mean", "sm_util_pct"), ("occupancy_mean", "sm_occupancy_pct"),
                                 ("tensor_mean", "tensor_pct"), ("dram_mean", "dram_bw_pct"),
                                 ("fp64_mean", "fp64_pct"), ("fp32_mean", "fp32_pct"), ("fp16_mean", "fp16_pct"),
                                 ("pcie_rx_mibps", "pcie_rx_mibps"), ("pcie_tx_mibps", "pcie_tx_mibps"),
                                 ("nvlink_rx_mibps", "nvlink_rx_mibps"), ("nvlink_tx_mibps", "nvlink_tx_mibps")):
                setattr(st, attr, _mean([v for m in gpm if (v := getattr(m, field_)) is not None]))
            st.pcie_source = "gpm"
        else:
            reason = next((g.missing.get("gpm") for g in ok if g.missing.get("gpm")), None)
            st.missing["gpm"] = reason or "no GPM samples"
            rx = [g.pcie_rx_kibps / 1024 for g in ok if g.pcie_rx_kibps is not None]
            tx = [g.pcie_tx_kibps / 1024 for g in ok if g.pcie_tx_kibps is not None]
            st.pcie_rx_mibps, st.pcie_tx_mibps = _mean(rx), _mean(tx)
            st.pcie_source = "nvml" if rx else None
        st.power_mean_w = _mean([g.power_w for g in ok if g.power_w is not None])
        st.power_limit_w = next((g.power_limit_w for g in reversed(ok) if g.power_limit_w), None)
        st.temp_max_c = _max([g.temp_gpu_c for g in ok if g.temp_gpu_c is not None])
        st.sm_clock_mean_mhz = _mean([float(g.sm_clock_mhz) for g in ok if g.sm_clock_mhz is not None])
        busy = [g for g in ok if (g.util_gpu_pct or 0) >= 30]
        st.busy_samples = len(busy)
        if busy:
            counts: Counter[str] = Counter(r for g in busy for r in g.clock_events if r in THROTTLE_REASONS)
            st.throttle_share = {r: round(c / len(busy), 3) for r, c in counts.items()}
            gens = [g.pcie_gen for g in busy if g.pcie_gen is not None]
            widths = [g.pcie_width for g in busy if g.pcie_width is not None]
            st.pcie_gen_loaded = min(gens) if gens else None
            st.pcie_width_loaded = min(widths) if widths else None
        st.pids = sorted({p.pid for g in ok for p in g.processes})
        if ok and ok[-1].processes:
            mem = [p.used_memory_bytes for p in ok[-1].processes if p.used_memory_bytes is not None]
            st.process_memory_bytes = sum(mem) if mem else None
        st.idle_run_s = _idle_run(ok, win.interval_s)
        t0 = win.samples[0].t if win.samples else 0.0
        st.times = [round(g.t - t0, 3) for g in ok]
        st.utils = [g.util_gpu_pct for g in ok]
        st.sms = [g.gpm.sm_util_pct if g.gpm else None for g in ok]
        st.idle_time_share = _mean([max(0.0, 1 - u / 100) for u in util])
        st.nics = _near_nics(topo, gpu.index)
        out.append(st)
    return out


# Levels at which a NIC counts as this GPU's: on its PCIe switch or host bridge (NCCL's GPUDirect
# RDMA reach); a NIC across the CPU interconnect serves this GPU only through host memory.
_NEAR_LEVELS = ("PIX", "PXB", "PHB")


def _near_nics(topo: Topology, index: int) -> list[str]:
    gpu = topo.gpu(index)
    out: list[str] = []
    for n in gpu.nearby if gpu else []:
        if n.kind in ("nic", "infiniband") and n.level in _NEAR_LEVELS:
            out.extend(n.names)
    return out


def _idle_run(seq: list[GpuSample], interval_s: float) -> float:
    """Longest stretch (seconds) of samples with no GPU activity while processes hold memory.

    Each sample stands for the interval before it, so a run of k idle samples covers k intervals.
    """
    best, start = 0.0, None
    for g in seq:
        idle = (g.util_gpu_pct or 0) < 2 and bool(g.processes) and (g.gpm is None or (g.gpm.sm_util_pct or 0) < 1)
        if idle:
            start = g.t - interval_s if start is None else start
            best = max(best, g.t - start)
        else:
            start = None
    return round(best, 2)


def _process(info: ProcessInfo, seq: list[tuple[float, ProcessSample]], clk_tck: int) -> ProcessStats:
    """One process's statistics from its samples in time order. A 10k-worker window runs this 10k
    times: comprehensions and C calls, few Python calls per process (each costs about a microsecond)."""
    alive = [tp for tp in seq if tp[1].alive]
    exited = bool(seq) and not seq[-1][1].alive
    if len(alive) < 2:
        return ProcessStats(info.pid, info.role, info.gpus, len(alive), exited)
    (ta, a), (tb, b) = alive[0], alive[-1]
    dt = max(tb - ta, 1e-6)
    cpu_pct = blkio_pct = read_mbps = None
    if a.utime is not None and b.utime is not None and a.stime is not None and b.stime is not None:
        cpu_pct = round(100.0 * ((b.utime + b.stime) - (a.utime + a.stime)) / clk_tck / dt, 1)
    if a.blkio_ticks is not None and b.blkio_ticks is not None:
        blkio_pct = round(100.0 * (b.blkio_ticks - a.blkio_ticks) / clk_tck / dt, 1)
    if a.read_bytes is not None and b.read_bytes is not None:
        read_mbps = round((b.read_bytes - a.read_bytes) / dt / 1e6, 2)
    threads = [t for _, p in alive for t in p.threads]
    d_tids = [t.tid for t in threads if t.state == "D"]
    r_tids = [t.tid for t in threads if t.state == "R"]
    # Per thread of the last sample that the first had too: CPU over the window, and its share of
    # the samples (that show it) in D and in R. Counted by C callables: list.count (no hashing)
    # while the last sample's threads are few, a Counter (0 for a tid it never saw) past that.
    tids = [t.tid for t in threads]
    if len(b.threads) * len(tids) <= 4096:
        seen, in_d, in_r = tids.count, d_tids.count, r_tids.count
    else:
        seen, in_d, in_r = Counter(tids).__getitem__, Counter(d_tids).__getitem__, Counter(r_tids).__getitem__
    stats, main = [], None
    for t, f, span in _thread_ends(alive, a, b, dt):
        n = max(seen(t.tid), 1)
        ts = ThreadStats(t.tid, t.name, round(100.0 * (t.utime + t.stime - f.utime - f.stime) / clk_tck / span, 1),
                         round(in_d(t.tid) / n, 3) if d_tids else 0.0, round(in_r(t.tid) / n, 3) if r_tids else 0.0)
        stats.append(ts)
        if t.tid == info.pid and (main is None or ts.cpu_pct > main.cpu_pct):
            main = ts  # the first of the busiest order below, as a search of the sorted list finds it
    stats.sort(key=_CPU_PCT, reverse=True)  # stable like a key of -cpu_pct: ties keep their order
    return ProcessStats(info.pid, info.role, info.gpus, len(alive), exited, cpu_pct, blkio_pct, read_mbps, stats,
                        round(len(d_tids) / len(alive), 2),  # threads in D summed over the samples
                        stats[0].cpu_pct if stats else None, main.cpu_pct if main else None)


_CPU_PCT = operator.attrgetter("cpu_pct")


def _thread_ends(alive: list[tuple[float, ProcessSample]], a: ProcessSample, b: ProcessSample,
                 dt: float) -> list[tuple[ThreadSample, ThreadSample, float]]:
    """(last reading, first reading, seconds between) of each thread in the first and the last
    samples that list every thread. Where some samples list only the busy threads (the agent's
    sampler), a thread's CPU is rated between its own first and last readings."""
    if not any(p.threads_partial for _, p in alive):
        first = {t.tid: t for t in a.threads}
        return [(t, f, dt) for t in b.threads if (f := first.get(t.tid)) is not None]
    full = [p for _, p in alive if not p.threads_partial] or [a, b]
    in_first = {t.tid for t in full[0].threads}
    firsts: dict[int, tuple[float, ThreadSample]] = {}
    lasts: dict[int, tuple[float, ThreadSample]] = {}
    for t_, p in alive:
        for th in p.threads:
            if th.tid not in firsts:
                firsts[th.tid] = (t_, th)
            lasts[th.tid] = (t_, th)
    out = []
    for th in full[-1].threads:
        if th.tid in in_first:
            (t0, f), (t1, last) = firsts[th.tid], lasts[th.tid]
            if t1 > t0:
                out.append((last, f, t1 - t0))
    return out


def process_stats(win: Window, clk_tck: int) -> list[ProcessStats]:
    # One pass over the samples (not one per process): each process's samples in time order.
    by_pid: dict[int, list[tuple[float, ProcessSample]]] = {}
    for s in win.samples:
        t = s.t
        for p in s.processes:
            seq = by_pid.get(p.pid)
            if seq is None:
                by_pid[p.pid] = [(t, p)]
            else:
                seq.append((t, p))
    return [_process(info, by_pid.get(info.pid, []), clk_tck) for info in win.processes]


def window_stats(win: Window, topo: Topology, idle_util_pct: float = 5.0,
                 gpus: list[GpuStats] | None = None) -> WindowStats:
    """Everything the rules need, computed once (`gpus`: the GPU part, where already computed)."""
    return WindowStats(
        seconds=round(win.samples[-1].t - win.samples[0].t, 3) if len(win.samples) >= 2 else 0.0,
        samples=len(win.samples),
        host=host_stats(win),
        gpus=gpus if gpus is not None else gpu_stats(win, topo, idle_util_pct),
        processes=process_stats(win, topo.node.clk_tck or 100),
    )


def with_idle_threshold(stats: WindowStats, idle_util_pct: float) -> WindowStats:
    """The same statistics with the idle share counted at another threshold: the only part of them
    a threshold decides, so the borderline check need not recompute the rest."""
    gpus = []
    for g in stats.gpus:
        util = [u for u in g.utils if u is not None]
        share = round(sum(1 for u in util if u < idle_util_pct) / len(util), 3) if util else None
        gpus.append(dataclasses.replace(g, idle_share=share))
    return dataclasses.replace(stats, gpus=gpus)
