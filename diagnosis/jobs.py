"""Group GPU processes into jobs: a Slurm job, a Kubernetes pod, a container or unit, else the process tree."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetune.probes.processes import ProcessInfo
from nodetune.probes.snapshot import Window

# Job kinds whose cgroup names a real unit of work; elsewhere (a login session) each process is one.
_GROUPED = ("slurm", "kubernetes", "docker", "systemd")


@dataclass
class JobGroup:
    id: str
    kind: str
    user: str | None
    command: str
    pids: list[int] = field(default_factory=list)  # processes holding GPU contexts
    workers: list[int] = field(default_factory=list)  # their descendants (DataLoader workers...)
    gpus: list[int] = field(default_factory=list)

    @property
    def all_pids(self) -> list[int]:
        return self.pids + self.workers


def _command(info: ProcessInfo) -> str:
    return " ".join(info.cmdline)[:200] if info.cmdline else (info.comm or f"pid {info.pid}")


# Ranks a launcher (torchrun, mp.spawn) starts come up within this long of each other; programs a
# script runs one after another do not overlap in time at all.
RANKS_START_S = 120.0
RANKS_START_TICKS = RANKS_START_S * 100  # start times are in clock ticks (USER_HZ, 100 on Linux)


def _alive_span(win: Window, pid: int) -> tuple[int, int]:
    """Indices of the first and last samples in which `pid` is alive."""
    seen = [k for k, s in enumerate(win.samples) if any(p.pid == pid and p.alive for p in s.processes)]
    return (seen[0], seen[-1]) if seen else (0, len(win.samples) - 1)


def _program(cmdline: list[str]) -> tuple[str, ...]:
    """What a command line runs: the interpreter and its script, or its `-m` module."""
    return tuple(cmdline[:3]) if len(cmdline) >= 3 and cmdline[1] == "-m" else tuple(cmdline[:2])


def _start_key(info: ProcessInfo) -> str:
    return f"{info.pid}@{info.starttime}" if info.starttime is not None else str(info.pid)


def group_jobs(win: Window) -> list[JobGroup]:
    """Jobs from cgroups where a job manager named them (Slurm, a Kubernetes pod, a container, a
    systemd unit); elsewhere (a login session, where one cgroup holds everything a user runs) the
    process tree: GPU processes that are children of one parent, alive at the same time and started
    together, are the ranks of one job (`ranks:PPID@START`); any other GPU process is a job of its
    own keyed with its start time (`pid:PID@START`), so programs that a script runs one after
    another, or a pid reused, are never one job."""
    groups: dict[str, JobGroup] = {}
    owner: dict[int, str] = {}
    # GPU processes, and processes that loaded CUDA but have no context yet (a job starting up)
    gpu_procs = [i for i in win.processes if i.role in ("gpu", "pending")]
    siblings: dict[tuple[int, int | None, tuple[str, ...]], list[ProcessInfo]] = {}
    for info in gpu_procs:
        if not (info.job and info.job.kind in _GROUPED) and info.ppid not in (None, 0, 1):
            # one parent, one process group, one program: a launcher's ranks (different programs a
            # shell starts side by side, or in sessions of their own, are apart)
            sib = (info.ppid, info.pgid, _program(info.cmdline))
            siblings.setdefault(sib, []).append(info)
    rank_key: dict[int, str] = {}
    for (ppid, _, _), members in siblings.items():
        if len(members) < 2:
            continue
        spans = {m.pid: _alive_span(win, m.pid) for m in members}
        starts = sorted((m.starttime or 0, m.pid) for m in members)
        first = min(m.starttime for m in members if m.starttime is not None) if any(
            m.starttime is not None for m in members) else None
        together = [m for m in members if first is None or m.starttime is None
                    or (m.starttime - first) <= RANKS_START_TICKS]
        # alive at the same time as another of them: a launcher's ranks, not one program after another
        overlap = [m for m in together if any(o.pid != m.pid and spans[o.pid][0] <= spans[m.pid][1]
                                              and spans[m.pid][0] <= spans[o.pid][1] for o in together)]
        if len(overlap) >= 2:
            for m in overlap:
                rank_key[m.pid] = f"ranks:{ppid}@{starts[0][0]}"
    for info in gpu_procs:
        if info.job and info.job.kind in _GROUPED:
            key, kind = f"{info.job.kind}:{info.job.id}", info.job.kind
        elif info.pid in rank_key:
            key, kind = rank_key[info.pid], "ranks"
        else:
            key, kind = f"pid:{_start_key(info)}", "process"
        g = groups.get(key)
        if g is None:
            g = groups[key] = JobGroup(id=key, kind=kind, user=info.user, command=_command(info))
        g.pids.append(info.pid)
        g.gpus = sorted(set(g.gpus) | set(info.gpus))
        owner[info.pid] = key
    for info in win.processes:
        if info.role == "worker" and info.parent_gpu_pid in owner:
            groups[owner[info.parent_gpu_pid]].workers.append(info.pid)
    return list(groups.values())
