"""The transaction engine: apply, rollback, verify and status over one node and one journal.

Each operation has its module (`apply`, `rollback`, `inspect`); this class puts them together.
"""

from __future__ import annotations

from .apply import ApplyOps
from .inspect import InspectOps


class Engine(ApplyOps, InspectOps):
    """Runs transactions for one node (ctx) against one journal."""
