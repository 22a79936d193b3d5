"""Apply, verify and roll back planned changes as one journaled transaction.

Apply, for each change: read the knob again (the plan may be stale; a knob already at target is
left alone and not journaled), append the original to the journal and fsync, write, read back,
append `applied`. Any failure rolls back this transaction's changes in reverse order, the failing
one included (its write may have landed), and names the knob. A journal record that cannot be
written in full is such a failure, raised before its knob is touched. Rollback restores every
change the journal has not marked rolled back, newest first, across transactions and processes:
an intent whose `applied` record never got written (the crash window) is restored too, since
writing an original value over itself is harmless. Each restore is recorded after the write, so a
rollback killed half-way is finished by running it again.

Node-wide rules (see `nodelock`): every apply and rollback holds the node's lock; an apply
records its journal in the node's open-transaction marker before touching a knob, and a rollback
that leaves nothing to restore removes it. An apply of a profile over an open transaction of
another profile, or over another journal's, needs `force`.

Rollback never reports success while a change is left: a knob it cannot restore, a knob someone
changed after apply, and a change the journal lost to damage (`journal.Lost`) are rows whose
outcome counts as failed (`RollbackResult.failed`), each named. A knob whose live value is
neither what nodetune set nor an original is someone else's change: rollback leaves it as it is
(overwriting a change an operator or a daemon made after us is the worse surprise) and names it;
`force` restores it anyway. A knob whose earlier restore failed is restored without that check:
the failure told the operator to fix it and run rollback again.

Full disks: apply refuses up front when the journal's filesystem lacks room for the plan. If a
record still cannot be written, apply stops before that knob and rolls back; when even that
rollback cannot be journaled, the journal is cut back to its length before the apply (every knob
is back, so the transaction never happened). Rollback needs little room (a short record per
knob); if it cannot append them it restores every knob anyway and says the journal could not be
updated: the journal then still lists those changes, and a later rollback finds them restored.

SIGINT/SIGTERM during apply: the apply stops before the next knob and rolls back what it changed,
exactly as for a failing knob, then raises TransactionFailed with `signum` (exit 130/143). A
half-applied profile is the one state nobody asked for, and a rollback of hundreds of knobs takes
well under a second, inside any stop timeout; further signals during that rollback are ignored.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn

from . import crashpoints
from .base import (
    CHANGE,
    UNREADABLE,
    Change,
    ConflictError,
    JournalError,
    Knob,
    KnobAbsent,
    KnobFailed,
    KnobGone,
    TransactionFailed,
    TuneContext,
    TuneError,
)
from .journal import (
    ABANDONED,
    ABORTED,
    APPLIED,
    BEGIN,
    COMMIT,
    GONE,
    INTENT,
    RESTORE_FAILED,
    ROLLED_BACK,
    Entry,
    Journal,
    JournalState,
    Lost,
    Record,
    Txn,
    now,
)
from .knobs import Driver, drivers_for, same_value
from .nodelock import MarkerData, NodeLock, OpenMarker, OpenTxn, journal_key

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


_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers


class _StopSignals:
    """SIGINT/SIGTERM set a flag instead of raising mid-write; the apply loop checks it between knobs.

    Installed only in the main thread (Python's rule for signal handlers)."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self._old: dict[signal.Signals, _Handler] = {}

    def _on(self, signum: int, frame: FrameType | None) -> None:
        if self.caught is None:
            self.caught = signum

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                old = signal.signal(s, self._on)
                self._old[s] = signal.SIG_DFL if old is None else old  # None: set outside Python
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class _Interrupted(TuneError):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def _missing_journal(o: OpenTxn) -> str:
    return (f"a transaction is open in {o.journal} but its journal is missing; up to {o.changes} knob(s) may still "
            f"be changed ({o.describe()}, pid {o.pid}); restore them by hand (or put the journal back), then "
            f"`nodetune tune rollback --journal {o.journal} --force` forgets it")


class Engine:
    """Runs transactions for one node (ctx) against one journal."""

    def __init__(self, ctx: TuneContext, journal: Journal) -> None:
        self.ctx = ctx
        self.journal = journal
        self.drivers: dict[str, Driver] = drivers_for(ctx)
        self.marker = OpenMarker(ctx.host, journal.io)
        self._key = journal_key(journal.path)
        self._unrecorded: str | None = None  # why restores could not be journaled (this run)

    def _driver(self, knob: Knob) -> Driver:
        drv = self.drivers.get(knob.kind)
        if drv is None:
            raise KnobFailed(f"{knob.label}: unknown knob kind {knob.kind!r} (journal from a newer nodetune?)")
        return drv

    def _lock(self) -> NodeLock:
        return NodeLock(self.ctx.host)

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

    def _check_open(self, state: JournalState, marker: MarkerData, profile: str, force: bool) -> list[str]:
        """Refuse (ConflictError) to apply over an open transaction unless forced; warnings when forced."""
        problems: list[str] = []
        for o in marker.open:
            if o.journal == self._key:
                continue
            if not os.path.lexists(o.journal):
                problems.append(_missing_journal(o))
                continue
            other = Journal(o.journal).load()
            n = len(other.active()) + len(other.lost)
            if n:
                problems.append(f"{o.describe()} still holds {n} knob(s); roll it back first (`nodetune tune "
                                f"rollback --journal {o.journal}`) or apply with --force to stack on it")
        if not state.exists and marker.of(self._key) is not None:
            mine = marker.of(self._key)
            assert mine is not None
            problems.append(_missing_journal(mine))
        held = [e for e in state.active() if e.txn and _profile_of(state, e.txn) != profile]
        if held:
            first = held[-1]
            problems.append(f"profile {_profile_of(state, first.txn)} (transaction {first.txn}) is still applied "
                            f"({len(held)} knob(s)); roll it back first or apply with --force to stack {profile} on it")
        if state.lost:
            problems.append(f"the journal {state.path} is damaged: {len(state.lost)} change(s) it cannot restore "
                            f"({state.lost[0].label}); run `nodetune tune rollback` first or apply with --force")
        if problems and not force:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ConflictError(f"{problems[0]}{more}; nothing changed")
        return [f"--force: {p}" for p in problems]

    def apply(self, changes: list[Change], profile: str, *, force: bool = False) -> ApplyResult:
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
        self._unrecorded = None
        with self._lock():
            state = self.journal.load()
            marker, note = self.marker.read()
            res.warnings += ([note] if note else []) + state.warnings
            res.warnings += self._check_open(state, marker, profile, force)
            self.journal.check_space(len(todo))
            held_before = bool(state.active())
            try:
                self.journal.open()
            except JournalError as exc:
                raise JournalError(f"{exc.reason}; nothing changed") from None
            with self.journal, _StopSignals() as stop:
                res.warnings += self.journal.repairs
                start = self.journal.size
                try:
                    self.journal.append(Record(txn=txn, state=BEGIN, t=now(), profile=profile))
                except JournalError as exc:
                    raise JournalError(f"{exc.reason}; nothing changed") from None
                # After the journal exists (a marker naming a journal that was never created would be a
                # false alarm) and before the first knob (a deleted journal must not go unnoticed).
                try:
                    self.marker.add(OpenTxn(self._key, txn, profile, now(), os.getpid(),
                                            len(todo) + len(state.active())))
                except JournalError as exc:
                    why = self.journal.rewind(start)
                    raise JournalError(f"{exc.reason}; nothing changed"
                                       + (f" (and the journal keeps an empty transaction: {why})" if why else "")) from None
                crashpoints.crash_if("after_marker", 1)
                crashpoints.crash_if("after_begin", 1)
                done: list[Entry] = []
                seq = 0
                for c in todo:
                    pending: list[Entry] = []  # the intent journaled for this change, until it is applied
                    try:
                        if stop.caught is not None:
                            raise _Interrupted(stop.caught)
                        entry = self._apply_one(txn, seq, c, res, pending)
                    except TuneError as exc:
                        self._abort(txn, seq, start, held_before, done, pending, c.knob.label, exc)
                    if pending:
                        seq += 1  # a journaled change keeps its number, even if its thread was gone
                    if entry is not None:
                        done.append(entry)
                crashpoints.crash_if("before_commit", 1)
                try:
                    self.journal.append(Record(txn=txn, state=COMMIT, t=now(), n=seq))
                except JournalError as exc:
                    # every knob is set but the journal cannot say the apply finished: fail it, so that
                    # a full disk never leaves a profile applied behind a journal nobody can extend
                    self._abort(txn, seq, start, held_before, done, [], "the commit record", exc)
                if stop.caught is not None:
                    res.warnings.append(f"{signal.Signals(stop.caught).name} arrived after the last knob; "
                                        f"the apply completed")
            if not done and not held_before:
                self._forget(False)
        return res

    def _forget(self, held_before: bool) -> str | None:
        """Drop this journal from the marker when it holds nothing; None or why that failed."""
        if held_before:
            return None
        try:
            self.marker.remove(self._key)
        except JournalError as exc:
            return exc.reason
        return None

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
        pending[0].actual = actual
        if not same_value(knob, actual, c.target):
            short = _shortfall(knob, c.target, actual) if knob.granted else None
            if short is None:
                raise KnobFailed(f"wrote {c.target}, the kernel reads back {actual}")
            res.warnings.append(short)
        # The applied record repeats the intent: either line alone can restore the knob.
        self.journal.append(Record(txn=txn, state=APPLIED, t=now(), seq=seq, knob=knob, tuner=c.tuner,
                                   original=original, target=c.target, actual=actual), sync=False)
        crashpoints.crash_if("after_applied", seq + 1)
        res.applied.append(Applied(seq, c.tuner, knob, original, c.target, actual))
        return Entry(txn, seq, knob, c.tuner, original, c.target, APPLIED, t, now(), seq, actual)

    def _abort(self, txn: str, n: int, start: int, held_before: bool, done: list[Entry], failing: list[Entry],
               where: str, exc: TuneError) -> NoReturn:
        """Undo this transaction's changes, newest first, and raise TransactionFailed.

        The failing knob is restored too when its intent was journaled: its write may have landed.
        These are our own writes of a moment ago, so the drift check is off (force).
        """
        rolled: list[str] = []
        not_restored: list[str] = []
        for e in reversed(done + failing):
            row = self._restore(e, force=True)
            if row.outcome in UNDONE:
                not_restored.append(f"{e.knob.label} ({row.reason})")
            elif row.outcome == "not_restored":
                pass  # its thread or device is gone: nothing left to restore
            elif e in done or row.outcome == "restored":
                rolled.append(e.knob.label)
        signum = exc.signum if isinstance(exc, _Interrupted) else None
        journal_failed = isinstance(exc, JournalError) or self._unrecorded is not None
        if not journal_failed:
            try:
                self.journal.append(Record(txn=txn, state=ABORTED, t=now(), note=f"{where}: {exc.reason}",
                                           n=n + len(failing)))
            except JournalError as jexc:
                journal_failed, self._unrecorded = True, jexc.reason
        tail = ""
        if journal_failed and not not_restored:
            # Every knob is back but the journal could not record it: cut the transaction out, so
            # the journal says what is true (it never happened) and needs no room to say it.
            why = self.journal.rewind(start)
            tail = ("; the journal could not record the rollback and was cut back to before this apply" if why is None
                    else f"; the journal could not record the rollback ({why}): it still lists these changes, "
                         f"a later rollback finds them restored")
        if not not_restored:
            why = self._forget(held_before)
            if why:
                tail += f"; {why}"
        undone = f"rolled back {len(rolled)} change(s)"
        if not_restored:
            undone += f"; could not restore: {', '.join(not_restored)} (run `nodetune tune rollback`)"
        else:
            undone += "; node unchanged"
        if signum is not None:
            msg = f"apply {exc.reason} before {where}: {undone}{tail}"
        else:
            msg = f"apply failed at {where}: {exc.reason}; {undone}{tail}"
        raise TransactionFailed(msg, where, rolled, not_restored, signum)

    # -- rollback -------------------------------------------------------------------------------
    def _record(self, rec: Record) -> None:
        """Append a rollback record; on failure (a full disk) keep going and remember why once."""
        if self._unrecorded is not None:
            return
        try:
            self.journal.append(rec, sync=False)
        except JournalError as exc:
            self._unrecorded = exc.reason

    def _restore(self, e: Entry, *, force: bool = False, older: list[Entry] | None = None) -> RestoreRow:
        """Put one knob back to its original value and record it; idempotent.

        `older`: active changes of the same knob made before this one (stacked transactions). A
        live value equal to one of their originals means this one is already undone (a rollback
        that restored and could not record it), not that someone else changed the knob.
        """
        knob = e.knob
        row = RestoreRow(e.txn, e.seq, knob, e.original, "restored")

        def done(outcome: str, reason: str = "") -> RestoreRow:
            row.outcome, row.reason = outcome, reason
            self._record(Record(txn=e.txn, state=ROLLED_BACK, t=now(), seq=e.seq, note=reason or None))
            crashpoints.crash_if("after_rolled_back", e.seq + 1)
            return row

        def failed(reason: str) -> RestoreRow:
            row.outcome, row.reason = "failed", reason  # stays active: a later rollback retries
            self._record(Record(txn=e.txn, state=RESTORE_FAILED, t=now(), seq=e.seq, note=reason))
            return row

        try:
            drv = self._driver(knob)
            live = drv.read(knob) if knob.readable else None
            if live is not None:
                if same_value(knob, live, e.original):
                    return done("already")
                if any(same_value(knob, live, o.original) for o in older or []):
                    return done("already", "an earlier change of this knob is already undone")
                # An unconfirmed intent (the apply died after the write) has no known set value: a kernel
                # that granted less than the target is not someone else's change.
                if not (force or e.attempted or e.state == INTENT or same_value(knob, live, e.set_value)):
                    row.outcome = "drifted"  # stays active: `rollback --force` restores it
                    row.reason = (f"changed after apply: live {live}, nodetune set {e.set_value}; left as it is "
                                  f"(rollback --force restores {e.original})")
                    return row
            drv.write(knob, e.original)
            crashpoints.crash_if("after_restore", e.seq + 1)
            if knob.readable:
                back = drv.read(knob)
                if not same_value(knob, back, e.original):
                    short = _shortfall(knob, e.original, back) if knob.granted else None
                    if short is None:
                        return failed(f"wrote {e.original}, the kernel reads back {back}")
                    return done("restored", short)
            return done("restored")
        except (KnobGone, KnobAbsent) as exc:
            return done("not_restored", exc.reason)
        except KnobFailed as exc:
            return failed(exc.reason)

    def rollback(self, txn: str | None = None, *, force: bool = False) -> RollbackResult:
        """Restore every active change (or one transaction's), newest first.

        `force`: also restore knobs changed after apply, give up on changes lost to journal damage
        (recorded, so later runs stop failing on them) and forget an open transaction whose journal
        is missing. Nothing to do creates no file.
        """
        state = self.journal.load()
        marker, note = self.marker.read()
        mine = marker.of(self._key)
        others_open = [f"{o.describe()} is open too; roll it back with --journal {o.journal}"
                       for o in marker.open if o.journal != self._key]
        res = RollbackResult(journal=self.journal.path,
                             warnings=([note] if note else []) + list(state.warnings) + others_open)
        if not state.exists:
            if mine is not None:
                if not force:
                    raise JournalError(_missing_journal(mine))
                with self._lock():
                    self.marker.remove(self._key)
                res.warnings.append(f"--force: forgot {mine.describe()}; its knobs were not restored")
            return res
        if not state.active() and not state.lost:
            if mine is not None:  # a rollback that died before removing the marker
                with self._lock():
                    self.marker.remove(self._key)
            return res
        self._unrecorded = None
        with self._lock(), self.journal:
            state = self.journal.load()  # again, under the lock
            res.warnings = ([note] if note else []) + self.journal.repairs + state.warnings + others_open
            active = state.active()
            lost = state.lost
            if txn is not None:
                t = state.txn(txn)
                if t is None:
                    raise TuneError(f"transaction {txn!r}: not in {self.journal.path} (see `nodetune tune status`)")
                mine_e = [e for e in active if e.txn == t.txn]
                later = [e for e in active if e.txn != t.txn and e.order > min((m.order for m in mine_e), default=0)
                         and any(e.knob.id == m.knob.id for m in mine_e)]
                if later:
                    raise TuneError(f"{later[0].knob.label} was changed again by transaction {later[0].txn}; "
                                    f"roll that back first (or run rollback without --txn)")
                active = mine_e
                lost = [x for x in lost if x.txn == t.txn]
            elsewhere = {} if force else self._held_elsewhere(marker)
            for e in reversed(active):
                newer = elsewhere.get(e.knob.id)
                if newer is not None and newer[0] > e.t_intent:
                    # another journal changed this knob after us: restoring ours first would leave its
                    # rollback putting our target back (journals do not know each other's order)
                    res.rows.append(RestoreRow(e.txn, e.seq, e.knob, e.original, "held",
                                               f"changed again later by {newer[1]}; roll that back first "
                                               f"(rollback --force restores it anyway)"))
                    continue
                older = [o for o in active if o.knob.id == e.knob.id and o.order < e.order]
                res.rows.append(self._restore(e, force=force, older=older))
            for x in lost:
                res.rows.append(self._give_up(x) if force else self._lost_row(x))
            left = [r for r in res.rows if r.outcome in UNDONE]
            others = len(state.active()) - len(active) + len(state.lost) - len(lost)
            if self._unrecorded is not None:
                res.journal_error = self._unrecorded
                res.warnings.append(f"the journal could not be updated ({self._unrecorded}): the knobs above are "
                                    f"restored, but it still lists them; a later `nodetune tune rollback` (with free "
                                    f"space) finds them restored and records it")
            elif not left and not others:
                try:
                    self.marker.remove(self._key)
                except JournalError as exc:
                    res.warnings.append(exc.reason)
        return res

    def _held_elsewhere(self, marker: MarkerData) -> dict[str, tuple[float, str]]:
        """knob id -> (when, by what) for the active changes of the other open journals."""
        out: dict[str, tuple[float, str]] = {}
        for o in marker.open:
            if o.journal == self._key or not os.path.lexists(o.journal):
                continue
            try:
                other = Journal(o.journal).load()
            except JournalError:
                continue  # unreadable: its own rollback says why; ours cannot order against it
            for e in other.active():
                if e.t_intent >= out.get(e.knob.id, (0.0, ""))[0]:
                    out[e.knob.id] = (e.t_intent, f"transaction {e.txn} in {o.journal}")
        return out

    def _lost_row(self, x: Lost) -> RestoreRow:
        return RestoreRow(x.txn or "?", x.seq if x.seq is not None else -1, x.knob(), "unknown", "lost",
                          f"{x.reason}; check it by hand (rollback --force gives up on it)")

    def _give_up(self, x: Lost) -> RestoreRow:
        self._record(Record(txn=x.txn or "?", state=ABANDONED, t=now(), ref=",".join(x.refs), note=x.reason))
        return RestoreRow(x.txn or "?", x.seq if x.seq is not None else -1, x.knob(), "unknown", "abandoned",
                          f"{x.reason}; given up (--force): check it by hand")

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

    def _load_checked(self) -> tuple[JournalState, list[str]]:
        """The journal, with the marker's notes; JournalError when the marker names it and it is gone."""
        state = self.journal.load()
        marker, note = self.marker.read()
        mine = marker.of(self._key)
        if not state.exists and mine is not None:
            raise JournalError(_missing_journal(mine))
        notes = ([note] if note else []) + [f"{o.describe()} is open too (see --journal {o.journal})"
                                       for o in marker.open if o.journal != self._key]
        return state, notes

    def verify(self) -> VerifyReport:
        """Per-knob diff between what the journal says nodetune set and the live node."""
        state, notes = self._load_checked()
        rep = VerifyReport(journal=self.journal.path, warnings=notes + list(state.warnings))
        entries = state.active()
        if not entries and not state.lost:
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
        for x in state.lost:
            rep.rows.append(VerifyRow(x.txn or "?", x.seq if x.seq is not None else -1, "?", x.knob(), "unknown",
                                      "unknown", None, "unknown", x.reason))
        return rep

    def status(self) -> StatusReport:
        """What nodetune changed and when, transaction by transaction; lost changes count as set."""
        state, notes = self._load_checked()
        rep = StatusReport(journal=self.journal.path, warnings=notes + list(state.warnings), unknown=len(state.lost))
        for t in state.txns:
            lost = sum(1 for x in state.lost if x.txn == t.txn)
            rep.txns.append(TxnSummary(t.txn, t.t_begin, t.profile, txn_state(t, lost), len(t.entries) + lost,
                                       sum(1 for e in t.entries if e.active) + lost, t.t_end))
        unowned = sum(1 for x in state.lost if x.txn not in {t.txn for t in state.txns})
        if unowned:
            rep.txns.append(TxnSummary("?", 0.0, None, f"damaged: {unowned} change(s) unknown", unowned, unowned))
        for e in state.active():
            rep.active.append(ActiveRow(e.txn, e.seq, e.tuner, e.knob, e.original, e.set_value, e.t_intent, e.state))
        for x in state.lost:
            rep.active.append(ActiveRow(x.txn or "?", x.seq if x.seq is not None else -1, "?", x.knob(), "unknown",
                                        "unknown", 0.0, "unknown"))
        return rep


def _profile_of(state: JournalState, txn: str) -> str | None:
    t = state.txn(txn)
    return t.profile if t else None


def _last_with_entries(state: JournalState) -> Txn | None:
    return next((t for t in reversed(state.txns) if t.entries), None)


def txn_state(t: Txn, lost: int = 0) -> str:
    """One word or two for where a transaction stands."""
    if lost:
        return f"damaged: {lost} change(s) unknown (see rollback)"
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
