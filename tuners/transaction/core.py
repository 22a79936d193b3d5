"""What every transaction operation shares: the node, its journal, the drivers, the lock, the marker."""

from __future__ import annotations

import os

from ..context import TuneContext
from ..contract import Driver, Knob
from ..drivers import drivers_for
from ..errors import JournalError, KnobFailed
from .compact import COMPACT_AT_BYTES, compact_locked
from .journal import Journal
from .nodelock import NodeLock, OpenMarker, OpenTxn, journal_key
from .record import Record


def missing_journal(o: OpenTxn) -> str:
    """The error for a marker that names a journal which is gone."""
    return (f"a transaction is open in {o.journal} but its journal is missing; up to {o.changes} knob(s) may still "
            f"be changed ({o.describe()}, pid {o.pid}); restore them by hand (or put the journal back), then "
            f"`nodetune tune rollback --journal {o.journal} --force` forgets it")




class Core:
    """Runs transactions for one node (ctx) against one journal."""

    compact_at_bytes = COMPACT_AT_BYTES

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

    def _record(self, rec: Record) -> None:
        """Append a rollback record; on failure (a full disk) keep going and remember why once."""
        if self._unrecorded is not None:
            return
        try:
            self.journal.append(rec, sync=False)
        except JournalError as exc:
            self._unrecorded = exc.reason

    def _compact_if_large(self) -> str | None:
        """Under the node lock: compact the journal once it has grown past `compact_at_bytes`.

        None, or why it could not (a warning: the journal is unchanged and still correct)."""
        try:
            if os.path.getsize(self.journal.path) < self.compact_at_bytes:
                return None
        except OSError:
            return None  # no journal: nothing to compact
        try:
            self.journal.open()
            compact_locked(self.journal)
        except JournalError as exc:
            return exc.reason
        finally:
            self.journal.close()
        return None
