"""What a process tree is reading: /proc/PID/fd targets and /proc/PID/fdinfo offsets, through the Host's roots."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from nodetune.probes.host import Host, ProbeError
from nodetune.probes.processes import children, descendants, parse_stat, parse_status

from .options import PrefetchError

_NOT_DATA = ("/dev/", "/proc/", "/sys/", "/run/", "/memfd:")


@dataclass(frozen=True)
class OpenRead:
    """One file a process of the tree holds open for reading, and where its offset stands."""

    pid: int
    fd: int
    path: str  # as the process sees it (a node path, not under a test root)
    pos: int


def check_target(host: Host, pid: int, euid: int | None = None) -> None:
    """Raise PrefetchError (one line) unless `pid` is a live process whose files this user (`euid`) may see."""
    what = f"--follow {pid}"
    try:
        status = parse_status(host.read(f"/proc/{pid}/status"))
    except ProbeError:
        raise PrefetchError(f"{what}: no such process") from None
    if status.get("State", "").startswith(("Z", "X")):
        raise PrefetchError(f"{what}: the process has exited (zombie)")
    uid = status.get("Uid", "").split()
    euid = os.geteuid() if euid is None else euid
    if euid != 0 and uid and uid[0] != str(euid):
        raise PrefetchError(f"{what}: the process belongs to uid {uid[0]}, not to this user; run as root or "
                            "as its owner")
    try:
        host.listdir(f"/proc/{pid}/fd")
    except ProbeError as exc:
        raise PrefetchError(f"{what}: cannot see its open files ({exc.reason}); run as root or as its owner") from None


_JOB_ID = re.compile(r"(pid|ranks):(\d{1,7})(?:@(\d{1,20}))?")


def _starttime(host: Host, pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), None when the process is gone."""
    try:
        _comm, rest = parse_stat(host.read(f"/proc/{pid}/stat"), f"/proc/{pid}/stat")
    except ProbeError:
        return None
    return int(rest[19]) if len(rest) > 19 else None


def resolve_job(host: Host, job_id: str) -> int:
    """The PID to follow for a job id as diagnose names it: `pid:PID@START` (that process) or
    `ranks:PPID@START` (the launcher whose children are the ranks; their workers are its descendants).

    START, the start time in clock ticks, tells the job from a later process that reuses its pid:
    a mismatch is one line saying the job ended, never a follower of the wrong process.
    """
    what = f"--follow-job {job_id}"
    m = _JOB_ID.fullmatch(job_id.strip())
    if m is None:
        raise PrefetchError(f"{what}: expected pid:PID@START or ranks:PPID@START, as `nodetune diagnose` names jobs")
    kind, pid, start = m.group(1), int(m.group(2)), m.group(3)
    own = _starttime(host, pid)
    if own is None:
        raise PrefetchError(f"{what}: the job has ended (no process {pid})")
    if start is None:
        return pid
    if kind == "pid" and own != int(start):
        raise PrefetchError(f"{what}: pid {pid} started at tick {own}, not {start}: the job ended and its pid "
                            "was reused")
    if kind == "ranks" and not any(_starttime(host, c) == int(start) for c in children(host, pid)):
        raise PrefetchError(f"{what}: no rank of {pid} started at tick {start}: the job's ranks have ended")
    return pid


def alive(host: Host, pid: int) -> bool:
    """Is `pid` still running (not gone, not a zombie)?"""
    try:
        state = parse_status(host.read(f"/proc/{pid}/status")).get("State", "")
    except ProbeError:
        return False
    return not state.startswith(("Z", "X"))


def tree(host: Host, pid: int, limit: int = 256) -> list[int]:
    """The process and its descendants (DataLoader workers are children of the training process)."""
    return [pid, *descendants(host, pid, limit)]


def _fdinfo(host: Host, pid: int, fd: str) -> tuple[int, int] | None:
    """(pos, flags) of one fd, or None when it closed meanwhile."""
    try:
        text = host.read(f"/proc/{pid}/fdinfo/{fd}")
    except ProbeError:
        return None
    pos = flags = -1
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k == "pos":
            pos = int(v.strip() or 0)
        elif k == "flags":
            flags = int(v.strip() or "0", 8)
    return (pos, flags) if pos >= 0 and flags >= 0 else None


def open_reads(host: Host, pids: list[int]) -> list[OpenRead]:
    """Regular-looking files the processes hold open read-only (written files and devices are not data)."""
    out: list[OpenRead] = []
    for pid in pids:
        try:
            fds = host.listdir(f"/proc/{pid}/fd")
        except ProbeError:
            continue  # a worker that exited between the scan and now
        for fd in fds:
            try:
                target = host.readlink(f"/proc/{pid}/fd/{fd}")
            except ProbeError:
                continue  # closed meanwhile: normal churn
            if not target.startswith("/") or target.startswith(_NOT_DATA) or target.endswith(" (deleted)"):
                continue
            info = _fdinfo(host, pid, fd)
            if info is None or info[1] & os.O_ACCMODE != os.O_RDONLY:
                continue
            out.append(OpenRead(pid, int(fd), target, info[0]))
    return out
