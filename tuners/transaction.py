"""Apply, verify and roll back planned changes as one journaled transaction.

Apply, for each change: read the knob again (the plan may be stale; a knob already at target is
left alone and not journaled), append the original to the journal and fsync, write, read back,
append `applied`. Any failure rolls back this transaction's changes in reverse order, the failing
one included (its write may have landed), and names the knob. Rollback restores every change the
journal has not marked rolled back, newest first, across transactions and processes: an intent
whose `applied` record never got written (the crash window) is restored too, since writing an
original value over itself is harmless. Each restore is recorded after the write, so a rollback
killed half-way is finished by running it again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import NoReturn

from . import crashpoints
from .base import (
    CHANGE,
    UNREADABLE,
    Change,
    Knob,
    KnobAbsent,
    KnobFailed,
    KnobGone,
    TransactionFailed,
    TuneContext,
    TuneError,
)
from .journal import (
    ABORTED,
    APPLIED,
    BEGIN,
    COMMIT,
    GONE,
    INTENT,
    ROLLED_BACK,
    Entry,
    Journal,
    JournalState,
    Record,
    Txn,
    now,
)
from .knobs import Driver, drivers_for, same_value


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
    outcome: str  # restored | already | not_restored | failed
    reason: str = ""


@dataclass
class RollbackResult:
    journal: str
    rows: list[RestoreRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[RestoreRow]:
        return [r for r in self.rows if r.outcome == "failed"]


@dataclass
class VerifyRow:
    txn: str
    seq: int
    tuner: str
    knob: Knob
    original: str
    set_value: str
    live: str | None
    status: str  # ok | drifted | restored | gone | absent | unreadable
    note: str = ""
    active: bool = True  # False: rolled back; the row shows whether the original is still there


@dataclass
class VerifyReport:
    journal: str
    rows: list[VerifyRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class TxnSummary:
    txn: str
    started: float
    profile: str | None
    state: str
    changes: int
    active: int
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
    state: str  # applied | intent (the apply died before confirming it)


@dataclass
class StatusReport:
    journal: str
    txns: list[TxnSummary] = field(default_factory=list)
    active: list[ActiveRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _shortfall(knob: Knob, target: str, actual: str) -> str | None:
    """A warning when the kernel granted less than asked of a `granted` knob, else None."""
    try:
        want, got = int(target), int(actual)
    except ValueError:
        return None
    if got < want:
        return (f"{knob.label}: asked for {want}, the kernel granted {got} (short by {want - got}; "
                f"memory too fragmented? reserve at boot or after dropping caches)")
    return None


class Engine:
    """Runs transactions for one node (ctx) against one journal."""

    def __init__(self, ctx: TuneContext, journal: Journal) -> None:
        self.ctx = ctx
        self.journal = journal
        self.drivers: dict[str, Driver] = drivers_for(ctx)

    def _driver(self, knob: Knob) -> Driver:
        drv = self.drivers.get(knob.kind)
        if drv is None:
            raise KnobFailed(f"{knob.label}: unknown knob kind {knob.kind!r} (journal from a newer nodetune?)")
        return drv

    # -- apply ----------------------------------------------------------------------------------
    def preflight(self, changes: list[Change]) -> list[str]:
        """Reasons the changes cannot be made, found before anything is touched."""
        out = []
        for c in changes:
            if c.action != CHANGE:
                continue
            why = self._driver(c.knob).preflight(c.knob)
            if why:
                out.append(why)
        return out

    def apply(self, changes: list[Change], profile: str) -> ApplyResult:
        """Apply the `change` rows of a plan; raise TransactionFailed after rolling back."""
        todo = [c for c in changes if c.action == CHANGE]
        if not todo:
            return ApplyResult(txn="", profile=profile, journal=self.journal.path)  # nothing to journal
        problems = self.preflight(todo)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise KnobFailed(f"{problems[0]}{more}; nothing changed")
        txn = uuid.uuid4().hex[:12]
        res = ApplyResult(txn=txn, profile=profile, journal=self.journal.path)
        with self.journal:
            self.journal.append(Record(txn=txn, state=BEGIN, t=now(), profile=profile))
            crashpoints.crash_if("after_begin", 1)
            done: list[Entry] = []
            seq = 0
            for c in todo:
                pending: list[Entry] = []  # the intent journaled for this change, until it is applied
                try:
                    entry = self._apply_one(txn, seq, c, res, pending)
                except TuneError as exc:
                    self._abort(txn, done, pending, c, exc)
                if pending:
                    seq += 1  # a journaled change keeps its number, even if its thread was gone
                if entry is not None:
                    done.append(entry)
            crashpoints.crash_if("before_commit", 1)
            self.journal.append(Record(txn=txn, state=COMMIT, t=now()))
        return res

    def _apply_one(self, txn: str, seq: int, c: Change, res: ApplyResult, pending: list[Entry]) -> Entry | None:
        knob = c.knob
        drv = self._driver(knob)
        try:
            original = drv.read(knob) if knob.readable else UNREADABLE
        except KnobGone as exc:
            res.gone.append(f"{knob.label}: {exc.reason}")
            return None
        except KnobAbsent as exc:
            raise KnobFailed(exc.reason) from None
        if knob.readable and same_value(knob, original, c.target):
            res.unchanged.append(knob.label)
            return None
        self.journal.append(Record(txn=txn, state=INTENT, t=now(), seq=seq, knob=knob, tuner=c.tuner,
                                   original=original, target=c.target))
        t = now()
        pending.append(Entry(txn, seq, knob, c.tuner, original, c.target, INTENT, t, t, seq))
        crashpoints.crash_if("after_intent", seq + 1)
        try:
            drv.write(knob, c.target)
        except KnobGone as exc:
            self.journal.append(Record(txn=txn, state=GONE, t=now(), seq=seq, note=exc.reason))
            res.gone.append(f"{knob.label}: {exc.reason}")
            return None
        crashpoints.crash_if("after_write", seq + 1)
        actual = drv.read(knob) if knob.readable else c.target
        if not same_value(knob, actual, c.target):
            short = _shortfall(knob, c.target, actual) if knob.granted else None
            if short is None:
                raise KnobFailed(f"wrote {c.target}, the kernel reads back {actual}")
            res.warnings.append(short)
        self.journal.append(Record(txn=txn, state=APPLIED, t=now(), seq=seq, actual=actual), sync=False)
        crashpoints.crash_if("after_applied", seq + 1)
        res.applied.append(Applied(seq, c.tuner, knob, original, c.target, actual))
        return Entry(txn, seq, knob, c.tuner, original, c.target, APPLIED, t, now(), seq, actual)

    def _abort(self, txn: str, done: list[Entry], failing: list[Entry], change: Change, exc: TuneError) -> NoReturn:
        """Undo this transaction's changes, newest first, and raise TransactionFailed.

        The failing knob is restored too when its intent was journaled: its write may have landed.
        """
        rolled: list[str] = []
        not_restored: list[str] = []
        for e in reversed(done + failing):
            row = self._restore(e)
            if row.outcome == "failed":
                not_restored.append(f"{e.knob.label} ({row.reason})")
            elif row.outcome == "not_restored":
                pass  # its thread or device is gone: nothing left to restore
            elif e in done or row.outcome == "restored":
                rolled.append(e.knob.label)
        self.journal.append(Record(txn=txn, state=ABORTED, t=now(), note=f"{change.knob.label}: {exc.reason}"))
        undone = f"rolled back {len(rolled)} change(s)"
        if not_restored:
            undone += f"; could not restore: {', '.join(not_restored)} (run `nodetune tune rollback`)"
        else:
            undone += "; node unchanged"
        raise TransactionFailed(f"apply failed at {change.knob.label}: {exc.reason}; {undone}",
                                change.knob.label, rolled, not_restored)

    # -- rollback -------------------------------------------------------------------------------
    def _restore(self, e: Entry) -> RestoreRow:
        """Put one knob back to its original value and record it; idempotent."""
        knob = e.knob
        row = RestoreRow(e.txn, e.seq, knob, e.original, "restored")

        def done(outcome: str, reason: str = "") -> RestoreRow:
            row.outcome, row.reason = outcome, reason
            note = reason or None
            self.journal.append(Record(txn=e.txn, state=ROLLED_BACK, t=now(), seq=e.seq, note=note), sync=False)
            crashpoints.crash_if("after_rolled_back", e.seq + 1)
            return row

        try:
            drv = self._driver(knob)
            live = drv.read(knob) if knob.readable else None
            if live is not None and same_value(knob, live, e.original):
                return done("already")
            drv.write(knob, e.original)
            crashpoints.crash_if("after_restore", e.seq + 1)
            if knob.readable:
                back = drv.read(knob)
                if not same_value(knob, back, e.original):
                    short = _shortfall(knob, e.original, back) if knob.granted else None
                    if short is None:
                        row.outcome, row.reason = "failed", f"wrote {e.original}, the kernel reads back {back}"
                        return row
                    return done("restored", short)
            return done("restored")
        except (KnobGone, KnobAbsent) as exc:
            return done("not_restored", exc.reason)
        except KnobFailed as exc:
            row.outcome, row.reason = "failed", exc.reason  # stays active: a later rollback retries
            return row

    def rollback(self, txn: str | None = None) -> RollbackResult:
        """Restore every active change (or one transaction's), newest first."""
        with self.journal:
            state = self.journal.load()
            res = RollbackResult(journal=self.journal.path, warnings=list(state.warnings))
            active = state.active()
            if txn is not None:
                t = state.txn(txn)
                if t is None:
                    raise TuneError(f"transaction {txn!r}: not in {self.journal.path} (see `nodetune tune status`)")
                mine = [e for e in active if e.txn == t.txn]
                later = [e for e in active if e.txn != t.txn and e.order > min((m.order for m in mine), default=0)
                         and any(e.knob.id == m.knob.id for m in mine)]
                if later:
                    raise TuneError(f"{later[0].knob.label} was changed again by transaction {later[0].txn}; "
                                    f"roll that back first (or run rollback without --txn)")
                active = mine
            for e in reversed(active):
                res.rows.append(self._restore(e))
        return res

    # -- verify and status ----------------------------------------------------------------------
    def _live(self, knob: Knob) -> tuple[str | None, str | None]:
        """(value, None) or (None, status) for a knob that cannot be read."""
        try:
            if not knob.readable:
                return None, "unreadable"
            return self._driver(knob).read(knob), None
        except KnobGone:
            return None, "gone"
        except KnobAbsent:
            return None, "absent"
        except KnobFailed:
            return None, "unreadable"

    def verify(self) -> VerifyReport:
        """Per-knob diff between what the journal says nodetune set and the live node."""
        state = self.journal.load()
        rep = VerifyReport(journal=self.journal.path, warnings=list(state.warnings))
        entries = state.active()
        if not entries:
            last = _last_with_entries(state)
            entries = [e for e in last.entries if e.state == ROLLED_BACK] if last else []
        for e in entries:
            live, why = self._live(e.knob)
            note = e.note or ""
            if why is not None:
                status = why
            elif e.state == ROLLED_BACK:
                status = "restored" if same_value(e.knob, live, e.original) else "drifted"
            elif same_value(e.knob, live, e.set_value):
                status = "ok"
            elif same_value(e.knob, live, e.original):
                status = "restored"
            else:
                status = "drifted"
            if e.state == INTENT:
                note = "the apply was interrupted before confirming this change; run rollback"
            rep.rows.append(VerifyRow(e.txn, e.seq, e.tuner, e.knob, e.original, e.set_value, live, status, note,
                                      e.active))
        return rep

    def status(self) -> StatusReport:
        """What nodetune changed and when, transaction by transaction."""
        state = self.journal.load()
        rep = StatusReport(journal=self.journal.path, warnings=list(state.warnings))
        for t in state.txns:
            rep.txns.append(TxnSummary(t.txn, t.t_begin, t.profile, txn_state(t), len(t.entries),
                                       sum(1 for e in t.entries if e.active), t.t_end))
        for e in state.active():
            rep.active.append(ActiveRow(e.txn, e.seq, e.tuner, e.knob, e.original, e.set_value, e.t_intent, e.state))
        return rep


def _last_with_entries(state: JournalState) -> Txn | None:
    return next((t for t in reversed(state.txns) if t.entries), None)


def txn_state(t: Txn) -> str:
    """One word or two for where a transaction stands."""
    n = len(t.entries)
    active = sum(1 for e in t.entries if e.active)
    if t.end is None and active:
        return "interrupted (run rollback)"
    if t.end == ABORTED:
        return "failed, rolled back" if not active else "failed, partly restored"
    if n == 0:
        return "no changes" if t.end == COMMIT else "interrupted, nothing changed"
    if active == n:
        return "applied"
    if active == 0:
        return "rolled back"
    return "partly rolled back"
