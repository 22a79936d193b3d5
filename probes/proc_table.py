"""The node's process table as the sampler needs it: each pid's parent and start, kept across scans.

One listing of /proc per scan, and each pid's stat read once in its life: the cost of a scan does
not grow with the threads of the processes followed (walking /proc/PID/task/*/children does: one
read per thread of every GPU process and worker), and it needs no CONFIG_PROC_CHILDREN. Both the
search for loader workers (descendants of a GPU process) and the search for GPU jobs starting up
(`probes/pending.py`) read from the same scan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .host import Host, ProbeError
from .processes import parse_stat, walk_descendants


@dataclass(frozen=True)
class ProcEntry:
    """What stays put about a pid while it lives (a re-parent to init moves it out of any job)."""

    ppid: int
    starttime: int  # ticks since boot


class ProcTable:
    """pid -> (parent, start) for every process on the node, refreshed by `scan()`."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.entries: dict[int, ProcEntry] = {}
        self.new: set[int] = set()  # pids first seen by the last scan
        self.error: str | None = None  # why the last scan could not list /proc
        self._children: dict[int, list[int]] | None = None
        self._self = os.getpid() if host.live else None  # the prober is never a job of the node

    def scan(self) -> bool:
        """List /proc and read the stat of pids not seen before; False (and `error`) if /proc
        could not be listed, the table then kept as it was."""
        try:
            pids = {int(p) for p in self.host.listdir("/proc") if p.isdigit()}
        except (OSError, ProbeError) as exc:
            self.error = f"/proc: {exc}"
            return False
        self.error = None
        pids.discard(self._self or -1)
        for pid in self.entries.keys() - pids:
            del self.entries[pid]
        self.new = set()
        for pid in pids - self.entries.keys():
            p = f"/proc/{pid}/stat"
            try:
                _, rest = parse_stat(self.host.read(p), p)
                self.entries[pid] = ProcEntry(ppid=int(rest[1]), starttime=int(rest[19]))  # fields 4, 22
            except (ProbeError, ValueError, IndexError):
                continue  # gone since the listing, or not ours to read
            self.new.add(pid)
        self._children = None
        return True

    def forget(self, pid: int) -> None:
        """Read `pid`'s stat again at the next scan (its pid was found to name another process)."""
        if self.entries.pop(pid, None) is not None:
            self._children = None

    def children(self) -> dict[int, list[int]]:
        """ppid -> its children's pids, built once per scan."""
        if self._children is None:
            out: dict[int, list[int]] = {}
            for pid, e in self.entries.items():
                out.setdefault(e.ppid, []).append(pid)
            self._children = out
        return self._children

    def descendants(self, pid: int, limit: int) -> tuple[list[int], bool]:
        """Descendants of `pid` in the last scan, at most `limit`, and whether more were left out."""
        kids = self.children()
        return walk_descendants(pid, lambda p: kids.get(p, ()), limit)
