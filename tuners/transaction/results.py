"""What apply, rollback, verify and status return: typed rows that round-trip JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..contract import Knob

# Rollback outcomes that leave a change in place.
UNDONE = ("failed", "drifted", "held", "lost")


@dataclass
class Applied:
    seq: int
    tuner: str
    knob: Knob
    original: str
    target: str
    actual: str


@dataclass
class ApplyResult:
    txn: str
    profile: str
    journal: str
    applied: list[Applied] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # already at target when apply reached them
    gone: list[str] = field(default_factory=list)  # threads that exited before their write
    warnings: list[str] = field(default_factory=list)


@dataclass
class RestoreRow:
    txn: str
    seq: int
    knob: Knob
    original: str
    outcome: str  # restored | already | not_restored | failed | drifted | held | lost | abandoned
    reason: str = ""


@dataclass
class RollbackResult:
    journal: str
    rows: list[RestoreRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    journal_error: str | None = None  # restores done but not recorded (a full disk)

    @property
    def failed(self) -> list[RestoreRow]:
        """Changes still in place: not restorable now, changed by someone else, or lost to damage."""
        return [r for r in self.rows if r.outcome in UNDONE]


@dataclass
class VerifyRow:
    txn: str
    seq: int
    tuner: str
    knob: Knob
    original: str
    set_value: str
    live: str | None
    status: str  # ok | drifted | restored | gone | absent | unreadable | unknown (lost to journal damage)
    note: str = ""
    active: bool = True  # False: rolled back; the row shows whether the original is still there


@dataclass
class VerifyReport:
    journal: str
    rows: list[VerifyRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when what nodetune holds is no longer what it set, or the journal cannot say."""
        bad = any(r.status in ("drifted", "absent", "unknown") or (r.active and r.status == "restored")
                  for r in self.rows)
        return 1 if bad else 0


@dataclass
class TxnSummary:
    txn: str
    started: float
    profile: str | None
    state: str
    changes: int
    active: int  # still set, lost ones included
    ended: float | None = None


@dataclass
class ActiveRow:
    txn: str
    seq: int
    tuner: str
    knob: Knob
    original: str
    set_value: str
    since: float
    state: str  # applied | intent (the apply died before confirming it) | unknown (lost to damage)


@dataclass
class StatusReport:
    journal: str
    txns: list[TxnSummary] = field(default_factory=list)
    active: list[ActiveRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unknown: int = 0  # changes the journal lost to damage: they may still be set

    @property
    def exit_code(self) -> int:
        return 1 if self.unknown else 0
