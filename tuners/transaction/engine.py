"""The transaction engine: apply, rollback, verify and status over one node and one journal.

Each operation has its module (`apply`, `rollback`, `inspect`, `compact`); this class puts them
together.
"""

from __future__ import annotations

from .apply import ApplyOps
from .compact import CompactResult, compact
from .inspect import InspectOps


class Engine(ApplyOps, InspectOps):
    """Runs transactions for one node (ctx) against one journal."""

    def compact(self) -> CompactResult:
        """Fold the journal's finished transactions now, whatever its size (see `compact`)."""
        return compact(self.ctx.host, self.journal.path, self.journal.io)
