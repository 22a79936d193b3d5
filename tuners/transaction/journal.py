"""The tuning journal: one checksummed JSON record per line, written in full and fsynced before a
knob is touched.

Records of one change move through states: `intent` (the original value, written before the
knob) -> `applied` (the value the kernel reports after the write; it repeats the knob, original
and target, so a damaged intent line loses nothing) -> `rolled_back`; or `gone` (the thread
vanished before the write; nothing changed). A rollback that could not restore a knob writes
`restore_failed` (the operator is told to fix it and run rollback again, so its next value is
not someone else's change). Transactions are bracketed by `begin` and `commit`/`aborted`, which
carry the number of journaled changes so a lost last change is noticed.

Integrity (`record`) and what damage means (`fold`) have modules of their own; durability of
the file (`durable`) is shared with the node lock and the marker.

A record is written with one
loop that checks the byte count; if it cannot be written in full and fsynced, the file is cut
back (ftruncate) to its previous length and the caller gets a JournalError before any knob moves.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator

from nodetune.probes import crashpoints

from ..errors import JournalError
from .durable import JournalIO, fsync_dir, makedirs_durable, open_regular, os_reason, write_all
from .fold import JournalState, fold
from .record import INTENT, Damage, Record, dump, parse, parse_stream

DEFAULT_JOURNAL = "/var/lib/nodetune/journal.jsonl"
MAX_JOURNAL_BYTES = 256 << 20  # years of tuning; anything larger is not ours

# Bytes an apply needs on the journal's filesystem: a fixed reserve plus, per change, its intent,
# applied and rolled_back records with room to spare (a 224-CPU governor intent is ~480 bytes).
SPACE_RESERVE = 128 << 10
SPACE_PER_CHANGE = 2048


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
    def _open_for_read(self) -> int | None:
        """An fd of the journal for reading; None when there is none. Creates nothing."""
        try:
            fd = open_regular(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read the journal: {os_reason(exc)}") from None
        size = os.fstat(fd).st_size
        if size > MAX_JOURNAL_BYTES:
            os.close(fd)
            raise JournalError(f"{self.path}: {size} bytes, more than a journal holds "
                               f"({MAX_JOURNAL_BYTES >> 20} MiB); refused")
        return fd

    def read_text(self) -> str | None:
        """The journal's text; None when there is no journal. Creates nothing."""
        fd = self._open_for_read()
        if fd is None:
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read the journal: {os_reason(exc)}") from None
        finally:
            os.close(fd)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def raw_lines(self) -> Iterator[bytes]:
        """The journal's lines as written, each with its newline (the last may lack one)."""
        fd = self._open_for_read()
        if fd is None:
            return
        try:
            with os.fdopen(fd, "rb", buffering=1 << 20) as f:
                yield from f
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read the journal: {os_reason(exc)}") from None

    def load(self) -> JournalState:
        """Every readable record, and an account of damaged lines; an absent journal is empty.

        The file is read a line at a time into the fold: memory holds the state, not the text."""
        fd = self._open_for_read()
        if fd is None:
            return JournalState(path=self.path, exists=False)
        damaged: list[Damage] = []
        try:
            with os.fdopen(fd, "rb", buffering=1 << 20) as f:
                lines = (raw.decode("utf-8", errors="replace") for raw in f)
                return fold(self.path, parse_stream(lines, damaged), damaged)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read the journal: {os_reason(exc)}") from None

    # -- writing ------------------------------------------------------------------------------
    def check_space(self, changes: int) -> None:
        """Refuse, before anything is written, when the journal's filesystem is nearly full."""
        need = SPACE_RESERVE + changes * SPACE_PER_CHANGE
        try:
            free = self.io.free_bytes(os.path.dirname(os.path.abspath(self.path)))
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot tell the free space of its filesystem: {os_reason(exc)}") from None
        if free < need:
            raise JournalError(f"{self.path}: {free >> 10} KiB free on its filesystem, {need >> 10} KiB needed to "
                               f"journal {changes} change(s) and their rollback; free some space (or pass "
                               f"--journal FILE elsewhere); nothing changed")

    def open(self, retries: int = 3) -> None:
        """Create (durably) and lock the journal for one writer; cut a torn last line off."""
        if self._fd is not None:
            return
        d = os.path.dirname(os.path.abspath(self.path))
        try:
            makedirs_durable(d, self.io)
            created = not os.path.lexists(self.path)
            fd = open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {os_reason(exc)} "
                               f"(needs root, or pass --journal FILE)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(f"{self.path}: another nodetune apply or rollback holds the journal; "
                               f"wait for it to finish") from None
        if not self._still_at_path(fd):
            # a compaction replaced the file between our open and our lock: lock the new one
            os.close(fd)
            if retries <= 0:
                raise JournalError(f"{self.path}: the journal keeps being replaced; try again")
            return self.open(retries - 1)
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
            raise JournalError(f"{self.path}: {os_reason(exc)}") from None

    def _still_at_path(self, fd: int) -> bool:
        """Is the open file still the one at the path (not renamed over by a compaction)?"""
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (mine.st_dev, mine.st_ino) == (at_path.st_dev, at_path.st_ino)

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
        data = dump(rec)
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
            raise JournalError(f"{self.path}: cannot write the journal: {os_reason(exc)}" + cut) from None
        self._size = start + len(data)

    def _cut(self, size: int) -> str:
        """Truncate back to `size` after a failed write; '' or what went wrong, for the message."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
            self.io.fsync(self._fd)
        except OSError as exc:
            self._broken = f"a partial record at its end could not be cut off ({os_reason(exc)})"
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



def now() -> float:
    return round(time.time(), 3)
