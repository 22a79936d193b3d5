"""The tuning journal: one JSON record per line, appended and fsynced before a knob is touched.

Records of one change move through states: `intent` (the original value, written before the
knob) -> `applied` (the value the kernel reports after the write) -> `rolled_back`; or `gone`
(the thread vanished before the write; nothing changed). Transactions are bracketed by `begin`
and `commit`/`aborted`. A line torn by a crash mid-write is skipped with a warning and cannot
swallow the next record: before the first append, an unterminated last line is sealed with a
newline. One writer at a time holds an exclusive flock on the journal file.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from nodetune.probes.serde import SchemaError, from_jsonable, to_jsonable

from . import crashpoints
from .base import JournalError, Knob

DEFAULT_JOURNAL = "/var/lib/nodetune/journal.jsonl"
VERSION = 1

BEGIN, COMMIT, ABORTED = "begin", "commit", "aborted"
INTENT, APPLIED, GONE, ROLLED_BACK = "intent", "applied", "gone", "rolled_back"
# An entry in one of these states may have changed its knob: rollback restores it.
ACTIVE = (INTENT, APPLIED)


@dataclass
class Record:
    """One line of the journal."""

    txn: str
    state: str
    t: float
    v: int = VERSION
    seq: int | None = None
    knob: Knob | None = None
    tuner: str | None = None
    original: str | None = None
    target: str | None = None
    actual: str | None = None  # what the kernel reports after the write (hugepages may fall short)
    profile: str | None = None
    note: str | None = None


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

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def set_value(self) -> str:
        """What nodetune left the knob at: the read-back value, else the target."""
        return self.actual if self.actual is not None else self.target


@dataclass
class Txn:
    txn: str
    t_begin: float
    profile: str | None
    end: str | None = None  # commit | aborted | None (the process died)
    t_end: float | None = None
    note: str | None = None
    entries: list[Entry] = field(default_factory=list)


@dataclass
class JournalState:
    path: str
    txns: list[Txn] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def entries(self) -> list[Entry]:
        return sorted((e for t in self.txns for e in t.entries), key=lambda e: e.order)

    def active(self) -> list[Entry]:
        return [e for e in self.entries() if e.active]

    def txn(self, txn_id: str) -> Txn | None:
        """A transaction by id or unique id prefix."""
        hits = [t for t in self.txns if t.txn == txn_id or t.txn.startswith(txn_id)]
        return hits[0] if len(hits) == 1 else None


def _dump(rec: Record) -> bytes:
    data = {k: v for k, v in to_jsonable(rec).items() if v is not None}
    return (json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n").encode()


def parse_lines(text: str, path: str) -> tuple[list[Record], list[str]]:
    """Records of a journal's text; bad lines are skipped and named in the warnings."""
    records: list[Record] = []
    warnings: list[str] = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            data: Any = json.loads(line)
            records.append(from_jsonable(Record, data))
        except json.JSONDecodeError:
            warnings.append(f"{path}:{n}: not a complete JSON record (torn write from a crash?); skipped")
        except SchemaError as exc:
            warnings.append(f"{path}:{n}: not a journal record ({exc}); skipped")
    return records, warnings


def fold(path: str, records: list[Record], warnings: list[str]) -> JournalState:
    """Fold records into transactions and the latest state of each change."""
    st = JournalState(path=path, warnings=warnings)
    txns: dict[str, Txn] = {}
    entries: dict[tuple[str, int], Entry] = {}
    for i, r in enumerate(records):
        t = txns.get(r.txn)
        if t is None:
            t = Txn(txn=r.txn, t_begin=r.t, profile=r.profile)
            txns[r.txn] = t
            st.txns.append(t)
        if r.state == BEGIN:
            t.t_begin, t.profile = r.t, r.profile
        elif r.state in (COMMIT, ABORTED):
            t.end, t.t_end, t.note = r.state, r.t, r.note
        elif r.seq is None:
            st.warnings.append(f"{path}: record {i + 1} ({r.state}) has no sequence number; skipped")
        elif r.state == INTENT:
            if r.knob is None or r.original is None or r.target is None:
                st.warnings.append(f"{path}: intent {r.txn}/{r.seq} lacks its knob or values; skipped")
                continue
            e = Entry(r.txn, r.seq, r.knob, r.tuner or "?", r.original, r.target, INTENT, r.t, r.t, i)
            entries[(r.txn, r.seq)] = e
            t.entries.append(e)
        else:
            found = entries.get((r.txn, r.seq))
            if found is None:
                st.warnings.append(f"{path}: {r.state} of {r.txn}/{r.seq} has no intent (lost line?); skipped")
                continue
            found.state, found.t_state = r.state, r.t
            if r.actual is not None:
                found.actual = r.actual
            if r.note is not None:
                found.note = r.note
    return st


class Journal:
    """The journal file at a real path (the caller maps node paths through Host)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    # -- reading ------------------------------------------------------------------------------
    def load(self) -> JournalState:
        """Every readable record; an absent journal is an empty one."""
        try:
            with open(self.path, "rb") as fh:
                text = fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return JournalState(path=self.path)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read the journal: {exc.strerror or exc}") from None
        records, warnings = parse_lines(text, self.path)
        return fold(self.path, records, warnings)

    # -- writing ------------------------------------------------------------------------------
    def open(self) -> None:
        """Create (durably) and lock the journal for one writer; seal a torn last line."""
        if self._fd is not None:
            return
        d = os.path.dirname(os.path.abspath(self.path))
        try:
            _makedirs_durable(d)
            created = not os.path.exists(self.path)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {exc.strerror or exc} "
                               f"(needs root, or pass --journal FILE)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(f"{self.path}: another nodetune apply or rollback holds the journal; "
                               f"wait for it to finish") from None
        self._fd = fd
        try:
            if created:
                _fsync_dir(d)  # the file's directory entry must survive a crash too
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")  # a crash tore the last line: keep it from eating the next
                os.fsync(fd)
        except OSError as exc:
            self.close()
            raise JournalError(f"{self.path}: {exc.strerror or exc}") from None

    def append(self, rec: Record, sync: bool = True) -> None:
        """Write one record, fsynced unless `sync` is False; a knob is touched only after its
        intent has been appended.

        `applied` and `rolled_back` records may skip the fsync: losing one to a power cut only
        makes a later rollback restore that knob again, which is harmless (restores are
        idempotent). The process dying does not lose them: the page cache outlives it.
        """
        if self._fd is None:
            self.open()
        assert self._fd is not None
        data = _dump(rec)
        try:
            if rec.state == INTENT and rec.seq is not None and crashpoints.reached("torn_intent", rec.seq + 1):
                os.write(self._fd, data[: len(data) // 2])
                os.fsync(self._fd)
                crashpoints.crash_if("torn_intent", rec.seq + 1)
            os.write(self._fd, data)
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot write the journal: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_dir(d: str) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(d: str) -> None:
    """mkdir -p, fsyncing each parent whose entries changed."""
    if os.path.isdir(d):
        return
    parent = os.path.dirname(d)
    if parent and parent != d:
        _makedirs_durable(parent)
    os.mkdir(d, 0o755)
    _fsync_dir(parent or "/")


def now() -> float:
    return round(time.time(), 3)
