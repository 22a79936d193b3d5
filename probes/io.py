"""Pressure stall information (/proc/pressure/*) and block device counters (/proc/diskstats)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

from .host import Host, ProbeError, attempt

PSI_RESOURCES = ("cpu", "io", "memory")


@dataclass(slots=True)
class PsiLine:
    avg10: float
    avg60: float
    avg300: float
    total_us: int


@dataclass(slots=True)
class Psi:
    """One resource's pressure; `full` is absent for cpu on older kernels."""

    some: PsiLine | None = None
    full: PsiLine | None = None


@dataclass(slots=True)
class DiskStat:
    device: str
    reads: int
    sectors_read: int
    ms_reading: int
    writes: int
    sectors_written: int
    ms_writing: int
    in_flight: int
    ms_io: int  # time the device had I/O in flight: the basis of %util
    weighted_ms: int


@dataclass(slots=True)
class IoSample:
    psi: dict[str, Psi] = field(default_factory=dict)
    disks: list[DiskStat] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


_PSI = re.compile(r"^(some|full)\s+avg10=([\d.]+)\s+avg60=([\d.]+)\s+avg300=([\d.]+)\s+total=(\d+)\s*$")


def parse_psi(text: str, where: str) -> Psi:
    psi = Psi()
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _PSI.match(line.strip())
        if not m:
            raise ProbeError(f"{where}: unexpected line {line.strip()[:50]!r}")
        pl = PsiLine(float(m.group(2)), float(m.group(3)), float(m.group(4)), int(m.group(5)))
        setattr(psi, m.group(1), pl)
    if psi.some is None:
        raise ProbeError(f"{where}: no 'some' line")
    return psi


def parse_diskstats(text: str) -> list[DiskStat]:
    """Parse /proc/diskstats (14, 18 or 20 columns); ram and idle loop devices are dropped."""
    out = []
    for line in text.splitlines():
        p = line.split()
        if len(p) < 14:
            continue
        name = p[2]
        try:
            v = [int(x) for x in p[3:14]]
        except ValueError:
            raise ProbeError(f"/proc/diskstats: bad line {line.strip()[:50]!r}") from None
        if name.startswith("ram") or (name.startswith("loop") and v[0] == 0 and v[4] == 0):
            continue
        out.append(DiskStat(name, v[0], v[2], v[3], v[4], v[6], v[7], v[8], v[9], v[10]))
    return out


def _read_psi(host: Host, p: str) -> Psi:
    return parse_psi(host.read(p), p)


def probe_io(host: Host) -> IoSample:
    s = IoSample()
    for res in PSI_RESOURCES:
        p = f"/proc/pressure/{res}"
        psi = attempt(s.missing, f"psi.{res}", partial(_read_psi, host, p))
        if psi is not None:
            s.psi[res] = psi
    s.disks = attempt(s.missing, "diskstats", lambda: parse_diskstats(host.read("/proc/diskstats"))) or []
    return s
