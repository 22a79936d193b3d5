"""Block devices and what backs a path: mount -> device -> partitions, dm and md down to disks."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .host import Host, ProbeError, attempt
from .memory import parse_selected


@dataclass
class BlockQueue:
    device: str
    kind: str  # nvme | scsi | virtio | dm | md | loop | other
    read_ahead_kb: int | None = None
    scheduler: str | None = None
    schedulers: list[str] = field(default_factory=list)
    nr_requests: int | None = None
    rotational: bool | None = None
    slaves: list[str] = field(default_factory=list)  # dm/md members
    pci_address: str | None = None
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class Mount:
    mount_point: str
    source: str
    fstype: str
    major_minor: str
    device: str | None = None  # block device name the mount sits on (partition, dm-0, md0)
    disks: list[str] = field(default_factory=list)  # whole disks underneath


def _kind(name: str) -> str:
    for prefix, kind in (("nvme", "nvme"), ("sd", "scsi"), ("vd", "virtio"), ("dm-", "dm"),
                         ("md", "md"), ("loop", "loop")):
        if name.startswith(prefix):
            return kind
    return "other"


def probe_block_queue(host: Host, dev: str) -> BlockQueue:
    d = f"/sys/block/{dev}"
    q = BlockQueue(device=dev, kind=_kind(dev))
    q.read_ahead_kb = attempt(q.missing, "read_ahead_kb", lambda: host.read_int(f"{d}/queue/read_ahead_kb"))
    text = attempt(q.missing, "scheduler", lambda: host.read(f"{d}/queue/scheduler"))
    if text is not None:
        q.schedulers = [s.strip("[]") for s in text.split()]
        if "[" in text:
            q.scheduler = attempt(q.missing, "scheduler", lambda: parse_selected(text, f"{d}/queue/scheduler"))
        elif q.schedulers == ["none"]:
            q.scheduler = "none"
    q.nr_requests = attempt(q.missing, "nr_requests", lambda: host.read_int(f"{d}/queue/nr_requests"))
    rot = attempt(q.missing, "rotational", lambda: host.read_int(f"{d}/queue/rotational"))
    q.rotational = bool(rot) if rot is not None else None
    if host.exists(f"{d}/slaves"):
        q.slaves = attempt(q.missing, "slaves", lambda: host.listdir(f"{d}/slaves")) or []
    real = host.realpath(d)
    addrs = [p for p in real.split("/") if re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", p)]
    q.pci_address = addrs[-1] if addrs else None
    return q


def probe_block_devices(host: Host, missing: dict[str, str]) -> list[BlockQueue]:
    names = attempt(missing, "block", lambda: host.listdir("/sys/block")) or []
    return [probe_block_queue(host, n) for n in names if not n.startswith(("ram", "zram"))]


def _unescape(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def parse_mountinfo(text: str) -> list[tuple[str, str, str, str]]:
    """(major:minor, mount point, fstype, source) for each line of /proc/PID/mountinfo."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        lp, rp = left.split(), right.split()
        if not sep or len(lp) < 5 or len(rp) < 2:
            raise ProbeError(f"mountinfo: bad line {line[:50]!r}")
        out.append((lp[2], _unescape(lp[4]), rp[0], _unescape(rp[1])))
    return out


def disks_under(host: Host, dev: str, seen: set[str] | None = None) -> list[str]:
    """Whole disks beneath a block device: partition -> disk, dm/md -> slaves, recursively."""
    seen = seen if seen is not None else set()
    if dev in seen:
        return []
    seen.add(dev)
    if host.exists(f"/sys/class/block/{dev}/partition"):
        parent = os.path.basename(os.path.dirname(host.realpath(f"/sys/class/block/{dev}")))
        return disks_under(host, parent, seen)
    slaves_dir = f"/sys/block/{dev}/slaves"
    if host.exists(slaves_dir):
        try:
            slaves = host.listdir(slaves_dir)
        except ProbeError:
            slaves = []
        if slaves:
            out: list[str] = []
            for s in slaves:
                out.extend(d for d in disks_under(host, s, seen) if d not in out)
            return out
    return [dev]


def device_of(host: Host, major_minor: str) -> str | None:
    try:
        return (os.path.basename(host.realpath(f"/sys/dev/block/{major_minor}"))
                if host.exists(f"/sys/dev/block/{major_minor}") else None)
    except ProbeError:
        return None


def probe_mounts(host: Host, missing: dict[str, str], virtual: bool = False) -> list[Mount]:
    """Mounts backed by block devices; with `virtual`, every mount (tmpfs, proc, NFS, overlay...).

    A major-0 mount with a /dev source (btrfs, whose st_dev is anonymous) gets that device.
    """
    rows = attempt(missing, "mounts", lambda: parse_mountinfo(host.read("/proc/self/mountinfo"))) or []
    out = []
    for mm, mp, fstype, source in rows:
        anonymous = not mm.split(":")[0].isdigit() or mm.startswith("0:")  # major 0: no block device
        m = Mount(mount_point=mp, source=source, fstype=fstype, major_minor=mm)
        if anonymous:
            m.device = _device_of_source(host, source)
            if m.device is None and not virtual:
                continue
        else:
            m.device = device_of(host, mm)
        if m.device:
            m.disks = disks_under(host, m.device)
        out.append(m)
    return out


def _device_of_source(host: Host, source: str) -> str | None:
    """The block device a mount's source names (/dev/sda2, /dev/mapper/x -> dm-0), if sysfs has it."""
    if not source.startswith("/dev/"):
        return None
    try:
        name = os.path.basename(host.realpath(source))
    except ProbeError:
        return None  # a source outside the root or unreadable names no device here
    return name if name and host.exists(f"/sys/class/block/{name}") else None


def mount_for_path(mounts: list[Mount], path: str) -> Mount | None:
    """The mount holding `path`: the longest mount point that is a prefix of it (the last one
    listed when several share it: a later mount hides an earlier one)."""
    path = os.path.normpath(path)
    best: Mount | None = None
    for m in mounts:
        mp = m.mount_point
        if path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) >= len(best.mount_point):
                best = m
    return best
