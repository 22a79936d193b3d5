"""Pin a job's threads to the CPUs local to its GPU(s).

Targets: explicit PIDs, every process of a cgroup, or every process NVML sees on a GPU (with
their descendants, e.g. DataLoader workers). Each thread's target is the GPUs' local CPUs
intersected with the cgroup's cpuset.cpus.effective and with the thread's own current affinity
(so a narrower pin the job made itself is respected). Each thread is a knob that carries its
start time, so rollback never touches a process that reused the PID. Threads started after an
apply inherit the affinity of the thread that made them, and a re-apply pins any that did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodetune.probes.host import Host, ProbeError, format_cpulist, parse_cpulist
from nodetune.probes.processes import descendants, parse_cgroup, parse_stat, parse_status

from ..affinity import thread_ids, thread_starttime
from ..context import TuneContext
from ..contract import CHANGE, KEEP, SKIP, Change, Knob, TunerPlan
from ..errors import KnobFailed, KnobGone, TargetError
from ..gpu_control import GpuControlError
from ..locality import GpuPlace, gpu_places
from ..registry import driver, tuner

CGROUP_ROOT = "/sys/fs/cgroup"
PID_MAX_LIMIT = 4194304  # the kernel's PID_MAX_LIMIT on 64-bit: no pid is larger


@dataclass
class PinningParams:
    pids: list[int] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    gpu_jobs: bool = False  # every process holding a GPU context (through NVML)
    gpus: list[int] | None = None  # the GPUs the named pids/cgroups use, when NVML cannot tell
    cpus: str | None = None  # an explicit CPU list instead of the GPUs' local CPUs
    include_children: bool = True

    def check(self) -> list[str]:
        out = []
        if self.cpus is not None:
            try:
                if not parse_cpulist(self.cpus, "cpus"):
                    out.append("cpus: empty CPU list")
            except ProbeError as exc:
                out.append(f"cpus: {exc.reason}")
        out += [f"pids: {p} is not a process id" for p in self.pids if not 0 < p <= PID_MAX_LIMIT]
        out += [f"gpus: {g} is not a GPU index" for g in self.gpus or [] if not 0 <= g < 1024]
        for c in self.cgroups:
            if not c.startswith("/"):
                out.append(f"cgroups: {c!r} is not an absolute path")
            elif ".." in c.split("/"):
                out.append(f"cgroups: {c!r}: '..' is not allowed in a cgroup path (it would leave {CGROUP_ROOT})")
        return out


def affinity_knob(pid: int, tid: int, starttime: int, comm: str) -> Knob:
    who = f"pid {pid}" if tid == pid else f"pid {pid} tid {tid}"
    return Knob(id=f"affinity:{pid}:{tid}", kind="affinity", group="affinity", label=f"affinity {who} ({comm})",
                pid=pid, tid=tid, starttime=starttime)


def cgroup_dir(cg: str) -> str:
    """A cgroup named by its path ("/system.slice/x.service") or its sysfs directory."""
    cg = cg.rstrip("/") or "/"
    if cg == CGROUP_ROOT or cg.startswith(CGROUP_ROOT + "/"):
        return cg
    return CGROUP_ROOT + ("" if cg == "/" else cg)


def cgroup_pids(host: Host, cg: str) -> list[int]:
    """The processes of a cgroup; its directory must resolve inside the cgroup file system."""
    d = cgroup_dir(cg)
    try:
        real = host.resolve_inside(d)
    except ProbeError as exc:  # PathOutsideRoot: `..` or a symlink climbing out of the root
        raise TargetError(f"cgroup {cg}: {exc.reason}") from None
    if real != CGROUP_ROOT and not real.startswith(CGROUP_ROOT + "/"):
        raise TargetError(f"cgroup {cg}: {d} resolves to {real}, outside {CGROUP_ROOT}; refused")
    try:
        text = host.read(f"{real}/cgroup.procs")
    except ProbeError:
        raise TargetError(f"cgroup {cg}: no {d}/cgroup.procs (no such cgroup, or not cgroup v2)") from None
    words = text.split()
    if len(words) > PID_MAX_LIMIT or not all(w.isdigit() and len(w) <= 7 for w in words):
        raise TargetError(f"cgroup {cg}: {d}/cgroup.procs is not a list of process ids")
    return [int(w) for w in words]


def cgroup_cpus(host: Host, pid: int) -> list[int] | None:
    """CPUs the process's cgroup allows: the nearest cpuset up the tree; None if none is known.

    cgroup v2 keeps it in cpuset.cpus.effective; v1 in the cpuset hierarchy's cpuset.effective_cpus.
    """
    try:
        cg = parse_cgroup(host.read(f"/proc/{pid}/cgroup"))
    except ProbeError:
        return None
    parts = [p for p in cg.split("/") if p]
    if ".." in parts:  # the kernel never writes one: a damaged or crafted /proc/PID/cgroup
        return None
    while True:
        rel = "".join(f"/{p}" for p in parts)
        for f in (f"{CGROUP_ROOT}{rel}/cpuset.cpus.effective", f"{CGROUP_ROOT}/cpuset{rel}/cpuset.effective_cpus"):
            if host.exists(f):
                try:
                    cpus = parse_cpulist(host.read(f), f)
                except ProbeError:
                    return None
                return cpus or None  # empty: the cpuset controller is not enabled there
        if not parts:
            return None
        parts.pop()


def _online(host: Host) -> list[int]:
    """Online CPUs; empty when sysfs does not say; a list that is there but refused is an error."""
    p = "/sys/devices/system/cpu/online"
    if not host.exists(p):
        return []  # unknown: nothing to intersect with
    try:
        return parse_cpulist(host.read(p), p)
    except ProbeError as exc:
        raise TargetError(f"online CPUs unknown: {exc.reason}") from None


def _tgid(host: Host, pid: int) -> int:
    """The process (thread group) a pid belongs to; itself for a process or when unknown."""
    try:
        tgid = parse_status(host.read(f"/proc/{pid}/status")).get("Tgid", "")
    except ProbeError:
        return pid
    return int(tgid) if tgid.isdigit() else pid


def _comm(host: Host, pid: int) -> str:
    try:
        return parse_stat(host.read(f"/proc/{pid}/stat"), f"/proc/{pid}/stat")[0]
    except ProbeError:
        return "?"


@tuner
class PinningTuner:
    name = "pinning"
    params = PinningParams
    order = 50  # last: threads come and go meanwhile

    @staticmethod
    def command(params: dict[str, Any]) -> str | None:
        """`tune apply --pid ...` when the advice names only pids (and GPUs), else None."""
        if not params.get("pids") or not set(params) <= {"pids", "gpus"}:
            return None
        args = [f"--pid {int(p)}" for p in params["pids"]]
        args += [f"--gpu {int(g)}" for g in params.get("gpus") or []]
        return "nodetune tune apply " + " ".join(args)

    def _targets(self, ctx: TuneContext, p: PinningParams, notes: list[str]) -> dict[int, set[int]]:
        """pid -> GPUs it uses (empty: unknown)."""
        on_gpu: dict[int, set[int]] = {}
        why = ctx.gpus.available()
        if why is None:
            try:
                for i in range(ctx.gpus.count()):
                    for pid in ctx.gpus.process_pids(i):
                        on_gpu.setdefault(pid, set()).add(i)
            except GpuControlError as exc:
                notes.append(f"pinning: GPU processes unknown: {exc.reason}")
        targets: dict[int, set[int]] = {}
        if p.gpu_jobs:
            if why is not None:
                notes.append(f"pinning: gpu_jobs needs NVML: {why}")
            for pid, gpus in on_gpu.items():
                if ctx.host.exists(f"/proc/{pid}"):  # NVML lists PIDs of other namespaces too
                    targets[pid] = set(gpus)
        named = list(p.pids)
        for cg in p.cgroups:
            named += cgroup_pids(ctx.host, cg)
        for pid in named:
            if not ctx.host.exists(f"/proc/{pid}/stat"):
                raise TargetError(f"pid {pid}: no such process")
            pid = _tgid(ctx.host, pid)  # a thread id names its whole process
            targets[pid] = set(p.gpus) if p.gpus is not None else set(on_gpu.get(pid, set()))
        if p.gpu_jobs and not targets and why is None:
            notes.append("pinning: no process holds a GPU right now")
        return targets

    def plan(self, ctx: TuneContext, p: PinningParams) -> TunerPlan:
        out = TunerPlan()
        targets = self._targets(ctx, p, out.notes)
        online = _online(ctx.host)
        places: dict[int, GpuPlace] = {}
        if p.cpus is None and any(targets.values()):
            places = {g.index: g for g in gpu_places(ctx.host, ctx.gpus)}
        explicit = parse_cpulist(p.cpus, "cpus") if p.cpus is not None else None
        seen: set[int] = set()
        for pid in sorted(targets):
            gpus = sorted(targets[pid])
            procs = [pid] + (descendants(ctx.host, pid) if p.include_children else [])
            if explicit is not None:
                base, source = explicit, f"cpus {p.cpus}"
            else:
                for g in gpus:
                    if g not in places:
                        raise TargetError(f"GPU {g}: no such GPU on this node "
                                          f"(GPUs: {', '.join(map(str, sorted(places))) or 'none'})")
                if not gpus:
                    out.changes.append(self._whole(ctx, pid, SKIP, f"pid {pid}: no GPU known for it (NVML does "
                                                   "not list it); pass --gpu N or cpus"))
                    continue
                base = sorted({c for g in gpus for c in places[g].local_cpus})
                source = "local CPUs of " + ", ".join(f"GPU{g}" for g in gpus)
                if online and set(base) >= set(online) and all(places[g].numa_node is None for g in gpus):
                    out.changes.append(self._whole(
                        ctx, pid, KEEP, f"{source}: local_cpulist covers every CPU and numa_node is -1 "
                        f"(one NUMA node, e.g. a VM): pinning gains nothing"))
                    continue
            for proc in procs:
                if proc in seen:
                    continue
                seen.add(proc)
                out.changes += self._threads(ctx, proc, base, source, online)
        return out

    def _whole(self, ctx: TuneContext, pid: int, action: str, reason: str) -> Change:
        """One row standing for a whole process that will not be pinned."""
        try:
            start = thread_starttime(ctx.host, pid, pid)
            cur: str | None = format_cpulist(ctx.affinity.get(pid, pid))
        except (KnobGone, KnobFailed):
            start, cur = 0, None
        return Change(self.name, affinity_knob(pid, pid, start, _comm(ctx.host, pid)), cur, cur or "", action, reason)

    def _threads(self, ctx: TuneContext, pid: int, base: list[int], source: str, online: list[int]) -> list[Change]:
        allowed = set(base)
        cg = cgroup_cpus(ctx.host, pid)
        if cg is not None:
            allowed &= set(cg)
        if online:
            allowed &= set(online)
        comm = _comm(ctx.host, pid)
        rows = []
        for tid in thread_ids(ctx.host, pid):
            try:
                start = thread_starttime(ctx.host, pid, tid)
                current = ctx.affinity.get(pid, tid)
            except KnobGone:
                continue  # exited between listing and reading: nothing to pin
            except KnobFailed as exc:
                knob = affinity_knob(pid, tid, 0, comm)
                rows.append(Change(self.name, knob, None, format_cpulist(sorted(allowed)), SKIP, exc.reason))
                continue
            knob = affinity_knob(pid, tid, start, comm)
            target = sorted(allowed & set(current))
            if not target:
                cgs = f", cgroup allows {format_cpulist(cg)}" if cg is not None else ""
                rows.append(Change(self.name, knob, format_cpulist(current), format_cpulist(base), SKIP,
                                   f"no CPU of {source} ({format_cpulist(base)}) is allowed{cgs} and in its "
                                   f"current affinity {format_cpulist(current)}"))
                continue
            rows.append(Change(self.name, knob, format_cpulist(current), format_cpulist(target), CHANGE, source))
        return rows


@driver("affinity")
class AffinityDriver:
    """A thread's CPU affinity; the knob carries the thread's start time to detect PID reuse."""

    def __init__(self, ctx: TuneContext) -> None:
        self.host = ctx.host
        self.affinity = ctx.affinity

    @staticmethod
    def same(a: str, b: str) -> bool:
        """cpulists compare as sets ("0,1,2" is "0-2"); damaged journal values as text."""
        try:
            return parse_cpulist(a) == parse_cpulist(b)
        except ProbeError:
            return a == b

    def _same_thread(self, knob: Knob) -> tuple[int, int]:
        assert knob.pid is not None and knob.tid is not None
        start = thread_starttime(self.host, knob.pid, knob.tid)
        if knob.starttime is not None and start != knob.starttime:
            raise KnobGone(f"pid {knob.pid} tid {knob.tid} now belongs to another process (PID reused)")
        return knob.pid, knob.tid

    def read(self, knob: Knob) -> str:
        pid, tid = self._same_thread(knob)
        return format_cpulist(self.affinity.get(pid, tid))

    def write(self, knob: Knob, value: str) -> None:
        pid, tid = self._same_thread(knob)
        self.affinity.set(pid, tid, parse_cpulist(value, knob.label))

    def preflight(self, knob: Knob) -> str | None:
        return None  # only the kernel knows (CAP_SYS_NICE, cpusets); a failure rolls back
