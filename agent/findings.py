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

    def worst_severity(self) -> str | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: SEVERITY_ORDER[s])
