"""The agent's state: the ring of samples the sampling thread owns, and one immutable `View` that
every reader (scrapes, sd_notify) takes by reference.

Writers build a new View with `dataclasses.replace` and swap the reference under a lock held for
that swap only; a reader never takes the lock, so a scrape cannot wait on a stuck sampler.
Everything here is bounded: the ring by its maxlen, jobs by retention and `max_jobs`, counters by
their label sets (probe names, GPU indices, Xid codes, verdict names).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from nodetune.diagnosis.findings import Report
from nodetune.probes.gpu import GpuSample
from nodetune.probes.node import Topology
from nodetune.probes.snapshot import Sample

if TYPE_CHECKING:  # the prefetch package loads only where autotune may start followers
    from nodetune.prefetch.pool import PrefetchTotals

EMPTY: Mapping[Any, Any] = MappingProxyType({})
# Upper bounds (seconds) of the sample-lateness histogram: how far past its slot a sample started.
LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def frozen(d: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class JobSeconds:
    """One job's seconds by verdict and lost GPU-seconds by (state, cause), as diagnoses saw it."""

    job: str  # the exported label: `job_label` of the diagnosis's job id
    kind: str
    gpus: tuple[int, ...]
    seconds: Mapping[str, float]
    last_seen: float  # monotonic
    lost: Mapping[tuple[str, str], float] = field(default_factory=lambda: EMPTY)


_INTERPRETERS = re.compile(r"^(python[\d.]*|pypy[\d.]*|torchrun|accelerate|deepspeed|env|bash|sh|srun|mpirun|"
                           r"uv|launch)$")


def job_label(job_id: str, kind: str, command: str | None) -> str:
    """The job's exported label: the scheduler's id where there is one; a bare process (whose id,
    `pid:N`, would make a new series every run) is named by its program, `program:train.py`."""
    if kind not in ("process", "process-group"):
        return job_id
    words = (command or "").split()
    name = ""
    for i, w in enumerate(words):
        base = w.rsplit("/", 1)[-1]
        if w == "-m" and i + 1 < len(words):
            name = words[i + 1]
            break
        if w.startswith("-") or "=" in w or w.isdigit() or _INTERPRETERS.match(base):  # options, their numbers
            continue
        name = base
        break
    return f"program:{name[:60]}" if name else f"{kind}:unnamed"


@dataclass(frozen=True)
class TuningSummary:
    """What the tuning journal says, read-only: changes by state, active changes by knob group."""

    path: str
    exists: bool
    by_state: Mapping[str, int] = field(default_factory=lambda: EMPTY)
    active_by_group: Mapping[str, int] = field(default_factory=lambda: EMPTY)
    error: str | None = None


@dataclass(frozen=True)
class View:
    """Everything a scrape shows, at one instant. Never mutated: replaced whole."""

    version: int = 0
    start_wall: float = field(default_factory=time.time)
    interval_s: float = 1.0
    topo: Topology | None = None
    sample: Sample | None = None  # the latest successful sample
    sample_wall: float = 0.0  # time.time() when it finished
    sample_duration_s: float = 0.0
    sample_cpu_s: float = 0.0
    samples_total: int = 0
    overruns_total: int = 0  # sample slots skipped because a sample ran past the next one
    lateness_counts: tuple[int, ...] = (0,) * (len(LATENESS_BUCKETS) + 1)  # per bucket, last is +Inf
    lateness_sum_s: float = 0.0
    sample_errors: Mapping[str, int] = field(default_factory=lambda: EMPTY)  # probe -> samples whose probe raised
    # probe -> values missing in the latest sample
    missing_fields: Mapping[str, int] = field(default_factory=lambda: EMPTY)
    # per GPU, the latest sample with the slow counters
    gpu_detail: Mapping[int, GpuSample] = field(default_factory=lambda: EMPTY)
    gpu_states: Mapping[int, str] = field(default_factory=lambda: EMPTY)  # ok | lost | error
    ring_len: int = 0
    followed: int = 0
    workers_capped: int = 0  # GPU processes whose loader workers reached the cap (some not followed)
    report: Report | None = None
    report_wall: float = 0.0
    diagnosis_duration_s: float = 0.0
    diagnoses_total: int = 0
    diagnosis_errors_total: int = 0
    diagnoses_skipped_total: int = 0
    jobs: tuple[JobSeconds, ...] = ()
    gpu_verdict_seconds: Mapping[tuple[str, str], float] = field(default_factory=lambda: EMPTY)  # (gpu, verdict)
    gpu_lost_seconds: Mapping[tuple[str, str, str], float] = field(default_factory=lambda: EMPTY)  # (gpu, state, cause)
    xid: Mapping[tuple[str, str], int] = field(default_factory=lambda: EMPTY)  # (gpu, code) -> events
    kmsg_up: bool = False
    kmsg_reason: str | None = "not started"
    hotplug_up: bool = False
    hotplug_reason: str | None = "not started"
    # (subsystem, action) -> events
    hotplug_events: Mapping[tuple[str, str], int] = field(default_factory=lambda: EMPTY)
    topology_reprobes_total: int = 0
    config_reloads: Mapping[str, int] = field(default_factory=lambda: EMPTY)  # ok | refused -> count
    config_ok: bool = True
    notify_errors_total: int = 0
    http_refused: Mapping[str, int] = field(default_factory=lambda: EMPTY)  # reason -> clients turned away
    tuning: TuningSummary | None = None
    history_up: bool = False
    history_reason: str | None = "not started"
    history_writes_total: int = 0
    history_write_errors_total: int = 0
    history_paused: bool = False
    history_bytes: int = 0
    autotune_changes: Mapping[tuple[str, str], int] = field(default_factory=lambda: EMPTY)  # (tuner, knob) -> n
    autotune_failures_total: int = 0
    autotune_rate_limited_total: int = 0
    prefetch: PrefetchTotals | None = None  # the autotune's followers, when it may start them


class State:
    """The ring (sampling thread only) and the current View (everyone)."""

    def __init__(self, ring_max: int) -> None:
        self.ring: deque[Sample] = deque(maxlen=max(2, ring_max))
        self._view = View()
        self._lock = threading.Lock()

    @property
    def view(self) -> View:
        return self._view  # one reference read: atomic, lock-free

    def update(self, **changes: Any) -> View:
        with self._lock:
            v = replace(self._view, version=self._view.version + 1, **changes)
            self._view = v
        return v

    def count(self, field_name: str, key: Any, n: int = 1, **changes: Any) -> View:
        """Add `n` to one counter of a Mapping field (and set other fields) in one swap."""
        with self._lock:
            d = dict(getattr(self._view, field_name))
            d[key] = d.get(key, 0) + n
            fields: dict[str, Any] = {field_name: MappingProxyType(d), **changes}
            v = replace(self._view, version=self._view.version + 1, **fields)
            self._view = v
        return v

    def resize_ring(self, ring_max: int) -> None:
        """A reload that changed the window: keep the newest samples that still fit."""
        if self.ring.maxlen != max(2, ring_max):
            self.ring = deque(self.ring, maxlen=max(2, ring_max))


def lateness_bucket(late_s: float) -> int:
    for i, ub in enumerate(LATENESS_BUCKETS):
        if late_s <= ub:
            return i
    return len(LATENESS_BUCKETS)


class JobBook:
    """Seconds per job and verdict, accumulated over diagnoses; ended jobs expire.

    Only the diagnosis thread writes it; it hands the State a tuple of frozen rows.
    """

    def __init__(self, retention_s: float, max_jobs: int) -> None:
        self.retention_s = retention_s
        self.max_jobs = max_jobs
        self._jobs: dict[str, JobSeconds] = {}
        self.expired = 0

    def add(self, report: Report, seconds: float, now: float) -> None:
        from nodetune.agent.lost_hours import add_into, lost_seconds

        gpus = {g.index: g for g in report.gpus}
        for j in report.jobs:
            span = j.within(report.window_s, now - seconds, now)
            if span is None:
                continue  # gone before this interval: its seconds were counted already
            secs_here = span[1] - span[0]
            label = job_label(j.id, j.kind, j.command)
            old = self._jobs.get(label)
            secs = dict(old.seconds) if old else {}
            secs[j.verdict] = secs.get(j.verdict, 0.0) + secs_here
            lost = dict(old.lost) if old else {}
            for i in j.gpus:
                if i in gpus:
                    add_into(lost, lost_seconds(gpus[i], secs_here))
            held = tuple(sorted(set(j.gpus) | (set(old.gpus) if old and old.last_seen == now else set())))
            self._jobs[label] = JobSeconds(label, j.kind, held, MappingProxyType(secs), now,
                                           MappingProxyType(lost))
        self.expire(now)

    def expire(self, now: float) -> None:
        for k in [k for k, j in self._jobs.items() if now - j.last_seen > self.retention_s]:
            del self._jobs[k]
            self.expired += 1
        if len(self._jobs) > self.max_jobs:  # a node churning through jobs: keep the freshest
            for k, _ in sorted(self._jobs.items(), key=lambda kv: kv[1].last_seen)[:len(self._jobs) - self.max_jobs]:
                del self._jobs[k]
                self.expired += 1

    def rows(self) -> tuple[JobSeconds, ...]:
        return tuple(sorted(self._jobs.values(), key=lambda j: j.job))
