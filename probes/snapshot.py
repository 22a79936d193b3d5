"""A window of samples, the versioned snapshot file, and the replay backend that reads it back."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .cpu import CpuSample, probe_cpu
from .gpu import BackendStatus, GpuBackend, GpuSample, GpuStatic, NvLink
from .host import Host
from .io import IoSample, probe_io
from .memory import MemorySample, probe_memory
from .node import Topology, probe_topology
from .processes import (
    ProcessInfo,
    ProcessSample,
    descendants,
    numa_placement,
    process_info,
    sample_process,
    users,
)
from .pystacks import PySpyRun, StackSample
from .serde import SchemaError, from_jsonable, to_jsonable
from .thermal import ThermalSample, probe_thermal

SNAPSHOT_VERSION = 1


@dataclass
class Sample:
    t: float  # monotonic seconds
    wall: str  # ISO 8601 UTC
    cpu: CpuSample
    memory: MemorySample
    io: IoSample
    thermal: ThermalSample
    gpus: list[GpuSample] = field(default_factory=list)
    processes: list[ProcessSample] = field(default_factory=list)
    cost_s: float = 0.0  # CPU seconds this sample cost nodetune


@dataclass
class Window:
    seconds: float
    interval_s: float
    samples: list[Sample] = field(default_factory=list)
    processes: list[ProcessInfo] = field(default_factory=list)
    stacks: list[StackSample] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    def process(self, pid: int) -> ProcessInfo | None:
        return next((p for p in self.processes if p.pid == pid), None)


@dataclass
class Snapshot:
    version: int
    taken_at: str
    topology: Topology
    window: Window | None = None
    note: str | None = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Sampler:
    """Takes samples of the whole node and follows GPU processes and their workers."""

    def __init__(self, host: Host, backend: GpuBackend, topo: Topology, thread_detail: bool = True) -> None:
        self.host = host
        self.backend = backend
        self.topo = topo
        self.thread_detail = thread_detail
        self.gpu_indices = [g.index for g in topo.gpus] if topo.backend.available else []
        self.infos: dict[int, ProcessInfo] = {}
        self._users = users(host)
        self._nodes = [n.node for n in topo.cpu.numa_nodes]
        self._first = True  # THP, huge pages and per-node memory: read once per window

    def prime(self) -> None:
        for i in self.gpu_indices:
            self.backend.prime(i)

    def sample(self, detail: bool = False) -> Sample:
        """One sample of everything; `detail` (first and last of a window) adds slow GPU counters."""
        c0 = time.process_time()
        gpus = [self.backend.sample(i, detail or self._first) for i in self.gpu_indices]
        s = Sample(
            t=time.monotonic(),
            wall=now_iso(),
            cpu=probe_cpu(self.host),
            memory=probe_memory(self.host, self._nodes, detail=self._first),
            io=probe_io(self.host),
            thermal=probe_thermal(self.host),
            gpus=gpus,
        )
        self._first = False
        self._follow(gpus)
        s.processes = [sample_process(self.host, pid, self.thread_detail) for pid in self.infos]
        s.cost_s = round(time.process_time() - c0, 6)
        return s

    def _follow(self, gpus: list[GpuSample]) -> None:
        owners: dict[int, list[int]] = {}
        for g in gpus:
            for p in g.processes:
                owners.setdefault(p.pid, []).append(g.index)
        for pid, idx in owners.items():
            info = self.infos.get(pid)
            if info is None:
                self.infos[pid] = process_info(self.host, pid, "gpu", sorted(idx), self._users, numa=False)
            elif info.role == "gpu":
                info.gpus = sorted(set(info.gpus) | set(idx))
        for pid in [p for p, i in self.infos.items() if i.role == "gpu"]:
            for child in descendants(self.host, pid):
                if child not in self.infos:
                    self.infos[child] = process_info(self.host, child, "worker", self.infos[pid].gpus,
                                                     self._users, parent_gpu_pid=pid, numa=False)

    def finish(self) -> list[ProcessInfo]:
        """Read NUMA placement once at the end (numa_maps is costly on large processes)."""
        for pid, info in self.infos.items():
            if info.role == "gpu":
                info.numa_pages_kb = numa_placement(self.host, pid, info.missing)
        return list(self.infos.values())


STACK_SECONDS = 1.0
MIN_INTERVAL_S = 0.11
MAX_STACK_PROCESSES = 8


def record_window(host: Host, backend: GpuBackend, topo: Topology, seconds: float, interval_s: float = 1.0,
                  progress: Callable[[float], None] | None = None, stacks: bool = True) -> Window:
    """Sample the node every `interval_s` for `seconds` (one sample more than intervals).

    With `stacks`, py-spy samples each GPU process during the window's last second, so stack
    evidence costs no time after the window.
    """
    # GPM needs samples >= 100 ms apart; 10 ms of margin absorbs scheduling jitter.
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
            spies = _start_spies(sampler, start + seconds - time.monotonic())
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        win.samples.append(sampler.sample(detail=k == n))
        if progress:
            progress(min(1.0, (time.monotonic() - start) / seconds))
    win.processes = sampler.finish()
    win.stacks = [spy.collect() for spy in spies]
    return win


def _start_spies(sampler: Sampler, left_s: float) -> list[PySpyRun]:
    pids = [pid for pid, info in sampler.infos.items() if info.role == "gpu"][:MAX_STACK_PROCESSES]
    return [PySpyRun(pid, duration_s=max(STACK_SECONDS, min(left_s, 2.0))) for pid in pids]


def take_snapshot(host: Host, backend: GpuBackend, status: BackendStatus, seconds: float,
                  interval_s: float = 1.0, progress: Callable[[float], None] | None = None,
                  anonymize: bool = True) -> Snapshot:
    topo = probe_topology(host, backend, status)
    win = record_window(host, backend, topo, seconds, interval_s, progress) if seconds > 0 else None
    snap = Snapshot(version=SNAPSHOT_VERSION, taken_at=now_iso(), topology=topo, window=win)
    return strip_identifiers(snap) if anonymize else snap


def strip_identifiers(snap: Snapshot) -> Snapshot:
    """Replace GPU serial numbers and UUIDs (and the hostname) with stable placeholders."""
    for g in snap.topology.gpus:
        if g.static.serial:
            g.static.serial = "REDACTED"
        if g.static.uuid:
            g.static.uuid = f"GPU-redacted-{g.index}"
    snap.topology.node.hostname = "redacted" if snap.topology.node.hostname else None
    return snap


def save_snapshot(snap: Snapshot, path: str) -> None:
    """Write atomically: a failed write never leaves half a snapshot behind."""
    data = (json.dumps(to_jsonable(snap), indent=None if path.endswith(".gz") else 1) + "\n").encode()
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    d = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from its group
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class SnapshotError(Exception):
    """A snapshot file cannot be used; the message is the one line to show."""


def load_snapshot(path: str) -> Snapshot:
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{path}: cannot read: {exc}") from None
    if not isinstance(raw, dict) or "version" not in raw:
        raise SnapshotError(f"{path}: not a nodetune snapshot (no version field)")
    if raw["version"] != SNAPSHOT_VERSION:
        raise SnapshotError(f"{path}: snapshot version {raw['version']!r}; this nodetune reads version {SNAPSHOT_VERSION}")
    try:
        return from_jsonable(Snapshot, raw)
    except SchemaError as exc:
        raise SnapshotError(f"{path}: {exc}") from None


class ReplayBackend:
    """A GpuBackend that plays a snapshot back: static facts, links, then samples in order."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self._statics = {g.index: g.static for g in snap.topology.gpus}
        self._links = {g.index: g.nvlinks for g in snap.topology.gpus}
        self._levels = {(lk.a, lk.b): lk.level for lk in snap.topology.gpu_links if lk.level_source == "nvml"}
        self._samples: dict[int, list[GpuSample]] = {}
        for s in snap.window.samples if snap.window else []:
            for g in s.gpus:
                self._samples.setdefault(g.index, []).append(g)
        self._pos: dict[int, int] = {}

    def open(self) -> BackendStatus:
        st = self.snap.topology.backend
        return BackendStatus(st.available, "replay", st.reason, st.driver_version, st.nvml_version,
                             st.cuda_driver_version, st.device_count)

    def static(self, index: int) -> GpuStatic:
        return self._statics.get(index) or GpuStatic(index=index, missing={"*": "not in snapshot"})

    def prime(self, index: int) -> None:
        return None

    def sample(self, index: int, detail: bool = True) -> GpuSample:
        seq = self._samples.get(index)
        if not seq:
            return GpuSample(index=index, t=time.monotonic(), state="error", missing={"*": "no samples in snapshot"})
        i = self._pos.get(index, 0)
        self._pos[index] = min(i + 1, len(seq) - 1)
        return seq[i]

    def nvlinks(self, index: int) -> list[NvLink]:
        return list(self._links.get(index, []))

    def common_ancestor(self, a: int, b: int) -> str | None:
        return self._levels.get((min(a, b), max(a, b)))

    def close(self) -> None:
        return None

