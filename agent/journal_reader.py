"""The tuning journal as the exporter shows it: read-only, and only when the file changed."""

from __future__ import annotations

import logging
import os
from types import MappingProxyType

from nodetune.agent.state import TuningSummary
from nodetune.probes.host import Host

log = logging.getLogger("nodetune.agent")
UNREAD = -1.0  # an mtime no file has: the next `read` loads the journal


class JournalReader:
    """`read()` returns a new TuningSummary when the journal changed since the last call, else None.

    It loads the whole journal, so the caller picks the thread it runs on; nothing here touches
    the agent's state.
    """

    def __init__(self, host: Host) -> None:
        from nodetune.tuners.journal import DEFAULT_JOURNAL

        self.name = DEFAULT_JOURNAL
        self.path = host.path(DEFAULT_JOURNAL)
        self._mtime: float | None = UNREAD

    def invalidate(self) -> None:
        """Read the journal at the next call even if its mtime did not move (a change of ours)."""
        self._mtime = UNREAD

    def read(self) -> TuningSummary | None:
        """The journal's changes by state and active changes by knob group; an unreadable journal
        is a summary with `error` set (and one log line), never an exception."""
        from nodetune.tuners.journal import Journal

        try:
            mtime: float | None = os.stat(self.path).st_mtime
        except FileNotFoundError:
            mtime = None
        except OSError as exc:
            return TuningSummary(self.name, True, error=str(exc))
        if mtime == self._mtime:
            return None
        self._mtime = mtime
        try:
            js = Journal(self.path).load()
        except Exception as exc:  # JournalError and a damaged file alike: a value, not a crash
            log.warning("tuning journal unreadable: %s (nodetune_tuning_journal_readable=0)", exc)
            return TuningSummary(self.name, True, error=str(exc))
        by_state: dict[str, int] = {}
        active: dict[str, int] = {}
        for e in js.entries():
            # an entry whose restore failed is still applied in the fold; the gauge says what to do
            st = "restore_failed" if e.attempted and e.active else e.state
            by_state[st] = by_state.get(st, 0) + 1
            if e.active:
                active[e.knob.group] = active.get(e.knob.group, 0) + 1
        return TuningSummary(self.name, js.exists, MappingProxyType(by_state), MappingProxyType(active))
