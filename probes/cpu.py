"""Per-CPU time counters from /proc/stat and the load average."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .host import Host, ProbeError, attempt

# /proc/stat cpu line columns, in kernel order (see proc(5)).
_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(slots=True)
class CpuTimes:
    """Cumulative ticks (USER_HZ) of one CPU, or of all CPUs when cpu is -1."""

    cpu: int
    user: int = 0
    nice: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0

    @property
    def total(self) -> int:
        return self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal

    @property
    def busy(self) -> int:
        return self.user + self.nice + self.system + self.irq + self.softirq


@dataclass(slots=True)
class CpuSample:
    total: CpuTimes | None = None
    per_cpu: list[CpuTimes] = field(default_factory=list)
    procs_running: int | None = None
    procs_blocked: int | None = None
    loadavg: list[float] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def parse_proc_stat(text: str, per_cpu: bool = True) -> CpuSample:
    """Parse /proc/stat; guest columns are ignored (they are already counted in user).

    Only the cpu lines and procs_running/procs_blocked are split: the intr and softirq lines (thousands
    of counters on a many-CPU node) are skipped by their first characters. Without `per_cpu` only the
    all-CPU line is read: the per-CPU lines (224 on a large node) are what a parse costs, and a
    window's per-CPU rates need them at its two ends only.
    """
    s = CpuSample()
    per = s.per_cpu
    lines = text.splitlines()
    if not per_cpu:
        lines = [ln for ln in lines if ln.startswith(("cpu ", "procs_"))]
    for line in lines:
        if line.startswith("cpu"):
            parts = line.split(None, 9)
            try:
                # map: 224 lines of eight ints are most of the parse; a short line (old kernel) pads
                vals: Iterable[int] = map(int, parts[1:9]) if len(parts) > len(_COLUMNS) else \
                    [int(v) for v in parts[1:]] + [0] * (len(_COLUMNS) + 1 - len(parts))
                if parts[0] == "cpu":
                    s.total = CpuTimes(-1, *vals)
                else:
                    per.append(CpuTimes(int(parts[0][3:]), *vals))
            except ValueError:
                raise ProbeError(f"/proc/stat: bad line {line[:40]!r}") from None
        elif line.startswith("procs_"):
            key, _, val = line.partition(" ")
            if key in ("procs_running", "procs_blocked"):
                try:
                    setattr(s, key, int(val))
                except ValueError:
                    raise ProbeError(f"/proc/stat: bad line {line[:40]!r}") from None
    if s.total is None:
        raise ProbeError("/proc/stat: no cpu line")
    return s


def probe_cpu(host: Host, per_cpu: bool = True) -> CpuSample:
    """The node's CPU times (each CPU's with `per_cpu`), run queue and load average."""
    missing: dict[str, str] = {}
    s = attempt(missing, "stat", lambda: parse_proc_stat(host.read("/proc/stat"), per_cpu)) or CpuSample()
    s.missing.update(missing)
    load = attempt(s.missing, "loadavg", lambda: host.read("/proc/loadavg").split()[:3])
    if load:
        try:
            s.loadavg = [float(x) for x in load]
        except ValueError:
            s.missing["loadavg"] = f"/proc/loadavg: bad content {' '.join(load)[:40]!r}"
    return s
