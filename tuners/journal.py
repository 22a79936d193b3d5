"""The tuning journal: one checksummed JSON record per line, written in full and fsynced before a
knob is touched.

Records of one change move through states: `intent` (the original value, written before the
knob) -> `applied` (the value the kernel reports after the write; it repeats the knob, original
and target, so a damaged intent line loses nothing) -> `rolled_back`; or `gone` (the thread
vanished before the write; nothing changed). A rollback that could not restore a knob writes
`restore_failed` (the operator is told to fix it and run rollback again, so its next value is
not someone else's change). Transactions are bracketed by `begin` and `commit`/`aborted`, which
carry the number of journaled changes so a lost last change is noticed.

Integrity: every record carries `crc`, the CRC-32 of its canonical JSON without that key. A line
that is not a valid record (bad JSON, bad checksum, a field of the wrong type) is *damaged*, and
damage never drops a restore silently. A damaged line is harmless only when it provably held no
sole original: it names (in its readable part) a change other records fully describe, or a state
that holds no original, or it lies inside a closed apply (between a valid `begin` and a counted
`commit`/`aborted`: one writer at a time, and the count turns any change missing there into a
gap). Every other damaged line, and every sequence number with no surviving record, becomes a
`Lost` change that rollback, verify and status report, named by the knob path the damaged text
still shows. A torn *last* line (no newline at the end of the file) is harmless too: a knob is
touched only after its record is complete and fsynced, so a torn tail was never acted on; the
next writer cuts it off.

Writes go through `JournalIO` (write, fsync, free space): the seam the fault-injection tests use
for short writes, ENOSPC and EIO, with no patching of `open` or `os`. A record is written with one
loop that checks the byte count; if it cannot be written in full and fsynced, the file is cut
back (ftruncate) to its previous length and the caller gets a JournalError before any knob moves.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nodetune.probes.host import file_kind
from nodetune.probes.serde import SchemaError, from_jsonable, to_jsonable

from . import crashpoints
from .base import JournalError, Knob

DEFAULT_JOURNAL = "/var/lib/nodetune/journal.jsonl"
VERSION = 2  # 2: every record has `crc`; `applied` repeats its intent; commit/aborted carry `n`
MAX_JOURNAL_BYTES = 256 << 20  # years of tuning; anything larger is not ours

BEGIN, COMMIT, ABORTED = "begin", "commit", "aborted"
INTENT, APPLIED, GONE, ROLLED_BACK = "intent", "applied", "gone", "rolled_back"
RESTORE_FAILED, ABANDONED = "restore_failed", "abandoned"
STATES = (BEGIN, COMMIT, ABORTED, INTENT, APPLIED, GONE, ROLLED_BACK, RESTORE_FAILED, ABANDONED)
# An entry in one of these states may have changed its knob: rollback restores it.
ACTIVE = (INTENT, APPLIED)
# A damaged record of one of these states cannot hide a changed knob: losing it at worst makes a
# later rollback restore a knob again (idempotent) or show a transaction as interrupted.
HARMLESS_IF_LOST = (BEGIN, COMMIT, ABORTED, GONE, ROLLED_BACK, ABANDONED)

# Bytes an apply needs on the journal's filesystem: a fixed reserve plus, per change, its intent,
# applied and rolled_back records with room to spare (a 224-CPU governor intent is ~480 bytes).
SPACE_RESERVE = 128 << 10
SPACE_PER_CHANGE = 2048


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
    n: int | None = None  # commit/aborted: how many changes the transaction journaled
    ref: str | None = None  # abandoned: the Lost.ref given up on


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
class Damage:
    """A line that is not a valid record, with what could still be read from it (untrusted)."""

    line: int
    reason: str
    ref: str  # "line:N:CRC-of-the-raw-text": stable while the line stays as it is
    torn_tail: bool = False  # the unterminated last line: a write a crash cut short
    txn: str | None = None
    seq: int | None = None
    state: str | None = None
    path: str | None = None  # the knob path the text mentions


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
class JournalState:
    path: str
    txns: list[Txn] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lost: list[Lost] = field(default_factory=list)
    damaged: list[Damage] = field(default_factory=list)
    exists: bool = True

    def entries(self) -> list[Entry]:
        return sorted((e for t in self.txns for e in t.entries), key=lambda e: e.order)

    def active(self) -> list[Entry]:
        return [e for e in self.entries() if e.active]

    def txn(self, txn_id: str) -> Txn | None:
        """A transaction by id or unique id prefix."""
        hits = [t for t in self.txns if t.txn == txn_id or t.txn.startswith(txn_id)]
        return hits[0] if len(hits) == 1 else None


# -- encoding -----------------------------------------------------------------------------------

def canonical(data: dict[str, Any]) -> bytes:
    """The one byte form a checksum is taken over (sorted keys, no spaces, ASCII)."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False).encode()


def crc(data: dict[str, Any]) -> str:
    return f"{zlib.crc32(canonical(data)):08x}"


def sealed(data: dict[str, Any]) -> bytes:
    """`data` with its checksum, as one line."""
    return canonical({**data, "crc": crc(data)}) + b"\n"


def unseal(data: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the fields without `crc`, None) or (None, what is wrong)."""
    if not isinstance(data, dict):
        return None, f"not a journal record (a JSON {type(data).__name__})"
    body = {k: v for k, v in data.items() if k != "crc"}
    got = data.get("crc")
    if got is None:
        if body.get("v") == 1:
            return body, None  # written by nodetune before checksums; still typed below
        return None, "no checksum"
    try:
        want = crc(body)
    except ValueError:
        return None, "not encodable"
    if got != want:
        return None, f"checksum mismatch (line says {str(got)[:12]}, content gives {want})"
    return body, None


def _dump(rec: Record) -> bytes:
    return sealed({k: v for k, v in to_jsonable(rec).items() if v is not None})


# -- reading ------------------------------------------------------------------------------------

_HINTS = {
    "txn": re.compile(r'"txn":\s*"([0-9A-Za-z]{1,40})"'),
    "seq": re.compile(r'"seq":\s*(\d{1,9})\b'),
    "state": re.compile(r'"state":\s*"([a-z_]{1,20})"'),
    "path": re.compile(r'"path":\s*"((?:[^"\\]|\\.){1,400})"'),
    "id": re.compile(r'"id":\s*"sysfs:((?:[^"\\]|\\.){1,400})"'),
}


def _salvage(d: Damage, text: str, data: Any) -> None:
    """What a damaged line still says about itself, to name what may be lost (never to restore)."""
    if isinstance(data, dict):
        txn, seq, state, knob = data.get("txn"), data.get("seq"), data.get("state"), data.get("knob")
        d.txn = txn if isinstance(txn, str) else None
        d.seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        d.state = state if isinstance(state, str) else None
        path = knob.get("path") if isinstance(knob, dict) else None
        d.path = path if isinstance(path, str) else None
        return
    found = {k: m.group(1) for k, rx in _HINTS.items() if (m := rx.search(text))}
    d.txn, d.state = found.get("txn"), found.get("state")
    d.seq = int(found["seq"]) if "seq" in found else None
    raw = found.get("path") or found.get("id")  # a sysfs knob's id holds its path, earlier in the line
    if raw is not None:
        try:
            d.path = json.loads(f'"{raw}"')
        except ValueError:
            d.path = raw


def _record(data: dict[str, Any]) -> tuple[Record | None, str | None]:
    try:
        rec = from_jsonable(Record, data)
    except SchemaError as exc:
        return None, f"not a journal record ({exc})"
    if rec.state not in STATES:
        return None, f"unknown state {rec.state!r:.30}"
    if not rec.txn:
        return None, "no transaction id"
    if rec.seq is not None and rec.seq < 0:
        return None, f"negative sequence number {rec.seq}"
    return rec, None


def parse(text: str, path: str) -> tuple[list[tuple[int, Record]], list[Damage]]:
    """(line number, record) for every valid line, and every damaged line."""
    records: list[tuple[int, Record]] = []
    damaged: list[Damage] = []
    lines = text.split("\n")
    last = len(lines)  # "" after a final newline, else the unterminated tail
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        data: Any = None
        try:
            data = json.loads(line)
            body, why = unseal(data)
            rec, why = _record(body) if body is not None else (None, why)
        except (json.JSONDecodeError, RecursionError):
            rec, why = None, "not a complete JSON record"
        if rec is not None:
            records.append((n, rec))
            continue
        d = Damage(n, why or "damaged", f"line:{n}:{zlib.crc32(line.encode(errors='replace')):08x}",
                   torn_tail=n == last)
        _salvage(d, line, data)
        damaged.append(d)
    return records, damaged


def parse_lines(text: str, path: str) -> tuple[list[Record], list[str]]:
    """Records of a journal's text, and a warning per damaged line."""
    records, damaged = parse(text, path)
    return [r for _, r in records], [f"{path}:{d.line}: {d.reason}" for d in damaged]


def fold(path: str, records: list[tuple[int, Record]], damaged: list[Damage]) -> JournalState:
    """Fold records into transactions and the latest state of each change; account for damage."""
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
    for t in st.txns:
        have = [s for (x, s) in seen if x == t.txn]
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


# -- the file -----------------------------------------------------------------------------------

def _free_bytes(d: str) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `d` (or its parent)."""
    while not os.path.isdir(d) and os.path.dirname(d) != d:
        d = os.path.dirname(d)
    s = os.statvfs(d)
    return s.f_bavail * s.f_frsize


@dataclass
class JournalIO:
    """The system calls journal (and open-transaction marker) writes go through: the seam tests use
    to inject short writes, ENOSPC and EIO."""

    write: Callable[[int, bytes], int] = os.write
    fsync: Callable[[int], None] = os.fsync
    free_bytes: Callable[[str], int] = _free_bytes


def write_all(io: JournalIO, fd: int, data: bytes) -> None:
    """Write every byte or raise OSError; a short write is continued, no progress is an error."""
    view = memoryview(data)
    done = 0
    while done < len(data):
        n = io.write(fd, bytes(view[done:]))
        if n <= 0:
            raise OSError(errno.EIO, f"write made no progress after {done} of {len(data)} bytes")
        done += n


def open_regular(path: str, flags: int, mode: int = 0o600) -> int:
    """os.open that refuses what is not a regular file (a FIFO would hang a read; a device or a
    symlink is not ours to append to) before and after opening it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    else:
        if not stat.S_ISREG(st.st_mode):
            raise JournalError(f"{path}: {file_kind(st.st_mode)}, not a regular file; refused")
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise JournalError(f"{path}: {file_kind(st.st_mode)}, not a regular file; refused")
    return fd


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


class Journal:
    """The journal file at a real path (the caller maps node paths through Host)."""

    def __init__(self, path: str, io: JournalIO | None = None) -> None:
        self.path = path
        self.io = io or JournalIO()
        self._fd: int | None = None
        self._size = 0
        self._broken: str | None = None  # a partial record could not be cut back: no more appends
        self.repairs: list[str] = []  # what open() fixed (a torn tail cut off)

    # -- reading ------------------------------------------------------------------------------
    def read_text(self) -> str | None:
        """The journal's text; None when there is no journal. Creates nothing."""
        try:
            fd = open_regular(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read the journal: {_why(exc)}") from None
        try:
            size = os.fstat(fd).st_size
            if size > MAX_JOURNAL_BYTES:
                raise JournalError(f"{self.path}: {size} bytes, more than a journal holds "
                                   f"({MAX_JOURNAL_BYTES >> 20} MiB); refused")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read the journal: {_why(exc)}") from None
        finally:
            os.close(fd)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def load(self) -> JournalState:
        """Every readable record, and an account of damaged lines; an absent journal is empty."""
        text = self.read_text()
        if text is None:
            return JournalState(path=self.path, exists=False)
        records, damaged = parse(text, self.path)
        return fold(self.path, records, damaged)

    # -- writing ------------------------------------------------------------------------------
    def check_space(self, changes: int) -> None:
        """Refuse, before anything is written, when the journal's filesystem is nearly full."""
        need = SPACE_RESERVE + changes * SPACE_PER_CHANGE
        try:
            free = self.io.free_bytes(os.path.dirname(os.path.abspath(self.path)))
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot tell the free space of its filesystem: {_why(exc)}") from None
        if free < need:
            raise JournalError(f"{self.path}: {free >> 10} KiB free on its filesystem, {need >> 10} KiB needed to "
                               f"journal {changes} change(s) and their rollback; free some space (or pass "
                               f"--journal FILE elsewhere); nothing changed")

    def open(self) -> None:
        """Create (durably) and lock the journal for one writer; cut a torn last line off."""
        if self._fd is not None:
            return
        d = os.path.dirname(os.path.abspath(self.path))
        try:
            makedirs_durable(d, self.io)
            created = not os.path.lexists(self.path)
            fd = open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {_why(exc)} "
                               f"(needs root, or pass --journal FILE)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(f"{self.path}: another nodetune apply or rollback holds the journal; "
                               f"wait for it to finish") from None
        self._fd = fd
        self._broken = None
        try:
            if created:
                fsync_dir(d, self.io)  # the file's directory entry must survive a crash too
            self._size = os.fstat(fd).st_size
            if self._size and os.pread(fd, 1, self._size - 1) != b"\n":
                self._repair_tail(fd)
        except OSError as exc:
            self.close()
            raise JournalError(f"{self.path}: {_why(exc)}") from None

    def _repair_tail(self, fd: int) -> None:
        """The file does not end in a newline: a crash tore the last write. A complete record just
        gets its newline; a torn one is cut off (it was never acted on, see the module doc)."""
        keep = max(0, self._size - (1 << 20))
        tail = os.pread(fd, self._size - keep, keep)
        start = keep + tail.rfind(b"\n") + 1
        line = tail[start - keep:]
        records, _ = parse(line.decode("utf-8", errors="replace"), self.path)
        if records:
            write_all(self.io, fd, b"\n")
            self._size += 1
        else:
            os.ftruncate(fd, start)
            self._size = start
            self.repairs.append(f"{self.path}: cut off a torn write from a crash at its end ({len(line)} bytes); "
                                f"its knob was never written")
        self.io.fsync(fd)

    @property
    def size(self) -> int:
        """Bytes of complete records (valid while the journal is open)."""
        return self._size

    def append(self, rec: Record, sync: bool = True) -> None:
        """Write one record in full, fsynced unless `sync` is False; a knob is touched only after its
        intent has been appended. On any failure the file is cut back to where it was.

        `applied` and `rolled_back` records may skip the fsync: losing one to a power cut only
        makes a later rollback restore that knob again, which is harmless (restores are
        idempotent). The process dying does not lose them: the page cache outlives it.
        """
        if self._fd is None:
            self.open()
        assert self._fd is not None
        if self._broken:
            raise JournalError(f"{self.path}: cannot write the journal: {self._broken}")
        data = _dump(rec)
        start = self._size
        try:
            if rec.state == INTENT and rec.seq is not None and crashpoints.reached("torn_intent", rec.seq + 1):
                write_all(self.io, self._fd, data[: len(data) // 2])
                self.io.fsync(self._fd)
                crashpoints.crash_if("torn_intent", rec.seq + 1)
            write_all(self.io, self._fd, data)
            if sync:
                self.io.fsync(self._fd)
        except OSError as exc:
            cut = self._cut(start)
            raise JournalError(f"{self.path}: cannot write the journal: {_why(exc)}" + cut) from None
        self._size = start + len(data)

    def _cut(self, size: int) -> str:
        """Truncate back to `size` after a failed write; '' or what went wrong, for the message."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
            self.io.fsync(self._fd)
        except OSError as exc:
            self._broken = f"a partial record at its end could not be cut off ({_why(exc)})"
            return f"; {self._broken}; a later reader skips it as a torn write"
        self._size = size
        return ""

    def rewind(self, size: int) -> str | None:
        """Cut the journal back to an earlier length (an aborted apply that could not journal its
        rollback, with the node unchanged); None, or why it could not."""
        if self._fd is None:
            return "the journal is not open"
        why = self._cut(size)
        return why.lstrip("; ") or None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fsync_dir(d: str, io: JournalIO | None = None) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        (io or JournalIO()).fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(d: str, io: JournalIO | None = None) -> None:
    """mkdir -p, fsyncing each parent whose entries changed."""
    if os.path.isdir(d):
        return
    parent = os.path.dirname(d)
    if parent and parent != d:
        makedirs_durable(parent, io)
    os.mkdir(d, 0o755)
    fsync_dir(parent or "/", io)


def now() -> float:
    return round(time.time(), 3)
