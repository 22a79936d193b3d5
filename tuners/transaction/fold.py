"""Folding records into state: transactions, the latest state of each change, and what damage lost.

A damaged line is harmless only when it provably held no sole original: it names (in its
readable part) a change other records fully describe, or a state that holds no original, or it
lies inside a closed apply (between a valid `begin` and a counted `commit`/`aborted`: one writer at
a time, and the count turns any change missing there into a gap). Every other damaged line, and
every sequence number with no surviving record, becomes a `Lost` change that rollback, verify and
status report, named by the knob path the damaged text still shows. A torn *last* line (no
newline at the end of the file) is harmless too: a knob is touched only after its record is
complete and fsynced, so a torn tail was never acted on; the next writer cuts it off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..contract import Knob
from .record import (
    ABANDONED,
    ABORTED,
    ACTIVE,
    APPLIED,
    BEGIN,
    COMMIT,
    COMPACTED,
    GONE,
    HARMLESS_IF_LOST,
    INTENT,
    RESTORE_FAILED,
    Damage,
    Record,
)


@dataclass
class Entry:
    """The life of one change, folded from its records."""

    txn: str
    seq: int
    knob: Knob
    tuner: str
    original: str
    target: str
    state: str
    t_intent: float
    t_state: float
    order: int  # line number of the intent: the global order of changes
    actual: str | None = None
    note: str | None = None
    attempted: bool = False  # a rollback tried and failed to restore it (restore_failed)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def set_value(self) -> str:
        """What nodetune left the knob at: the read-back value, else the target."""
        return self.actual if self.actual is not None else self.target


@dataclass
class Lost:
    """A change that may still hold its knob but that the journal cannot restore."""

    ref: str  # identity for `abandoned`: "line:N:CRC" or "gap:TXN:SEQ"
    reason: str
    txn: str | None = None
    seq: int | None = None
    line: int | None = None
    path: str | None = None  # the knob's path, as far as the damaged text tells
    also: list[str] = field(default_factory=list)  # refs of damaged lines found to be this same change
    damage: str = ""  # what is wrong with its damaged line, if it has one

    @property
    def refs(self) -> list[str]:
        return [self.ref, *self.also]

    @property
    def label(self) -> str:
        where = f"journal line {self.line}" if self.line is not None else f"change {self.txn}/{self.seq}"
        return f"{self.path} ({where})" if self.path else where

    def knob(self) -> Knob:
        """A stand-in knob to name it in result rows (no driver reads or writes it)."""
        return Knob(id=f"lost:{self.ref}", kind="lost", group="unknown", label=self.label, path=self.path)


def _merge(lost: list[Lost], hints: list[Lost], spans: dict[str, tuple[int, int]],
           lines: dict[tuple[str, int], list[int]]) -> list[Lost]:
    """One Lost per change: a damaged line nothing identifies that lies where a known-missing change
    (a gap, an orphaned applied record) was written joins it, so one knob is reported once, named
    by what the damaged text still shows. `hints`: damaged lines that are not losses by themselves."""
    out: list[Lost] = []
    keyed: dict[tuple[str, int], Lost] = {}
    for x in lost:
        if x.txn is not None and x.seq is not None:
            first = keyed.get((x.txn, x.seq))
            if first is None:
                keyed[(x.txn, x.seq)] = x
                out.append(x)
            else:
                first.also += x.refs
                first.path = first.path or x.path
        else:
            out.append(x)
    for (txn, seq), x in keyed.items():
        begin, end = spans.get(txn, (0, 1 << 62))
        lo = max([begin, *(n for (t, s), ns in lines.items() if t == txn and s < seq for n in ns)])
        hi = min([end, *(n for (t, s), ns in lines.items() if t == txn and s > seq for n in ns)])
        for u in [u for u in out + hints if u.txn is None and u.line is not None and lo < u.line < hi]:
            if u in out:
                out.remove(u)
            if x.ref.startswith("gap:") and u.damage:
                x.reason = f"journal line damaged ({u.damage}): the original value of this change cannot be read"
            x.also += u.refs
            x.path = x.path or u.path
            x.line = x.line if x.line is not None else u.line
    return out


@dataclass
class Txn:
    txn: str
    t_begin: float
    profile: str | None
    end: str | None = None  # commit | aborted | None (the process died)
    t_end: float | None = None
    note: str | None = None
    n: int | None = None
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Compacted:
    """Finished transactions folded into counts by `compact`: what is left of them."""

    txns: int  # how many transactions were folded
    by_state: dict[str, int]  # their changes by last state
    t_first: float | None  # when the first of them began
    t_last: float  # when the compaction that folded the latest of them ran


@dataclass
class JournalState:
    path: str
    txns: list[Txn] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lost: list[Lost] = field(default_factory=list)
    damaged: list[Damage] = field(default_factory=list)
    exists: bool = True
    compacted: Compacted | None = None

    def entries(self) -> list[Entry]:
        return sorted((e for t in self.txns for e in t.entries), key=lambda e: e.order)

    def active(self) -> list[Entry]:
        return [e for e in self.entries() if e.active]

    def txn(self, txn_id: str) -> Txn | None:
        """A transaction by id or unique id prefix."""
        hits = [t for t in self.txns if t.txn == txn_id or t.txn.startswith(txn_id)]
        return hits[0] if len(hits) == 1 else None


def fold(path: str, records: Iterable[tuple[int, Record]], damaged: list[Damage]) -> JournalState:
    """Fold records into transactions and the latest state of each change; account for damage.

    `records` is read once, and `damaged` only after it: a stream (`record.parse_stream`) may
    fill `damaged` as it goes, so a load never holds the journal's text or all its records."""
    st = JournalState(path=path, damaged=damaged)
    txns: dict[str, Txn] = {}
    entries: dict[tuple[str, int], Entry] = {}
    seen: set[tuple[str, int]] = set()  # every (txn, seq) some valid record speaks of
    lines: dict[tuple[str, int], list[int]] = {}  # where each change's apply records are
    spans: dict[str, tuple[int, int]] = {}  # first and last line of each transaction's records
    abandoned: set[str] = set()
    begun: dict[str, int] = {}
    # Apply spans (begin .. commit/aborted with a count): only that apply wrote between those lines
    # (one writer per node), and its count makes any change missing from it a gap.
    closed: dict[str, tuple[int, int]] = {}
    for n, r in records:
        if r.state == ABANDONED:
            abandoned.update((r.ref or "").split(","))
            continue
        if r.state == COMPACTED:
            st.compacted = Compacted(r.n or 0, dict(r.counts or {}), r.t_first, r.t)
            continue
        first, _ = spans.get(r.txn, (n, n))
        spans[r.txn] = (first, n)
        if r.seq is not None and r.state in (INTENT, APPLIED, GONE):  # apply-phase lines only
            lines.setdefault((r.txn, r.seq), []).append(n)
        t = txns.get(r.txn)
        if t is None:
            t = Txn(txn=r.txn, t_begin=r.t, profile=r.profile)
            txns[r.txn] = t
            st.txns.append(t)
        if r.state == BEGIN:
            t.t_begin, t.profile = r.t, r.profile
            begun[r.txn] = n
            continue
        if r.state in (COMMIT, ABORTED):
            t.end, t.t_end, t.note, t.n = r.state, r.t, r.note, r.n
            if r.n is not None and r.txn in begun:
                closed[r.txn] = (begun[r.txn], n)
            continue
        if r.seq is None:
            st.warnings.append(f"{path}:{n}: {r.state} record has no sequence number; skipped")
            continue
        key = (r.txn, r.seq)
        seen.add(key)
        found = entries.get(key)
        if r.state in (INTENT, APPLIED) and found is None:
            if r.knob is None or r.original is None or r.target is None:
                if r.state == INTENT:
                    st.lost.append(Lost(f"line:{n}:{r.txn}:{r.seq}", "the intent lacks its knob or original value",
                                        r.txn, r.seq, n, r.knob.path if r.knob else None))
                else:  # an applied record of a journal written before records repeated their intent
                    st.lost.append(Lost(f"line:{n}:{r.txn}:{r.seq}", "applied, but its intent record is "
                                        "missing or damaged and this record does not repeat the original",
                                        r.txn, r.seq, n, r.knob.path if r.knob else None))
                continue
            if r.state == APPLIED:
                st.warnings.append(f"{path}:{n}: {r.knob.label}: its intent record is missing or damaged; "
                                   f"restoring from the copy in its applied record")
            e = Entry(r.txn, r.seq, r.knob, r.tuner or "?", r.original, r.target, r.state, r.t, r.t, n, r.actual)
            entries[key] = e
            t.entries.append(e)
            continue
        if found is None:
            if r.state == RESTORE_FAILED:
                st.lost.append(Lost(f"line:{n}:{r.txn}:{r.seq}", "a restore of it failed earlier and its intent "
                                    "record is missing or damaged", r.txn, r.seq, n))
            else:
                st.warnings.append(f"{path}:{n}: {r.state} of {r.txn}/{r.seq} has no intent (damaged line?); "
                                   f"nothing to restore for it")
            continue
        if r.state == INTENT:
            st.warnings.append(f"{path}:{n}: a second intent for {r.txn}/{r.seq}; the first one counts")
            continue
        if r.state == RESTORE_FAILED:
            found.attempted = True
            found.note = r.note
            continue
        found.state, found.t_state = r.state, r.t
        if r.actual is not None:
            found.actual = r.actual
        if r.note is not None:
            found.note = r.note
    candidates: list[Damage] = []  # damaged lines inside a closed apply span: they name its gaps
    for d in damaged:
        where = f"{path}:{d.line}"
        if d.torn_tail:
            st.warnings.append(f"{where}: the last line is a torn write from a crash ({d.reason}); its knob was "
                               f"never written (a record is complete and fsynced before its knob is touched)")
            continue
        if d.txn is not None and d.seq is not None:
            seen.add((d.txn, d.seq))
        if d.txn is not None and d.seq is not None and (d.txn, d.seq) in entries:
            st.warnings.append(f"{where}: damaged ({d.reason}); change {d.txn}/{d.seq} is known from its other "
                               f"records")
        elif d.state in HARMLESS_IF_LOST and d.txn is not None:
            st.warnings.append(f"{where}: damaged {d.state} record of {d.txn} ({d.reason}); it held no original")
        elif d.state is None and (inside := next((t for t, (a, b) in closed.items() if a < d.line < b), None)):
            candidates.append(d)
            st.warnings.append(f"{where}: damaged ({d.reason}) inside transaction {inside}, whose changes are all "
                               f"accounted for by number")
        else:
            what = f"a {d.state} record" if d.state else "a record nothing identifies"
            st.lost.append(Lost(d.ref, f"journal line damaged ({d.reason}): {what} that may hold the only original "
                                f"of a changed knob", d.txn, d.seq, d.line, d.path, damage=d.reason))
    seqs: dict[str, list[int]] = {}
    for x, s in seen:
        seqs.setdefault(x, []).append(s)
    for t in st.txns:
        have = seqs.get(t.txn, [])
        expected = max(t.n or 0, max(have, default=-1) + 1)
        for s in sorted(set(range(expected)) - set(have)):
            st.lost.append(Lost(f"gap:{t.txn}:{s}", "no record of this change survives (a line lost or cut out)",
                                t.txn, s))
    hints = [Lost(d.ref, d.reason, line=d.line, path=d.path, damage=d.reason) for d in candidates]
    st.lost = _merge(st.lost, hints, {t: (a, b if txns[t].end else 1 << 62) for t, (a, b) in spans.items()}, lines)
    for lost in list(st.lost):
        if set(lost.refs) <= abandoned:
            st.lost.remove(lost)
            st.warnings.append(f"{path}: {lost.label}: given up by `rollback --force` earlier ({lost.reason})")
    for lost in st.lost:
        st.warnings.append(f"{path}: {lost.label}: cannot be restored: {lost.reason}")
    return st
