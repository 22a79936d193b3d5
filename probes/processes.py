"""GPU processes and their jobs: command line, user, cgroup, threads, affinity, I/O delay, NUMA."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .host import Host, ProbeError, attempt, parse_cpulist


@dataclass(slots=True)
class Job:
    """What a process belongs to, from its cgroup path."""

    kind: str  # slurm | kubernetes | systemd | user-session | docker | none
    id: str
    cgroup: str


@dataclass(slots=True)
class ThreadSample:
    tid: int
    name: str
    state: str  # R running, S sleeping, D uninterruptible (usually I/O), ...
    utime: int  # ticks
    stime: int
    processor: int | None
    blkio_ticks: int | None


@dataclass(slots=True)
class ProcessSample:
    """Counters of one process at one instant (threads included)."""

    pid: int
    alive: bool = True
    state: str | None = None
    utime: int | None = None
    stime: int | None = None
    blkio_ticks: int | None = None
    num_threads: int | None = None
    rss_kb: int | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None  # bytes this process caused to be written to storage (checkpoints)
    starttime: int | None = None  # ticks since boot; with the pid, tells a reused pid from the same process
    threads: list[ThreadSample] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    # `threads` holds only the threads that were busy at the last full reading (the agent reads a
    # GPU process's quiet threads on the worker cadence); False: every thread the process had.
    threads_partial: bool = False


@dataclass(slots=True)
class ProcessInfo:
    """What stays put about a process during a window."""

    pid: int
    role: str  # gpu (holds a GPU context) | worker (descendant of one, e.g. DataLoader workers)
    gpus: list[int] = field(default_factory=list)
    parent_gpu_pid: int | None = None
    ppid: int | None = None
    pgid: int | None = None  # process group: a launcher and the ranks it spawned share one
    starttime: int | None = None  # ticks since boot; with the pid, identifies the process
    comm: str | None = None
    cmdline: list[str] = field(default_factory=list)
    uid: int | None = None
    user: str | None = None
    job: Job | None = None
    cpus_allowed: list[int] = field(default_factory=list)
    mems_allowed: list[int] = field(default_factory=list)
    cgroup_cpus: list[int] | None = None
    thread_cpus: dict[str, list[int]] = field(default_factory=dict)  # tid -> affinity, where it differs
    numa_pages_kb: dict[str, int] = field(default_factory=dict)  # node -> resident kB
    open_files: list[str] = field(default_factory=list)  # regular files it holds open (first 64)
    # On a GPU process whose descendants reached MAX_WORKERS: the cap; the workers past it are not
    # followed, and a report should say so.
    worker_cap: int | None = None
    missing: dict[str, str] = field(default_factory=dict)


def parse_stat(text: str, where: str) -> tuple[str, list[str]]:
    """Split /proc/PID/stat into (comm, fields from state on); comm may hold spaces and ')'."""
    lpar, rpar = text.find("("), text.rfind(")")
    if lpar < 0 or rpar < lpar:
        raise ProbeError(f"{where}: not a stat line")
    rest = text[rpar + 1:].split()
    if len(rest) < 20:
        raise ProbeError(f"{where}: {len(rest) + 2} fields, expected >= 22")
    # Every field after the state is a number; checking here keeps `_field` from raising later.
    # One isdigit over the joined fields answers for the usual all-positive line (a generator over
    # 50 fields was half of parsing each of a sample's ~100 stat files).
    bad = None if "".join(rest[1:]).isdigit() else next((x for x in rest[1:] if not x.lstrip("-").isdigit()), None)
    if bad is not None:
        raise ProbeError(f"{where}: expected integers after the state, found {bad[:20]!r}")
    return text[lpar + 1:rpar], rest


def _field(rest: list[str], n: int) -> int | None:
    """Field `n` of stat (1-based as in proc(5)); None if the kernel is too old to have it."""
    i = n - 3
    return int(rest[i]) if i < len(rest) else None


def parse_status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def parse_cgroup(text: str) -> str:
    """The cgroup path that names the process's job.

    On a pure cgroup v2 node that is the "0::/..." path. On a hybrid node the "0::" line is only
    systemd's controller-less tree (a Slurm cgroup/v1 step reads "0::/system.slice/slurmd.service"
    there), so a v1 controller path below the root wins: cpuset's first, else the first other one.
    """
    v2 = None
    v1: list[tuple[list[str], str]] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        else:
            v1.append((parts[1].split(","), parts[2]))
    placed = [(ctrl, path) for ctrl, path in v1 if path != "/"]
    controllers = [(ctrl, path) for ctrl, path in placed if not ctrl[0].startswith("name=")]
    for ctrl, path in controllers:
        if "cpuset" in ctrl:
            return path
    if controllers:
        return controllers[0][1]
    if v2 is not None:
        return v2
    if placed:
        return placed[0][1]  # name=systemd on a legacy v1 node
    if not v1:
        raise ProbeError("cgroup: no hierarchy line")
    return v1[0][1]


def job_of(cgroup: str) -> Job:
    """Name the job a cgroup path belongs to (Slurm job, Kubernetes pod, systemd unit...)."""
    m = re.search(r"/job_(\d+)(?:/step_([\w.]+))?", cgroup)
    if m:
        return Job("slurm", m.group(1) + (f".{m.group(2)}" if m.group(2) else ""), cgroup)
    m = re.search(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})", cgroup)
    if m:
        return Job("kubernetes", m.group(1).replace("_", "-"), cgroup)
    m = re.search(r"docker[-/]([0-9a-f]{12,64})", cgroup)
    if m:
        return Job("docker", m.group(1)[:12], cgroup)
    m = re.search(r"/(session-\w+\.scope)", cgroup)
    if m:
        return Job("user-session", m.group(1), cgroup)
    m = re.search(r"/([\w@.\-\\]+\.(?:service|scope))$", cgroup)
    if m:
        return Job("systemd", m.group(1), cgroup)
    return Job("none", cgroup or "/", cgroup)


def users(host: Host) -> dict[int, str]:
    """uid -> name from the node's /etc/passwd (the node's, not this process's NSS)."""
    out: dict[int, str] = {}
    try:
        text = host.read("/etc/passwd")
    except ProbeError:
        return out
    for line in text.splitlines():
        p = line.split(":")
        if len(p) >= 3 and p[2].isdigit():
            out[int(p[2])] = p[0]
    return out


def sample_process(host: Host, pid: int, threads: bool = True, page_kb: int = 4,
                   main_thread_only: bool = False, read: Callable[[str], str] | None = None,
                   only_tids: Iterable[int] | None = None) -> ProcessSample:
    """Counters of `pid` and (optionally) each of its threads; a gone process is `alive=False`.

    `page_kb` is the node's page size (4 on x86, 64 on some aarch64 GPU nodes such as GH200).
    `main_thread_only` (loader workers) keeps the main thread alone: that is the thread that reads
    and decodes in a DataLoader worker, the one whose state (D: waiting on I/O) the rules use. A
    single-threaded process's stat is its thread's, so it costs no read at all. `read` replaces
    `host.read` for the per-process files (the sampler's held descriptors). `only_tids` reads those
    threads alone, without listing the process's threads (the sampler's threads that were busy at
    the last full reading).
    """
    read = read or host.read
    s = ProcessSample(pid=pid)
    d = f"/proc/{pid}"
    try:
        comm, rest = parse_stat(read(f"{d}/stat"), f"{d}/stat")
    except ProbeError as exc:
        s.alive = False
        s.missing["*"] = exc.reason
        return s
    s.state = rest[0]
    s.utime, s.stime = _field(rest, 14), _field(rest, 15)
    s.num_threads = _field(rest, 20)
    s.blkio_ticks = _field(rest, 42)
    s.starttime = _field(rest, 22)
    rss_pages = _field(rest, 24)
    s.rss_kb = rss_pages * page_kb if rss_pages is not None else None
    io = attempt(s.missing, "io", lambda: parse_status(read(f"{d}/io")))
    for key in ("read_bytes", "write_bytes"):
        if io and key in io:
            if io[key].isdigit():
                setattr(s, key, int(io[key]))
            else:
                s.missing["io"] = f"{d}/io: {key} {io[key][:20]!r} is not a number"
    if threads and main_thread_only:
        if s.num_threads == 1:
            s.threads.append(ThreadSample(pid, comm, rest[0], s.utime or 0, s.stime or 0, _field(rest, 39),
                                          s.blkio_ticks))
        else:
            p = f"{d}/task/{pid}/stat"
            try:
                name, r = parse_stat(read(p), p)
                s.threads.append(ThreadSample(pid, name, r[0], _field(r, 14) or 0, _field(r, 15) or 0,
                                              _field(r, 39), _field(r, 42)))
            except ProbeError as exc:
                s.missing["threads"] = exc.reason
    elif threads:
        s.threads_partial = only_tids is not None
        tids = [str(t) for t in only_tids] if only_tids is not None else \
            attempt(s.missing, "threads", lambda: host.listdir(f"{d}/task")) or []
        for tid_s in tids:
            p = f"{d}/task/{tid_s}/stat"
            try:
                name, r = parse_stat(read(p), p)
            except ProbeError:
                continue  # the thread exited between listdir and read: normal churn
            s.threads.append(ThreadSample(int(tid_s), name, r[0], _field(r, 14) or 0, _field(r, 15) or 0,
                                          _field(r, 39), _field(r, 42)))
    return s


def children(host: Host, pid: int) -> list[int]:
    """Direct children through /proc/PID/task/*/children (CONFIG_PROC_CHILDREN)."""
    out: list[int] = []
    try:
        tids = host.listdir(f"/proc/{pid}/task")
    except ProbeError:
        return out
    for tid in tids:
        try:
            out.extend(int(x) for x in host.read(f"/proc/{pid}/task/{tid}/children").split())
        except (ProbeError, ValueError):
            continue
    return out


# Loader workers followed under one GPU process; past it a job's workers are left out, and the GPU
# process's `worker_cap` says so.
MAX_WORKERS = 256


def descendants(host: Host, pid: int, limit: int = MAX_WORKERS) -> list[int]:
    """Descendants of `pid`, at most `limit` of them."""
    return descendants_capped(host, pid, limit)[0]


def descendants_capped(host: Host, pid: int, limit: int = MAX_WORKERS) -> tuple[list[int], bool]:
    """Descendants of `pid` (at most `limit`) and whether more were left out, from the children files."""
    return walk_descendants(pid, lambda p: children(host, p), limit)


def walk_descendants(pid: int, children_of: Callable[[int], Iterable[int]], limit: int) -> tuple[list[int], bool]:
    """Descendants of `pid` through `children_of`, at most `limit`, and whether more were left out."""
    out: list[int] = []
    seen = {pid}
    todo = list(children_of(pid))
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        if len(out) >= limit:
            return out, True
        seen.add(c)
        out.append(c)
        todo.extend(children_of(c))
    return out, False


def parse_numa_maps(text: str) -> dict[str, int]:
    """Resident kB per NUMA node summed over /proc/PID/numa_maps."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        page_kb = 4
        m = re.search(r"kernelpagesize_kB=(\d+)", line)
        if m:
            page_kb = int(m.group(1))
        for node, pages in re.findall(r"\bN(\d+)=(\d+)", line):
            out[node] = out.get(node, 0) + int(pages) * page_kb
    return out


def numa_placement(host: Host, pid: int, missing: dict[str, str]) -> dict[str, int]:
    """Resident kB per NUMA node from /proc/PID/numa_maps (costly on large processes: read once)."""
    p = f"/proc/{pid}/numa_maps"
    return attempt(missing, "numa_maps", lambda: parse_numa_maps(host.read(p))) or {}


def process_info(host: Host, pid: int, role: str, gpus: list[int], uid_names: dict[int, str],
                 parent_gpu_pid: int | None = None, numa: bool = True) -> ProcessInfo:
    """Static facts about a process; each unreadable one is recorded with its reason."""
    info = ProcessInfo(pid=pid, role=role, gpus=gpus, parent_gpu_pid=parent_gpu_pid)
    d = f"/proc/{pid}"
    m = info.missing
    st = attempt(m, "stat", lambda: parse_stat(host.read(f"{d}/stat"), f"{d}/stat"))
    if st is not None:
        info.comm, rest = st
        info.ppid, info.pgid, info.starttime = _field(rest, 4), _field(rest, 5), _field(rest, 22)
    raw = attempt(m, "cmdline", lambda: host.read_bytes(f"{d}/cmdline", 8192))
    if raw is not None:
        info.cmdline = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    status = attempt(m, "status", lambda: parse_status(host.read(f"{d}/status")))
    if status:
        uid = status.get("Uid", "").split()
        if uid and uid[0].isdigit():
            info.uid = int(uid[0])
            info.user = uid_names.get(info.uid)
        elif "Uid" in status:
            m["uid"] = f"{d}/status: Uid {status['Uid'][:20]!r} is not a number"
        info.cpus_allowed = attempt(m, "cpus_allowed", lambda: parse_cpulist(status.get("Cpus_allowed_list", ""),
                                                                              f"{d}/status")) or []
        info.mems_allowed = attempt(m, "mems_allowed", lambda: parse_cpulist(status.get("Mems_allowed_list", ""),
                                                                              f"{d}/status")) or []
    cg = attempt(m, "cgroup", lambda: parse_cgroup(host.read(f"{d}/cgroup")))
    if cg is not None:
        info.job = job_of(cg)
        eff = f"/sys/fs/cgroup{cg.rstrip('/')}/cpuset.cpus.effective"
        if host.exists(eff):
            info.cgroup_cpus = attempt(m, "cgroup_cpus", lambda: parse_cpulist(host.read(eff), eff))
    for tid in attempt(m, "threads", lambda: host.listdir(f"{d}/task")) or []:
        try:
            ts = parse_status(host.read(f"{d}/task/{tid}/status"))
            cpus = parse_cpulist(ts.get("Cpus_allowed_list", ""), f"{d}/task/{tid}/status")
        except ProbeError:
            continue  # thread gone
        if cpus != info.cpus_allowed:
            info.thread_cpus[tid] = cpus
    if numa:
        info.numa_pages_kb = numa_placement(host, pid, m)
    info.open_files = _open_files(host, pid, m)
    return info


def _open_files(host: Host, pid: int, m: dict[str, str]) -> list[str]:
    out: list[str] = []
    fds = attempt(m, "fds", lambda: host.listdir(f"/proc/{pid}/fd"))
    for fd in fds or []:
        try:
            target = host.readlink(f"/proc/{pid}/fd/{fd}")
        except ProbeError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/", "/sys/")) and target not in out:
            out.append(target)
            if len(out) >= 64:
                break
    return out
