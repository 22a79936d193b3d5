"""Apply planned changes as one journaled transaction, with SIGINT/SIGTERM held off between knobs.

For each change: read the knob again (the plan may be stale; a knob already at target is left
alone and not journaled), append the original to the journal and fsync, write, read back, append
`applied`. Any failure rolls back this transaction's changes in reverse order, the failing one
included (its write may have landed), and names the knob. A journal record that cannot be written
in full is such a failure, raised before its knob is touched.

Node-wide rules (see `nodelock`): every apply holds the node's lock and records its journal in
the node's open-transaction marker before touching a knob. An apply of a profile over an open
transaction of another profile, or over another journal's, needs `force`.

Full disks: apply refuses up front when the journal's filesystem lacks room for the plan. If a
record still cannot be written, apply stops before that knob and rolls back; when even that
rollback cannot be journaled, the journal is cut back to its length before the apply (every knob
is back, so the transaction never happened).

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
from types import FrameType
from typing import Any, NoReturn

from nodetune.probes import crashpoints

from ..contract import CHANGE, UNREADABLE, Change
from ..drivers import same_value
from ..errors import (
    ConflictError,
    JournalError,
    KnobAbsent,
    KnobFailed,
    KnobGone,
    TransactionFailed,
    TuneError,
)
from .core import missing_journal
from .fold import Entry, JournalState
from .journal import Journal, now
from .nodelock import MarkerData, OpenTxn
from .record import ABORTED, APPLIED, BEGIN, COMMIT, GONE, INTENT, Record
from .results import UNDONE, Applied, ApplyResult
from .rollback import RollbackOps, shortfall

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



class ApplyOps(RollbackOps):
    """Apply: one transaction of planned changes."""

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
                problems.append(missing_journal(o))
                continue
            other = Journal(o.journal).load()
            n = len(other.active()) + len(other.lost)
            if n:
                problems.append(f"{o.describe()} still holds {n} knob(s); roll it back first (`nodetune tune "
                                f"rollback --journal {o.journal}`) or apply with --force to stack on it")
        if not state.exists and marker.of(self._key) is not None:
            mine = marker.of(self._key)
            assert mine is not None
            problems.append(missing_journal(mine))
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
            compact_error = self._compact_if_large()
            state = self.journal.load()
            res.warnings += [compact_error] if compact_error else []
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
                                       + (f" (and the journal keeps an empty transaction: {why})"
                                          if why else "")) from None
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
            short = shortfall(knob, c.target, actual) if knob.granted else None
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


def _profile_of(state: JournalState, txn: str) -> str | None:
    t = state.txn(txn)
    return t.profile if t else None
