"""The Sampler: one Sample of the whole node per tick, GPU processes and their workers followed.

It serves a one-off window (`record_window`, for `diagnose` and `snapshot`) and the agent's loop
that runs for days. For the latter what it keeps is bounded by what is alive on the node: a
followed process is keyed on (pid, start time) and dropped when it exits or its pid is reused, and
`roll()` hands back the window so far and starts the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .cpu import probe_cpu
from .gpu import BackendStatus, GpuBackend, GpuSample
from .host import Host
from .io import probe_io
from .memory import probe_memory
from .nic import probe_nics
from .node import Topology, probe_topology
from .processes import (
    MAX_WORKERS,
    ProcessInfo,
    descendants_capped,
    numa_placement,
    process_info,
    sample_process,
    users,
)
from .pystacks import PySpyRun
from .snapshot import SNAPSHOT_VERSION, Sample, Snapshot, Window, now_iso, strip_identifiers
from .thermal import probe_thermal

STACK_SECONDS = 1.0
MIN_INTERVAL_S = 0.11  # GPM needs samples >= 100 ms apart; 10 ms of margin absorbs jitter
MAX_STACK_PROCESSES = 8
# How often (in samples) to look for new DataLoader workers under a GPU process, and to read the
# workers followed: the walk of /proc/PID/task/*/children costs more than the rest of a sample on a
# busy job, and 64 workers read every second cost more than the 8 GPUs they feed. A GPU process is
# read every sample.
WORKER_SCAN_EVERY = 5
MAX_FOLLOWED = 4096  # a node with more GPU processes and workers than this is refused, not followed


class Sampler:
    """Takes samples of the whole node and follows GPU processes and their workers."""

    def __init__(self, host: Host, backend: GpuBackend, topo: Topology, thread_detail: bool = True,
                 worker_scan_every: int = 1) -> None:
        self.host = host
        self.backend = backend
        self.topo = topo
        self.thread_detail = thread_detail
        self.worker_scan_every = max(1, worker_scan_every)
        self.gpu_indices = [g.index for g in topo.gpus] if topo.backend.available else []
        self.infos: dict[int, ProcessInfo] = {}
        self.dropped = 0  # processes that exited (or whose pid was reused) since the start
        self._users = users(host)
        self._nodes = [n.node for n in topo.cpu.numa_nodes]
        self._page_kb = topo.node.page_kb or 4
        self._first = True  # THP, huge pages and per-node memory: read once per window
        self._n = 0
        self._window_pids: dict[int, ProcessInfo] = {}  # every process seen in the current window

    def prime(self) -> None:
        for i in self.gpu_indices:
            self.backend.prime(i)

    def sample(self, detail: bool = False) -> Sample:
        """One sample of everything; `detail` (first and last of a window) adds slow GPU counters."""
        # this thread's CPU only: in the agent other threads (diagnosis, HTTP) share the process
        c0 = time.thread_time()
        gpus = [self.backend.sample(i, detail or self._first) for i in self.gpu_indices]
        s = Sample(
            t=time.monotonic(),
            wall=now_iso(),
            cpu=probe_cpu(self.host),
            memory=probe_memory(self.host, self._nodes, detail=self._first),
            io=probe_io(self.host),
            thermal=probe_thermal(self.host),
            gpus=gpus,
            nics=probe_nics(self.host),
        )
        self._first = False
        # Workers on their own cadence (and in a window's last sample, so it ends on fresh counters):
        # stat and io, and their main thread only.
        workers_due = self._n % self.worker_scan_every == 0 or detail
        self._follow(gpus, scan_workers=workers_due)
        self._n += 1
        s.processes = []
        for pid in list(self.infos):
            info = self.infos[pid]
            worker = info.role == "worker"
            if worker and not workers_due:
                continue
            ps = sample_process(self.host, pid, self.thread_detail, self._page_kb, main_thread_only=worker)
            if not ps.alive or (ps.starttime is not None and info.starttime is not None
                                and ps.starttime != info.starttime):
                # exited, or the pid now names another process: stop following it
                del self.infos[pid]
                self.dropped += 1
                if not ps.alive:
                    s.processes.append(ps)  # the last sample says it is gone
                continue
            s.processes.append(ps)
        s.cost_s = round(time.thread_time() - c0, 6)
        return s

    def _follow(self, gpus: list[GpuSample], scan_workers: bool) -> None:
        owners: dict[int, list[int]] = {}
        for g in gpus:
            for p in g.processes:
                owners.setdefault(p.pid, []).append(g.index)
        for pid, idx in owners.items():
            info = self.infos.get(pid)
            if info is None:
                self._add(process_info(self.host, pid, "gpu", sorted(idx), self._users, numa=False))
            elif info.role == "gpu":
                info.gpus = sorted(set(info.gpus) | set(idx))
        if not scan_workers:
            return
        for pid in [p for p, i in self.infos.items() if i.role == "gpu"]:
            kids, capped = descendants_capped(self.host, pid)
            self.infos[pid].worker_cap = MAX_WORKERS if capped else None
            for child in kids:
                if child not in self.infos:
                    self._add(process_info(self.host, child, "worker", self.infos[pid].gpus,
                                           self._users, parent_gpu_pid=pid, numa=False))

    def capped(self) -> int:
        """GPU processes followed whose workers reached the cap (some of their workers not followed)."""
        return sum(1 for i in self.infos.values() if i.role == "gpu" and i.worker_cap is not None)

    def _add(self, info: ProcessInfo) -> None:
        if len(self.infos) >= MAX_FOLLOWED:
            return
        self.infos[info.pid] = info
        self._window_pids[info.pid] = info

    def finish(self) -> list[ProcessInfo]:
        """The processes of this window, NUMA placement read once (numa_maps is costly)."""
        for pid, info in self._window_pids.items():
            if info.role == "gpu" and pid in self.infos:
                info.numa_pages_kb = numa_placement(self.host, pid, info.missing)
        return list(self._window_pids.values())

    def roll(self, win: Window) -> Window:
        """Close `win` (its processes filled in) and start the next window's bookkeeping.

        What carries over is only what is alive: the followed processes.
        """
        win.processes = self.finish()
        self._window_pids = dict(self.infos)
        self._first = True
        return win


def record_window(host: Host, backend: GpuBackend, topo: Topology, seconds: float, interval_s: float = 1.0,
                  progress: Callable[[float], None] | None = None, stacks: bool = True) -> Window:
    """Sample the node every `interval_s` for `seconds` (one sample more than intervals).

    With `stacks`, py-spy samples each GPU process during the window's last second, so stack
    evidence costs no time after the window.
    """
    interval_s = max(interval_s, MIN_INTERVAL_S)
    sampler = Sampler(host, backend, topo)
    win = Window(seconds=seconds, interval_s=interval_s)
    sampler.prime()
    n = max(1, round(seconds / interval_s))
    spies: list[PySpyRun] = []
    # The first sample only primes the counters; rates come from later deltas.
    time.sleep(MIN_INTERVAL_S)
    start = time.monotonic()  # schedule from the first sample: the next one is a full interval later
    win.samples.append(sampler.sample())
    for k in range(1, n + 1):
        target = start + k * interval_s
        if stacks and not spies and host.live and target + interval_s >= start + seconds - STACK_SECONDS:
            spies = start_spies(sampler, start + seconds - time.monotonic())
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        win.samples.append(sampler.sample(detail=k == n))
        if progress:
            progress(min(1.0, (time.monotonic() - start) / seconds))
    sampler.roll(win)
    win.stacks = [spy.collect() for spy in spies]
    return win


def start_spies(sampler: Sampler, left_s: float) -> list[PySpyRun]:
    """py-spy on each followed GPU process for the rest of the window (at least a second)."""
    pids = [pid for pid, info in sampler.infos.items() if info.role == "gpu"][:MAX_STACK_PROCESSES]
    return [PySpyRun(pid, duration_s=max(STACK_SECONDS, min(left_s, 2.0))) for pid in pids]


def take_snapshot(host: Host, backend: GpuBackend, status: BackendStatus, seconds: float,
                  interval_s: float = 1.0, progress: Callable[[float], None] | None = None,
                  anonymize: bool = True) -> Snapshot:
    topo = probe_topology(host, backend, status)
    win = record_window(host, backend, topo, seconds, interval_s, progress) if seconds > 0 else None
    snap = Snapshot(version=SNAPSHOT_VERSION, taken_at=now_iso(), topology=topo, window=win)
    return strip_identifiers(snap) if anonymize else snap
