"""Group GPU processes into jobs: a Slurm job, a Kubernetes pod, a container or unit, else one process."""

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


def group_jobs(win: Window) -> list[JobGroup]:
    """Jobs from cgroups where a job manager named them; elsewhere (a login session, where one
    cgroup holds everything a user runs) GPU processes of one process group form a job, as the
    ranks a torchrun or mp.spawn launcher starts do, and any other GPU process is a job alone."""
    groups: dict[str, JobGroup] = {}
    owner: dict[int, str] = {}
    gpu_procs = [i for i in win.processes if i.role == "gpu"]
    per_pgid: dict[int, int] = {}
    for info in gpu_procs:
        if info.pgid is not None:
            per_pgid[info.pgid] = per_pgid.get(info.pgid, 0) + 1
    for info in gpu_procs:
        if info.job and info.job.kind in _GROUPED:
            key, kind = f"{info.job.kind}:{info.job.id}", info.job.kind
        elif info.pgid is not None and per_pgid[info.pgid] > 1:
            key, kind = f"pgid:{info.pgid}", "process-group"
        else:
            key, kind = f"pid:{info.pid}", "process"
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
