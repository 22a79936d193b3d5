"""What diagnosis produces: findings with their evidence and advice, and the per-GPU/per-job report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class Advice:
    """Human text; where the node can act, the tuner and its parameters."""

    text: str
    tuner: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    kind: str
    severity: str  # info | warning | critical
    confidence: float  # 0..1
    summary: str
    cause: str | None = None
    gpus: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    job: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    advice: list[Advice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class StackEvidence:
    """py-spy's view of a job's main thread during the window."""

    pid: int
    ok: bool
    reason: str | None = None
    samples: int = 0
    main_samples: int = 0
    data_loading_share: float | None = None
    top_stack: list[str] = field(default_factory=list)
    top_share: float | None = None
    duration_s: float = 0.0  # how long py-spy sampled (the window's last seconds)
    categories: dict[str, float] = field(default_factory=dict)  # category -> share of main-thread samples
    category_frames: dict[str, str] = field(default_factory=dict)  # category -> its commonest deciding frame


@dataclass
class CauseShare:
    """One cause of a GPU's idle time: its share of the window and what shows it."""

    cause: str  # data_loading | checkpoint | startup | evaluation | communication | gc | sleeping | host_other
    share: float  # of the window's time (not of the idle time)
    seconds: float
    basis: list[str] = field(default_factory=list)  # counters | stacks | process_age
    detail: str = ""  # "torch.save (torch/serialization.py), 2.9 GiB written"


@dataclass
class IdleAttribution:
    """A GPU's idle time split by what its job's host side was doing meanwhile."""

    gpu: int
    idle_share: float  # busy-time weighted: 1 - utilization, averaged over the window
    idle_s: float
    causes: list[CauseShare] = field(default_factory=list)  # largest first
    unexplained_share: float = 0.0
    stack_seconds: float | None = None  # py-spy's coverage; None without usable stacks
    notes: list[str] = field(default_factory=list)
    text: str = ""  # "idle 86%: 71% writing a checkpoint (torch.save, 2.9 GiB written), 15% unexplained"

    def share(self, cause: str) -> float:
        return next((c.share for c in self.causes if c.cause == cause), 0.0)

    def top(self) -> CauseShare | None:
        return self.causes[0] if self.causes else None


@dataclass
class Phase:
    """A stretch of the window with one level of GPU activity."""

    start_s: float  # from the window's first sample
    end_s: float
    kind: str  # startup | steady | stall | busy | idle | ended
    activity_pct: float  # mean SM activity (GPM) or utilization
    note: str = ""


@dataclass
class GpuVerdict:
    index: int
    name: str | None
    verdict: str
    cause: str | None
    healthy: bool
    confidence: float
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    attribution: IdleAttribution | None = None
    phases: list[Phase] = field(default_factory=list)
    diagnosed_s: tuple[float, float] | None = None  # the steady part the verdict is from (None: whole window)
    strip: str = ""  # activity over time, one character a sample
    borderline: list[str] = field(default_factory=list)  # verdicts a small threshold change would give instead
    leans: str | None = None


@dataclass
class JobReport:
    id: str
    kind: str
    user: str | None
    command: str
    pids: list[int]
    gpus: list[int]
    verdict: str
    cause: str | None
    healthy: bool
    findings: list[str] = field(default_factory=list)
    stacks: list[StackEvidence] = field(default_factory=list)
    # Seconds from the window's start to the job's first and last sample, where the job took its
    # turn on a GPU with others (its verdict is then over this span alone); None: the whole window.
    span_s: list[float] | None = None

    def within(self, window_s: float, t0: float, t1: float) -> tuple[float, float] | None:
        """The part of [t0, t1] (times of the window's clock, t1 its end) this job was there;
        None where it was gone all of it."""
        if self.span_s is None:
            return t0, t1
        w0 = t1 - window_s
        a, b = max(t0, w0 + self.span_s[0]), min(t1, w0 + self.span_s[1])
        return (a, b) if b > a else None


@dataclass
class Report:
    version: int
    source: str
    taken_at: str
    window_s: float
    elapsed_s: float
    hostname: str | None
    gpu_backend: str
    gpus: list[GpuVerdict] = field(default_factory=list)
    jobs: list[JobReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    healthy: bool | None = None  # every job healthy and no warning or critical finding; None: no jobs

    def worst_severity(self) -> str | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: SEVERITY_ORDER[s])
