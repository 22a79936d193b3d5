"""Build recorded-window scenarios for rule tests: a Topology and a Window with consistent counters.

Rates are given the way a person thinks of them (GPU 30 % busy, a thread at 95 % of a core, PSI io
25 %); the builder turns them into the cumulative counters the probes record, sample by sample,
so the metrics code under test computes them back from deltas exactly as on a live node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetune.probes.cpu import CpuSample, CpuTimes
from nodetune.probes.gpu import BackendStatus, GpmMetrics, GpuProcess, GpuSample, GpuStatic
from nodetune.probes.io import DiskStat, IoSample, Psi, PsiLine
from nodetune.probes.memory import MemorySample
from nodetune.probes.nic import NicPort, NicSample
from nodetune.probes.node import Gpu, GpuLink, Nearby, NodeInfo, Topology
from nodetune.probes.pci import PciDevice, PciLink
from nodetune.probes.processes import Job, ProcessInfo, ProcessSample, ThreadSample
from nodetune.probes.pystacks import FoldedStack, StackSample
from nodetune.probes.snapshot import Sample, Window
from nodetune.probes.storage import Mount
from nodetune.probes.thermal import ThermalSample
from nodetune.probes.topology import CpuTopology, NumaNode

HZ = 100


@dataclass
class GpuLoad:
    util: float = 0.0
    mem_util: float = 0.0
    sm: float | None = 0.0
    tensor: float | None = 0.0
    dram: float | None = 0.0
    fp32: float | None = 0.0
    pcie_rx: float = 0.0  # MiB/s
    pcie_tx: float = 0.0
    nvlink: float = 0.0  # MiB/s each direction
    power: float = 100.0
    limit: float = 700.0
    reasons: list[str] = field(default_factory=list)
    pcie_gen: int = 5
    pcie_width: int = 16
    mem_used_gib: float = 0.5
    pids: list[int] = field(default_factory=list)
    busy_pattern: list[float] | None = None  # per-sample utilization, overrides util
    gpm_follows: bool = False  # GPM activity (sm, tensor, dram, fp32) scaled by each sample's utilization, as on a GPU
    lost_at: int | None = None


@dataclass
class ThreadLoad:
    tid: int
    name: str
    cpu_pct: float
    state: str = "S"  # state in every sample; "D" for blocked on I/O
    processor: int = 0


@dataclass
class ProcLoad:
    pid: int
    gpus: list[int]
    role: str = "gpu"
    parent: int | None = None
    threads: list[ThreadLoad] = field(default_factory=list)
    blkio_pct: float = 0.0
    cgroup: str = "/user.slice/user-1000.slice/session-3.scope"
    cpus_allowed: list[int] = field(default_factory=list)
    numa_pages_kb: dict[str, int] = field(default_factory=dict)
    open_files: list[str] = field(default_factory=list)
    exits_at: int | None = None  # sample index from which the process is gone
    cmd: str = "python train.py"
    age_s: float = 950.0  # how long the process had run at the window's first sample
    write_mibps: float | list[float] = 0.0  # storage writes (/proc/PID/io); a list is per sample
    read_mibps: float | list[float] = 0.0
    cpu_pattern: list[float] | None = None  # main-thread CPU % per sample, overrides threads[0].cpu_pct
    state_pattern: list[str] | None = None  # main-thread state per sample
    pgid: int | None = None


@dataclass
class NicLoad:
    device: str  # mlx5_0 or eth0
    kind: str = "infiniband"
    rate_gbps: float = 400.0
    rx_mibps: float = 0.0
    tx_mibps: float = 0.0
    near_gpus: list[int] = field(default_factory=list)
    xmit_wait_share: float = 0.0


@dataclass
class HostLoad:
    psi_cpu: float = 0.0
    psi_io: float = 0.0
    psi_io_full: float = 0.0
    psi_mem: float = 0.0
    psi_mem_full: float = 0.0
    steal: float = 0.0
    swap_pps: float = 0.0
    disks: dict[str, tuple[float, float]] = field(default_factory=dict)  # device -> (util %, read MB/s)
    cpu_busy: float = 20.0


class WindowBuilder:
    def __init__(self, gpus: int = 1, gpm: bool = True, numa_nodes: int = 1, cpus: int = 16,
                 seconds: float = 10.0, interval: float = 1.0, gpu_numa: list[int | None] | None = None) -> None:
        self.n_gpus, self.gpm, self.seconds, self.interval = gpus, gpm, seconds, interval
        self.cpus = cpus
        per = cpus // numa_nodes
        self.nodes = [list(range(i * per, (i + 1) * per)) for i in range(numa_nodes)]
        self.gpu_numa = gpu_numa if gpu_numa is not None else [
            min(i * numa_nodes // max(gpus, 1), numa_nodes - 1) if numa_nodes > 1 else None for i in range(gpus)]
        self.loads = {i: GpuLoad() for i in range(gpus)}
        self.procs: list[ProcLoad] = []
        self.host = HostLoad()
        self.stacks: list[StackSample] = []
        self.mounts = [Mount("/", "/dev/nvme0n1p1", "ext4", "259:1", "nvme0n1p1", ["nvme0n1"]),
                       Mount("/data", "/dev/nvme1n1", "xfs", "259:4", "nvme1n1", ["nvme1n1"])]
        self.static = {"power_limit_default_w": 700.0}
        self.nics: list[NicLoad] = []

    def nic(self, n: NicLoad) -> WindowBuilder:
        self.nics.append(n)
        return self

    def gpu(self, index: int, **kw: object) -> WindowBuilder:
        for k, v in kw.items():
            setattr(self.loads[index], k, v)
        return self

    def proc(self, p: ProcLoad) -> WindowBuilder:
        self.procs.append(p)
        if p.role == "gpu":
            for g in p.gpus:
                self.loads[g].pids.append(p.pid)
        return self

    def host_load(self, **kw: object) -> WindowBuilder:
        for k, v in kw.items():
            setattr(self.host, k, v)
        return self

    def stack(self, pid: int, main_frames: list[tuple[list[str], int]], ok: bool = True, reason: str | None = None,
              at: tuple[float, float] | None = None) -> WindowBuilder:
        """A py-spy slice of `pid`'s main thread; `at` = (start, end) in window seconds (unset: a
        one-second sample at the window's end, as snapshots before sliced stacks held)."""
        span = (1000.0 + at[0], 1000.0 + at[1]) if at is not None else (None, None)
        if not ok:
            self.stacks.append(StackSample(pid=pid, ok=False, reason=reason, t_start=span[0], t_end=span[1]))
            return self
        st = [FoldedStack(pid, pid, "MainThread", frames, n) for frames, n in main_frames]
        self.stacks.append(StackSample(pid=pid, ok=True, duration_s=at[1] - at[0] if at else 1, rate_hz=100,
                                       samples=sum(n for _, n in main_frames), stacks=st, t_start=span[0],
                                       t_end=span[1]))
        return self

    # -- build ----------------------------------------------------------------------------
    def topology(self) -> Topology:
        online = list(range(self.cpus))
        nodes = [NumaNode(node=i, cpus=c, mem_total_kb=64 << 20, mem_free_kb=32 << 20,
                          distances=[10 if i == j else 21 for j in range(len(self.nodes))])
                 for i, c in enumerate(self.nodes)]
        cpu = CpuTopology(online=online, packages=len(self.nodes), cores=self.cpus, numa_nodes=nodes)
        gpus, pci = [], []
        for i in range(self.n_gpus):
            addr = f"0000:{0x18 + i:02x}:00.0"
            node = self.gpu_numa[i]
            local = self.nodes[node] if node is not None else online
            pci.append(PciDevice(addr, "gpu", 0x10DE, 0x2335, 0x030200, "nvidia", node,
                                 node if node is not None else -1,
                                 local, PciLink(32.0, 16, 32.0, 16), "0000:17:00.0", PciLink(32.0, 16, 32.0, 16),
                                 ["pci0000:17", "0000:17:01.0", addr]))
            st = GpuStatic(index=i, name="NVIDIA H200", uuid=f"GPU-{i}", bus_id=addr, architecture="hopper",
                           memory_total_bytes=141 * 2**30, power_limit_default_w=self.static["power_limit_default_w"],
                           sm_clock_max_mhz=1980, mem_clock_max_mhz=3201, temp_slowdown_c=87, pcie_max_gen=5,
                           pcie_max_width=16, gpm_supported=self.gpm)
            near = [Nearby(n.kind if n.kind == "infiniband" else "nic", f"0000:{0x40 + j:02x}:00.0", [n.device], "PIX")
                    for j, n in enumerate(self.nics) if i in n.near_gpus]
            gpus.append(Gpu(index=i, static=st, address=addr, numa_node=node, local_cpus=local, nearby=near))
        links = [GpuLink(a, b, 18, "SYS", "nvml") for a in range(self.n_gpus) for b in range(a + 1, self.n_gpus)]
        return Topology(node=NodeInfo(hostname="test", kernel="6.8", clk_tck=HZ), cpu=cpu, pci=pci,
                        backend=BackendStatus(True, "replay", device_count=self.n_gpus), gpus=gpus,
                        gpu_links=links, mounts=self.mounts)

    def window(self) -> Window:
        n = int(round(self.seconds / self.interval))
        win = Window(seconds=self.seconds, interval_s=self.interval, stacks=self.stacks)
        for k in range(n + 1):
            t = 1000.0 + k * self.interval
            win.samples.append(self._sample(k, t))
        for p in self.procs:
            win.processes.append(ProcessInfo(
                pid=p.pid, role=p.role, gpus=p.gpus, parent_gpu_pid=p.parent, ppid=p.parent or 1,
                pgid=p.pgid, starttime=int(round((1000.0 - p.age_s) * HZ)),
                comm=p.cmd.split()[0], cmdline=p.cmd.split(), uid=1000, user="alice",
                job=Job("none", p.cgroup, p.cgroup) if "slurm" not in p.cgroup else Job("slurm", "42", p.cgroup),
                cpus_allowed=p.cpus_allowed or list(range(self.cpus)), mems_allowed=[0],
                numa_pages_kb=p.numa_pages_kb, open_files=p.open_files))
        return win

    def build(self) -> tuple[Topology, Window]:
        return self.topology(), self.window()

    def _sample(self, k: int, t: float) -> Sample:
        h = self.host
        el = k * self.interval  # seconds since the first sample
        ticks = lambda pct: int(round(pct / 100 * HZ * el))  # noqa: E731
        total = CpuTimes(-1, user=ticks(h.cpu_busy) * self.cpus, idle=ticks(100 - h.cpu_busy - h.steal) * self.cpus,
                         steal=ticks(h.steal) * self.cpus)
        cpu = CpuSample(total=total, per_cpu=[])
        us = lambda pct: int(pct / 100 * el * 1e6)  # noqa: E731
        psi = {"cpu": Psi(PsiLine(0, 0, 0, us(h.psi_cpu)), None),
               "io": Psi(PsiLine(0, 0, 0, us(h.psi_io)), PsiLine(0, 0, 0, us(h.psi_io_full))),
               "memory": Psi(PsiLine(0, 0, 0, us(h.psi_mem)), PsiLine(0, 0, 0, us(h.psi_mem_full)))}
        disks = [DiskStat(d, reads=int(rb * el * 10), sectors_read=int(rb * 1e6 / 512 * el),
                          ms_reading=int(el * 1000 * u / 100),
                          writes=0, sectors_written=0, ms_writing=0, in_flight=1, ms_io=int(u / 100 * el * 1000),
                          weighted_ms=0) for d, (u, rb) in h.disks.items()]
        mem = MemorySample(meminfo_kb={"MemTotal": 128 << 20, "MemAvailable": 64 << 20},
                           vmstat={"pswpin": int(h.swap_pps * el / 2), "pswpout": int(h.swap_pps * el / 2)})
        gpus = [self._gpu_sample(i, k, t) for i in range(self.n_gpus)]
        procs = []
        for p in self.procs:
            if p.exits_at is not None and k >= p.exits_at:
                procs.append(ProcessSample(pid=p.pid, alive=False, missing={"*": f"/proc/{p.pid}/stat: not present"}))
                continue
            if p.age_s < -el:
                continue  # not started yet
            threads = []
            for th in p.threads:
                main = th.tid == p.pid
                cpu_ticks = (self._cum(p.cpu_pattern, k) * HZ / 100 if main and p.cpu_pattern is not None
                             else ticks(th.cpu_pct))
                state = p.state_pattern[k % len(p.state_pattern)] if main and p.state_pattern else th.state
                threads.append(ThreadSample(th.tid, th.name, state, int(round(cpu_ticks)), 0, th.processor,
                                            ticks(p.blkio_pct) if main else 0))
            procs.append(ProcessSample(pid=p.pid, state=threads[0].state if threads else "S",
                                       utime=sum(th.utime for th in threads), stime=0,
                                       blkio_ticks=ticks(p.blkio_pct), num_threads=len(threads), threads=threads,
                                       write_bytes=int(self._cum(p.write_mibps, k) * 2**20),
                                       read_bytes=int(self._cum(p.read_mibps, k) * 2**20),
                                       starttime=int(round((1000.0 - p.age_s) * HZ))))
        nics = None
        if self.nics:
            nics = NicSample([NicPort(n.device, n.kind, port=1 if n.kind == "infiniband" else None,
                                      link_layer="InfiniBand" if n.kind == "infiniband" else None, state="ACTIVE",
                                      rate_gbps=n.rate_gbps, rx_bytes=int(n.rx_mibps * 2**20 * el),
                                      tx_bytes=int(n.tx_mibps * 2**20 * el),
                                      counters={"port_xmit_wait": int(n.xmit_wait_share * el * 1e6)}
                                      if n.kind == "infiniband" else {})
                              for n in self.nics])
        return Sample(t=t, wall="2026-11-22T00:00:00+00:00", cpu=cpu, memory=mem, io=IoSample(psi=psi, disks=disks),
                      thermal=ThermalSample(), gpus=gpus, processes=procs, nics=nics)

    def _cum(self, rate: float | list[float], k: int) -> float:
        """A rate per second (or a per-sample list of them) summed up to sample k: the counter."""
        if isinstance(rate, list):
            return sum(rate[j % len(rate)] * self.interval for j in range(1, k + 1))
        return rate * self.interval * k

    def _gpu_sample(self, i: int, k: int, t: float) -> GpuSample:
        ld = self.loads[i]
        if ld.lost_at is not None and k >= ld.lost_at:
            return GpuSample(index=i, t=t, state="lost", missing={"*": f"GPU {i} is lost (fell off the bus)"})
        util = ld.busy_pattern[k % len(ld.busy_pattern)] if ld.busy_pattern else ld.util
        mask = 0
        bits = {"gpu_idle": 1, "sw_power_cap": 4, "hw_slowdown": 8, "sw_thermal_slowdown": 0x20,
                "hw_thermal_slowdown": 0x40, "hw_power_brake_slowdown": 0x80}
        for r in ld.reasons:
            mask |= bits[r]
        if util < 5:
            mask |= 1
        s = GpuSample(index=i, t=t, util_gpu_pct=util, util_mem_pct=ld.mem_util,
                      memory_used_bytes=int(ld.mem_used_gib * 2**30), memory_total_bytes=141 * 2**30,
                      power_w=ld.power, power_limit_w=ld.limit, temp_gpu_c=45,
                      sm_clock_mhz=1980 if "sw_power_cap" not in ld.reasons else 1500,
                      clock_event_mask=mask, clock_events=[n for n, b in bits.items() if mask & b],
                      pcie_gen=ld.pcie_gen, pcie_width=ld.pcie_width,
                      processes=[GpuProcess(pid, int(ld.mem_used_gib * 2**30)) for pid in ld.pids])
        if self.gpm:
            if k == 0:
                s.missing["gpm"] = "first GPM sample of the window: metrics need two"
            else:
                f = util / 100 if ld.gpm_follows else 1.0
                sc = lambda v: None if v is None else v * f  # noqa: E731
                s.gpm = GpmMetrics(interval_s=self.interval, sm_util_pct=sc(ld.sm), tensor_pct=sc(ld.tensor),
                                   dram_bw_pct=sc(ld.dram), fp32_pct=sc(ld.fp32), fp16_pct=0.0,
                                   pcie_rx_mibps=ld.pcie_rx, pcie_tx_mibps=ld.pcie_tx,
                                   nvlink_rx_mibps=ld.nvlink, nvlink_tx_mibps=ld.nvlink,
                                   sm_occupancy_pct=(sc(ld.sm) or 0) / 2)
        else:
            s.missing["gpm"] = "GPM not supported on this GPU"
            s.pcie_rx_kibps, s.pcie_tx_kibps = ld.pcie_rx * 1024, ld.pcie_tx * 1024
        return s
