"""Thread CPU affinity: the kernel's on the live node, the fake tree's under any other root.

Pinning plans and the transaction engine only see the `Affinity` protocol. `LiveAffinity` calls
sched_getaffinity/sched_setaffinity (which take a thread id on Linux); `TreeAffinity` reads and
rewrites `Cpus_allowed_list` in /proc/PID/task/TID/status under a fake root, so tests (and a
subprocess that is SIGKILLed mid-apply) keep affinity state in files, as the kernel keeps it
across our process's death.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Protocol

from nodetune.probes.host import Host, KnobWriteError, ProbeError, format_cpulist, parse_cpulist
from nodetune.probes.processes import parse_stat, parse_status

from .errors import KnobFailed, KnobGone

NEEDS_CAP = "needs root or CAP_SYS_NICE"


class Affinity(Protocol):
    """Get and set the CPUs a thread may run on."""

    def get(self, pid: int, tid: int) -> list[int]: ...

    def set(self, pid: int, tid: int, cpus: list[int]) -> None: ...


def thread_starttime(host: Host, pid: int, tid: int) -> int:
    """Start time (clock ticks since boot) of a thread; KnobGone if it does not exist."""
    p = f"/proc/{pid}/task/{tid}/stat"
    try:
        _, rest = parse_stat(host.read(p), p)
        return int(rest[19])  # field 22 of proc(5); rest starts at field 3
    except (ProbeError, ValueError, IndexError):
        raise KnobGone(f"thread {tid} of pid {pid} has exited") from None


def thread_ids(host: Host, pid: int) -> list[int]:
    """The thread ids of a process right now (empty when it has exited)."""
    try:
        return [int(t) for t in host.listdir(f"/proc/{pid}/task") if t.isdigit()]
    except ProbeError:
        return []


class LiveAffinity:
    """The kernel's affinity of real threads."""

    def get(self, pid: int, tid: int) -> list[int]:
        try:
            return sorted(os.sched_getaffinity(tid))
        except ProcessLookupError:
            raise KnobGone(f"thread {tid} of pid {pid} has exited") from None
        except OSError as exc:
            raise KnobFailed(f"affinity of pid {pid} tid {tid}: {exc.strerror or exc}") from None

    def set(self, pid: int, tid: int, cpus: list[int]) -> None:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            raise KnobGone(f"thread {tid} of pid {pid} has exited") from None
        except PermissionError:
            raise KnobFailed(f"affinity of pid {pid} tid {tid}: permission denied ({NEEDS_CAP})") from None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise KnobFailed(f"affinity of pid {pid} tid {tid}: CPUs {format_cpulist(cpus)} are not "
                                 f"allowed (offline, or outside the cgroup's cpuset)") from None
            raise KnobFailed(f"affinity of pid {pid} tid {tid}: {exc.strerror or exc}") from None


class TreeAffinity:
    """Affinity kept in a fake tree's /proc/PID/task/TID/status (never used on the live root)."""

    def __init__(self, host: Host) -> None:
        if host.live:
            raise ValueError("TreeAffinity edits files under a fake root; use LiveAffinity on the node")
        self.host = host

    def _status_path(self, pid: int, tid: int) -> str:
        return f"/proc/{pid}/task/{tid}/status"

    def get(self, pid: int, tid: int) -> list[int]:
        p = self._status_path(pid, tid)
        try:
            st = parse_status(self.host.read(p))
            return parse_cpulist(st.get("Cpus_allowed_list", ""), p)
        except ProbeError:
            raise KnobGone(f"thread {tid} of pid {pid} has exited") from None

    def set(self, pid: int, tid: int, cpus: list[int]) -> None:
        online = self._online()
        if not cpus or (online and not set(cpus) <= set(online)):
            raise KnobFailed(f"affinity of pid {pid} tid {tid}: CPUs {format_cpulist(cpus)} are not "
                             f"allowed (offline, or outside the cgroup's cpuset)")
        paths = [self._status_path(pid, tid)] + ([f"/proc/{pid}/status"] if tid == pid else [])
        for p in paths:
            try:
                text = self.host.read(p)
            except ProbeError:
                raise KnobGone(f"thread {tid} of pid {pid} has exited") from None
            text = re.sub(r"^Cpus_allowed_list:.*$", f"Cpus_allowed_list:\t{format_cpulist(cpus)}", text,
                          flags=re.M)
            try:
                self.host.write(p, text)
            except KnobWriteError as exc:
                raise KnobFailed(exc.reason) from None

    def _online(self) -> list[int]:
        try:
            return parse_cpulist(self.host.read("/sys/devices/system/cpu/online"))
        except ProbeError:
            return []


def affinity_for(host: Host) -> Affinity:
    """The kernel's affinity on the live root, the tree's under a fake one."""
    return LiveAffinity() if host.live else TreeAffinity(host)
