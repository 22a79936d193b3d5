"""The Sampler: one Sample of the whole node per tick, GPU processes and their workers followed.

It serves a one-off window (`record_window`, for `diagnose` and `snapshot`) and the agent's loop
that runs for days. For the latter what it keeps is bounded by what is alive on the node: a
followed process is keyed on (pid, start time) and dropped when it exits or its pid is reused, and
`roll()` hands back the window so far and starts the next one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .cpu import probe_cpu
from .gpu import BackendStatus, GpuBackend, GpuSample
from .held_files import HeldFiles
from .host import Host
from .io import probe_io
from .memory import probe_memory
from .nic import probe_nics
from .node import Topology, probe_topology
from .pending import PendingScanner
from .proc_table import ProcTable
from .processes import (
    MAX_WORKERS,
    ProcessInfo,
    ProcessSample,
    numa_placement,
    process_info,
    sample_process,
    users,
)
from .pystacks import StackRecorder
from .snapshot import SNAPSHOT_VERSION, Sample, Snapshot, Window, now_iso, strip_identifiers
from .thermal import ThermalLayout, probe_thermal, thermal_layout

MIN_INTERVAL_S = 0.11  # GPM needs samples >= 100 ms apart; 10 ms of margin absorbs jitter
MAX_STACK_PROCESSES = 8
# One-off windows (diagnose, snapshot): stacks in slices of this long over the whole window, at a
# rate high enough for a 10-s window to hold a few hundred main-thread samples.
WINDOW_SLICE_S = 2.0
WINDOW_STACK_HZ = 20
# How often (in samples) to look for new DataLoader workers under a GPU process, and to read the
# workers followed: the walk of /proc/PID/task/*/children costs more than the rest of a sample on a
# busy job, and 64 workers read every second cost more than the 8 GPUs they feed. A GPU process is
# read every sample.
WORKER_SCAN_EVERY = 5
# A process that maps CUDA but has no GPU context yet is followed as a starting GPU job for this
# long after its start; one that never creates a context by then is not a GPU job.
PENDING_MAX_AGE_S = 120.0
MAX_FOLLOWED = 4096  # a node with more GPU processes and workers than this is refused, not followed
# py-spy reads every thread of its target at each of its ticks (about 30 us a thread: a 40-thread
# trainer at 5 Hz costs 0.6% of a core) and stacks explain idle time. With `stacks_busy_s` set (the
# agent), a GPU process whose GPUs all read at least this utilization in every sample of the last
# `stacks_busy_s` starts no new slice until one of them dips.
STACKS_BUSY_PCT = 95.0


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
        self._first = True  # THP, huge pages, per-node memory and the thermal layout: read once per window
        self._thermal: ThermalLayout | None = None
        self._n = 0
        self._window_pids: dict[int, ProcessInfo] = {}  # every process seen in the current window
        self.stacks: StackRecorder | None = None  # py-spy over the GPU processes, when asked for
        self.stacks_busy_s: float | None = None  # None: slices over every GPU process, busy or not
        self._gpu_dipped: dict[int, float] = {}  # GPU index -> time of its last sample below STACKS_BUSY_PCT
        self._pending_since: dict[int, float] = {}  # processes with CUDA loaded and no context yet
        self._busy: dict[int, list[int]] = {}  # GPU process -> its threads read every sample
        self._ticks: dict[int, dict[int, int]] = {}  # GPU process -> tid -> CPU ticks at the last full reading
        self._held = HeldFiles(host)  # the followed processes' stat and io files, kept open
        self._table = ProcTable(host)  # one /proc scan a worker cadence: workers and starting jobs
        self._pending = PendingScanner(host, len(self.gpu_indices), PENDING_MAX_AGE_S, topo.node.clk_tck or 100,
                                       table=self._table)

    def prime(self) -> None:
        for i in self.gpu_indices:
            self.backend.prime(i)

    def sample(self, detail: bool = False) -> Sample:
        """One sample of everything; `detail` (first and last of a window) adds slow GPU counters."""
        # this thread's CPU only: in the agent other threads (diagnosis, HTTP) share the process
        c0 = time.thread_time()
        gpus = [self.backend.sample(i, detail or self._first) for i in self.gpu_indices]
        if self._first or self._thermal is None:
            self._thermal = thermal_layout(self.host)
        # Workers, each CPU's times and the NIC counters on their own cadence (and in a window's
        # last sample, so it ends on fresh counters): what reads them is a window's rates between
        # the first and last samples that have them. The all-CPU line every sample.
        workers_due = self._n % self.worker_scan_every == 0 or detail
        cadence = workers_due or self._first
        s = Sample(
            t=time.monotonic(),
            wall=now_iso(),
            cpu=probe_cpu(self.host, per_cpu=cadence),
            memory=probe_memory(self.host, self._nodes, detail=self._first),
            io=probe_io(self.host),
            thermal=probe_thermal(self.host, self._thermal),
            gpus=gpus,
            nics=probe_nics(self.host) if cadence else None,
        )
        self._first = False
        self._follow(gpus, scan_workers=workers_due)
        self._n += 1
        if self.stacks is not None:
            pids = self.gpu_pids()
            self.stacks.tick(pids, None if self.stacks_busy_s is None else self._stack_starts(pids, gpus, s.t))
        s.processes = []
        for pid in list(self.infos):
            info = self.infos[pid]
            worker = info.role == "worker"
            if worker and not workers_due:
                continue
            ps = sample_process(self.host, pid, self.thread_detail, self._page_kb, main_thread_only=worker,
                                read=self._held.read, only_tids=None if workers_due else self._busy.get(pid))
            if not worker and workers_due and ps.alive:
                self._busy[pid] = self._busy_threads(pid, ps)
            if not ps.alive or (ps.starttime is not None and info.starttime is not None
                                and ps.starttime != info.starttime):
                # exited, or the pid now names another process: stop following it
                del self.infos[pid]
                self._busy.pop(pid, None)
                self._ticks.pop(pid, None)
                self.dropped += 1
                if not ps.alive:
                    s.processes.append(ps)  # the last sample says it is gone
                continue
            s.processes.append(ps)
        if workers_due:
            self._held.sweep()  # threads and processes gone since the last worker cadence
            for gone in self._ticks.keys() - self.infos.keys():  # left in other ways (a pending one expired)
                self._busy.pop(gone, None)
                del self._ticks[gone]
        s.cost_s = round(time.thread_time() - c0, 6)
        return s

    def _busy_threads(self, pid: int, ps: ProcessSample) -> list[int]:
        """The threads of GPU process `pid` to read until its next full reading: those running or
        waiting on I/O, or whose CPU time moved since the last full reading. A trainer has tens of
        threads (OpenMP and CUDA helpers, idle pools) of which a few work; the others' counters are
        read on the worker cadence, which is what their share of the window needs."""
        last = self._ticks.get(pid, {})
        now = {t.tid: t.utime + t.stime for t in ps.threads}
        self._ticks[pid] = now
        return [t.tid for t in ps.threads if t.state in ("R", "D") or last.get(t.tid) != now[t.tid]]

    def gpu_pids(self) -> list[int]:
        """The followed GPU processes, oldest pid first."""
        return sorted(pid for pid, info in self.infos.items() if info.role in ("gpu", "pending"))

    def _stack_starts(self, pids: list[int], gpus: list[GpuSample], now: float) -> set[int]:
        """Of `pids`, those that may start a py-spy slice: not known busy for the last stacks_busy_s."""
        for g in gpus:
            if g.util_gpu_pct is None or g.util_gpu_pct < STACKS_BUSY_PCT:
                self._gpu_dipped[g.index] = now
        busy_s = self.stacks_busy_s or 0.0
        out = set()
        for pid in pids:
            info = self.infos[pid]
            # a process starting up (no context yet) or on a GPU that dipped lately: its stacks tell why
            if info.role != "gpu" or not info.gpus or any(
                    now - self._gpu_dipped.get(i, -math.inf) <= busy_s for i in info.gpus):
                out.add(pid)
        return out

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
            elif info.role == "pending":  # its context is up: a GPU process from now on
                info.role, info.gpus = "gpu", sorted(idx)
        if not scan_workers or not self.gpu_indices:
            return
        if self._table.scan():
            for pend in self._pending.scan(set(self.infos)):
                self._add(process_info(self.host, pend.pid, "pending", pend.gpus, self._users, numa=False))
                self._pending_since[pend.pid] = time.monotonic()
            for pid, t in list(self._pending_since.items()):
                info = self.infos.get(pid)
                if info is None or info.role != "pending":
                    del self._pending_since[pid]
                elif time.monotonic() - t > PENDING_MAX_AGE_S:  # CUDA loaded, never used: not a GPU job
                    del self.infos[pid], self._pending_since[pid]
        if self._table.error is not None:
            return  # /proc unreadable this time: keep following the workers already found
        entries = self._table.entries
        for pid in [p for p, i in self.infos.items() if i.role == "gpu"]:
            kids, capped = self._table.descendants(pid, MAX_WORKERS)
            self.infos[pid].worker_cap = MAX_WORKERS if capped else None
            for child in kids:
                if child not in self.infos:
                    info = process_info(self.host, child, "worker", self.infos[pid].gpus,
                                        self._users, parent_gpu_pid=pid, numa=False)
                    # the pid may name another process since the table read its stat: read it
                    # again at the next scan
                    if info.starttime is None or info.starttime == entries[child].starttime:
                        self._add(info)
                    else:
                        self._table.forget(child)

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

    def close(self) -> None:
        """Release the descriptors held for the followed processes (a one-off window's sampler)."""
        self._held.close()

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

    With `stacks`, py-spy samples each GPU process in consecutive slices over the whole window (a
    process that appears mid-window from its first sample on), so each idle second can be matched
    with what the job was doing then; the last slice is cut at the window's end.
    """
    interval_s = max(interval_s, MIN_INTERVAL_S)
    sampler = Sampler(host, backend, topo)
    if stacks and host.live:
        sampler.stacks = StackRecorder(slice_s=min(WINDOW_SLICE_S, max(seconds, 1.0)), rate_hz=WINDOW_STACK_HZ,
                                       max_processes=MAX_STACK_PROCESSES, keep_s=seconds + 30, retry_s=seconds / 2)
    win = Window(seconds=seconds, interval_s=interval_s)
    sampler.prime()
    n = max(1, round(seconds / interval_s))
    # The first sample only primes the counters; rates come from later deltas.
    time.sleep(MIN_INTERVAL_S)
    start = time.monotonic()  # schedule from the first sample: the next one is a full interval later
    win.samples.append(sampler.sample())
    for k in range(1, n + 1):
        target = start + k * interval_s
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        win.samples.append(sampler.sample(detail=k == n))
        if progress:
            progress(min(1.0, (time.monotonic() - start) / seconds))
    sampler.roll(win)
    sampler.close()
    if sampler.stacks is not None:
        win.stacks = sampler.stacks.slices(win.samples[0].t - WINDOW_SLICE_S, win.samples[-1].t, finish=True)
        sampler.stacks.stop()
    return win


def take_snapshot(host: Host, backend: GpuBackend, status: BackendStatus, seconds: float,
                  interval_s: float = 1.0, progress: Callable[[float], None] | None = None,
                  anonymize: bool = True) -> Snapshot:
    topo = probe_topology(host, backend, status)
    win = record_window(host, backend, topo, seconds, interval_s, progress) if seconds > 0 else None
    snap = Snapshot(version=SNAPSHOT_VERSION, taken_at=now_iso(), topology=topo, window=win)
    return strip_identifiers(snap) if anonymize else snap
