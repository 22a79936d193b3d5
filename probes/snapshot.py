"""A window of samples, the versioned snapshot file, and the replay backend that reads it back."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import time
import typing
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .cpu import CpuSample
from .gpu import BackendStatus, GpuSample, GpuStatic, NvLink
from .host import open_regular_file
from .io import IoSample
from .memory import MemorySample
from .nic import NicSample
from .node import Topology
from .processes import (
    ProcessInfo,
    ProcessSample,
)
from .pystacks import StackSample
from .serde import (
    SchemaError,
    from_jsonable,
    gc_paused,
    parse_json,
    register_counters,
    strict_reason,
    to_jsonable,
)
from .thermal import ThermalSample

SNAPSHOT_VERSION = 1


@dataclass(slots=True)
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
    nics: NicSample | None = None  # None in snapshots recorded before NIC counters were sampled


register_counters(Sample)  # a negative number in a sample is damage, refused with its path


@dataclass
class Window:
    seconds: float
    interval_s: float
    samples: list[Sample] = field(default_factory=list)
    processes: list[ProcessInfo] = field(default_factory=list)
    stacks: list[StackSample] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    def process(self, pid: int) -> ProcessInfo | None:
        """The process `pid` (the first recorded); an index, built once, keeps rules linear."""
        cached = self.__dict__.get("_by_pid")
        if cached is None or cached[0] != len(self.processes):
            index: dict[int, ProcessInfo] = {}
            for p in self.processes:
                index.setdefault(p.pid, p)
            cached = (len(self.processes), index)
            self.__dict__["_by_pid"] = cached
        return cached[1].get(pid)


@dataclass
class Snapshot:
    version: int
    taken_at: str
    topology: Topology
    window: Window | None = None
    note: str | None = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


# What a snapshot may cost to load. A 1 MB gzip can inflate to gigabytes; the cap is checked
# while inflating, chunk by chunk, so memory and time stay bounded by it whatever the file claims.
# An hour of samples of a node with 8 GPUs and 64 loader workers each is about 100 MiB.
MAX_SNAPSHOT_BYTES = 256 << 20
MAX_PROCESSES = 100_000  # per window and per sample (pid_max is 4M, a GPU job has far fewer)
_CHUNK = 1 << 20


def _read_bounded(path: str, limit: int) -> bytes:
    """The file's bytes (gzip inflated, found by its magic number); SnapshotError past `limit`."""
    fd = open_regular_file(path)  # a FIFO would hang, a device never end: refused before any read
    with open(fd, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        fh: typing.BinaryIO = typing.cast(typing.BinaryIO, gzip.GzipFile(fileobj=raw)) if gz else raw
        buf = bytearray()  # one growing buffer: no list of chunks joined into a second copy
        while chunk := fh.read(_CHUNK):  # GzipFile.read(n) inflates at most n bytes at a time
            if len(buf) + len(chunk) > limit:
                what = "inflates to" if gz else "is"
                size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
                raise SnapshotError(f"{path}: {what} more than {size}; refused (the limit on a snapshot's size)")
            buf += chunk
    return bytes(buf)


def check_window(win: Window) -> str | None:
    """Why a window's timing cannot be diagnosed (naming the field and sample), or None.

    Rates are counter deltas over sample intervals: a zero interval divides by zero and time
    running backwards turns every rate negative.
    """
    if not win.interval_s > 0:
        return f"$.window.interval_s: {win.interval_s!r} is not a positive interval"
    prev: float | None = None
    for i, smp in enumerate(win.samples):
        if prev is not None and smp.t <= prev:
            what = "the same time as" if smp.t == prev else "earlier than"
            why = "a zero interval" if smp.t == prev else "time running backwards"
            return f"$.window.samples[{i}].t: {smp.t!r} is {what} samples[{i - 1}].t ({prev!r}): {why}"
        prev = smp.t
    return None


def _check_counts(raw: dict[str, typing.Any]) -> str | None:
    """Why the document holds more processes than a snapshot may, or None."""
    win = raw.get("window")
    if not isinstance(win, dict):
        return None
    procs = win.get("processes")
    if isinstance(procs, list) and len(procs) > MAX_PROCESSES:
        return f"$.window.processes: {len(procs)} processes; more than {MAX_PROCESSES} is refused"
    samples = win.get("samples")
    for i, smp in enumerate(samples if isinstance(samples, list) else []):
        sp = smp.get("processes") if isinstance(smp, dict) else None
        if isinstance(sp, list) and len(sp) > MAX_PROCESSES:
            return f"$.window.samples[{i}].processes: {len(sp)} processes; more than {MAX_PROCESSES} is refused"
    return None


def load_snapshot(path: str, max_bytes: int = MAX_SNAPSHOT_BYTES) -> Snapshot:
    """Read a snapshot file; every way it can be unusable is one SnapshotError line."""
    with gc_paused():
        return _load(path, max_bytes)


def _load(path: str, max_bytes: int) -> Snapshot:
    try:
        data = _read_bounded(path, max_bytes)
        raw = parse_json(data.decode("utf-8"))
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except SchemaError as exc:  # NaN, out-of-range numbers, nesting: refused while parsing
        raise SnapshotError(f"{path}: {exc}") from None
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise SnapshotError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(raw, dict) or "version" not in raw:
        raise SnapshotError(f"{path}: not a nodetune snapshot (no version field)")
    if raw["version"] != SNAPSHOT_VERSION:
        raise SnapshotError(f"{path}: snapshot version {raw['version']!r:.40}; this nodetune reads version "
                            f"{SNAPSHOT_VERSION}")
    too_many = _check_counts(raw)
    if too_many:
        raise SnapshotError(f"{path}: {too_many}")
    try:
        snap = from_jsonable(Snapshot, raw)
    except SchemaError as exc:
        # A number read natively (1e400 as inf): the strict reader names it as written.
        raise SnapshotError(f"{path}: {strict_reason(data) or exc}") from None
    except RecursionError:  # the schema is a few levels deep; this only guards a pathological input
        raise SnapshotError(f"{path}: nested too deeply to read") from None
    bad = check_window(snap.window) if snap.window is not None else None
    if bad:
        raise SnapshotError(f"{path}: {bad}")
    return snap


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

