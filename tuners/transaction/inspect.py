"""Inspect a journal: `verify` (the journal against the live node) and `status` (what is held).

Neither takes the node's lock nor writes anything: they read the journal, the marker and the
knobs, so they run beside an apply and on read-only systems.
"""

from __future__ import annotations

from ..contract import Knob
from ..drivers import same_value
from ..errors import JournalError, KnobAbsent, KnobFailed, KnobGone
from .core import Core, missing_journal
from .fold import JournalState, Txn
from .record import ABORTED, COMMIT, INTENT, ROLLED_BACK
from .results import ActiveRow, StatusReport, TxnSummary, VerifyReport, VerifyRow


class InspectOps(Core):
    """Verify and status: no lock, no writes."""

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
            raise JournalError(missing_journal(mine))
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
        if state.compacted is not None:
            c = state.compacted
            rep.txns.append(TxnSummary("compacted", c.t_first or 0.0, None, f"{c.txns} finished transaction(s), "
                                       f"folded", sum(c.by_state.values()), 0, c.t_last))
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
