"""The tuning journal as the exporter shows it: read-only, loaded off the sampling thread.

`tuners.transaction.watch.JournalWatch` keys the file on its identity, size and mtime and loads a
changed journal on a helper thread (a 150k-line journal takes over a second); `read()` hands the
last counts to the exporter and never waits for a load.
"""

from __future__ import annotations

import logging
from types import MappingProxyType

from nodetune.agent.state import TuningSummary
from nodetune.probes.host import Host

log = logging.getLogger("nodetune.agent")


class JournalReader:
    """`read()` returns a new TuningSummary when the journal's counts changed since the last call,
    else None; nothing here touches the agent's state."""

    def __init__(self, host: Host) -> None:
        from nodetune.tuners.transaction.journal import DEFAULT_JOURNAL
        from nodetune.tuners.transaction.watch import JournalWatch

        self.name = DEFAULT_JOURNAL
        self._watch = JournalWatch(host.path(DEFAULT_JOURNAL))
        self._last: TuningSummary | None = None

    def invalidate(self) -> None:
        """Show the next counts even if they equal the last ones (a change of ours was applied)."""
        self._last = None

    def read(self) -> TuningSummary | None:
        """The journal's changes by state and active changes by knob group; an unreadable journal
        is a summary with `error` set (and one log line per new error), never an exception."""
        c = self._watch.poll()
        summary = TuningSummary(self.name, c.exists, MappingProxyType(dict(c.by_state)),
                                MappingProxyType(dict(c.active_by_group)), error=c.error)
        if summary == self._last:
            return None
        if c.error is not None and (self._last is None or self._last.error != c.error):
            log.warning("tuning journal unreadable: %s (nodetune_tuning_journal_readable=0)", c.error)
        self._last = summary
        return summary
