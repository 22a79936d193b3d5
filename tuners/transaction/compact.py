"""Compaction: fold finished transactions into one `compacted` record so the journal stays small.

A journal only grows (every apply and rollback appends), and years of autotune reach hundreds of
thousands of lines that every status, verify, plan and the agent would read. A transaction is
finished when none of its changes can still hold a knob (each rolled back, gone, or never
written); those are replaced by one record counting their changes by last state, so the totals
the agent exports do not move. Never folded: a transaction that still holds a knob, the last one
that changed any (verify shows it after a rollback), and anything of a damaged journal (the line
numbers of damaged lines name what is lost, and `abandoned` records refer to them).

It runs under the node's lock and the journal's flock, and replaces the file atomically (temp
file, fsync, rename, fsync the directory): a crash or a concurrent reader sees the old journal
or the new one. Apply and rollback compact a journal grown past COMPACT_AT_BYTES.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from nodetune.probes.host import Host

from ..errors import JournalError
from .durable import JournalIO, os_reason, replace_file
from .fold import JournalState, Txn
from .journal import Journal, now
from .nodelock import NodeLock
from .record import COMPACTED, Record, dump

COMPACT_AT_BYTES = 1 << 20  # ~2,000 changes' records: a few seconds of CPU a read saved, not spent
COMPACTED_TXN = "compacted"


@dataclass
class CompactResult:
    """What a compaction did; `skipped` says why it did nothing."""

    path: str
    folded: int = 0  # transactions folded by this run
    lines_before: int = 0
    lines_after: int = 0
    size_before: int = 0
    size_after: int = 0
    skipped: str | None = None


def _finished(t: Txn, lost_txns: set[str]) -> bool:
    return t.txn not in lost_txns and not any(e.active for e in t.entries)


def foldable(state: JournalState) -> set[str]:
    """Transactions compaction may fold: finished, and not the last one that changed a knob."""
    lost = {x.txn for x in state.lost if x.txn}
    out = {t.txn for t in state.txns if _finished(t, lost)}
    last = next((t for t in reversed(state.txns) if t.entries), None)
    if last is not None:
        out.discard(last.txn)
    return out


def _kept(journal: Journal, folded: set[str], res: CompactResult) -> list[bytes]:
    """The lines of the records compaction keeps, as written (a second pass over the file: an
    undamaged journal under our locks, so every line is a record that cannot have changed)."""
    kept: list[bytes] = []
    for raw in journal.raw_lines():
        res.size_before += len(raw)
        if not raw.strip():
            continue
        res.lines_before += 1
        data = json.loads(raw)
        if data.get("state") != COMPACTED and data.get("txn") not in folded:
            kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
    return kept


def compact_locked(journal: Journal) -> CompactResult:
    """Compact a journal the caller holds (node lock and the journal's flock); closes the journal,
    whose next append reopens the new file. JournalError when the new file cannot be written.

    The journal is read twice, a line at a time (the fold, then the lines to keep): memory holds
    the state and the kept lines, never the whole text."""
    res = CompactResult(journal.path)
    state = journal.load()
    if not state.exists:
        res.skipped = "no journal"
        return res
    if state.damaged or state.lost:
        res.skipped = "the journal is damaged: its line numbers name what may be lost (run rollback first)"
        return res
    folded = foldable(state)
    if not folded:
        res.skipped = "no finished transaction to fold"
        return res
    old = state.compacted
    counts = dict(old.by_state) if old else {}
    firsts = [old.t_first] if old and old.t_first is not None else []
    for t in state.txns:
        if t.txn in folded:
            firsts.append(t.t_begin)
            for e in t.entries:
                counts[e.state] = counts.get(e.state, 0) + 1
    summary = Record(txn=COMPACTED_TXN, state=COMPACTED, t=now(), n=(old.txns if old else 0) + len(folded),
                     counts=counts, t_first=min(firsts) if firsts else None)
    del state
    kept = _kept(journal, folded, res)
    data = dump(summary) + b"".join(kept)
    try:
        replace_file(journal.path, data, journal.io)
    except OSError as exc:
        raise JournalError(f"{journal.path}: cannot compact the journal: {os_reason(exc)}; it is unchanged") from None
    finally:
        journal.close()  # its fd is the old file's: the next append opens the new one
    res.folded = len(folded)
    res.lines_after = 1 + len(kept)
    res.size_after = len(data)
    return res


def compact(host: Host, path: str, io: JournalIO | None = None) -> CompactResult:
    """Compact the journal at `path` (a path on this machine) of the node under `host`."""
    journal = Journal(path, io)
    with NodeLock(host):
        if not os.path.lexists(path):
            return CompactResult(path, skipped="no journal")
        journal.open()
        try:
            return compact_locked(journal)
        finally:
            journal.close()
