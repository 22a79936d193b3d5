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
    groups: dict[str, JobGroup] = {}
    owner: dict[int, str] = {}
    for info in win.processes:
        if info.role != "gpu":
            continue
        if info.job and info.job.kind in _GROUPED:
            key, kind = f"{info.job.kind}:{info.job.id}", info.job.kind
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
