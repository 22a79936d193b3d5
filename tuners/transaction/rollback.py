"""Roll back: restore every change the journal has not marked rolled back, newest first.

Across transactions and processes: an intent whose `applied` record never got written (the crash
window) is restored too, since writing an original value over itself is harmless. Each restore is
recorded after the write, so a rollback killed half-way is finished by running it again; a
rollback that leaves nothing to restore removes its journal from the node's marker. Knobs that
another open journal changed after us are left for that journal's rollback first (journals do not
know each other's order, so the marker's other journals are read for it).

Rollback never reports success while a change is left: a knob it cannot restore, a knob someone
changed after apply, and a change the journal lost to damage (`fold.Lost`) are rows whose outcome
counts as failed (`RollbackResult.failed`), each named. A knob whose live value is neither what
nodetune set nor an original is someone else's change: rollback leaves it as it is (overwriting a
change an operator or a daemon made after us is the worse surprise) and names it; `force` restores
it anyway. A knob whose earlier restore failed is restored without that check: the failure told
the operator to fix it and run rollback again.

Full disks: rollback needs little room (a short record per knob); if it cannot append them it
restores every knob anyway and says the journal could not be updated: the journal then still
lists those changes, and a later rollback finds them restored.
"""

from __future__ import annotations

import os

from nodetune.probes import crashpoints

from ..contract import Knob
from ..drivers import same_value
from ..errors import JournalError, KnobAbsent, KnobFailed, KnobGone, TuneError
from .core import Core, missing_journal
from .fold import Entry, Lost
from .journal import Journal, now
from .nodelock import MarkerData
from .record import ABANDONED, INTENT, RESTORE_FAILED, ROLLED_BACK, Record
from .results import UNDONE, RestoreRow, RollbackResult


def shortfall(knob: Knob, target: str, actual: str) -> str | None:
    """A warning when the kernel granted less than asked of a `granted` knob, else None."""
    try:
        want, got = int(target), int(actual)
    except ValueError:
        return None
    if got < want:
        return (f"{knob.label}: asked for {want}, the kernel granted {got} (short by {want - got}; "
                f"memory too fragmented? reserve at boot or after dropping caches)")
    return None



class RollbackOps(Core):
    """Rollback, and the one-knob restore apply uses to undo a failed transaction."""

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
                    short = shortfall(knob, e.original, back) if knob.granted else None
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
                    raise JournalError(missing_journal(mine))
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
            if self._unrecorded is None:
                self.journal.close()  # compaction takes the journal's lock itself
                compact_error = self._compact_if_large()
                res.warnings += [compact_error] if compact_error else []
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
