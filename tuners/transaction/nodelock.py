"""One lock per node root, and the node's memory of which journals hold open transactions.

The lock (`<root>/run/nodetune/tune.lock`, fcntl.flock, holder pid inside) serialises every
apply and rollback on a node, whatever `--journal` each was given: two journals interleaving
on one node's knobs cannot both be rolled back right. A second one is refused at once with the
holder's pid (waiting would hide a stuck apply; the caller can retry).

The marker (`<root>/var/lib/nodetune/open-transaction`) lists each journal that holds changes
not yet rolled back. It is written (atomically, fsynced) before an apply touches its first knob
and removed when a rollback leaves that journal with nothing to restore. So a journal deleted
or moved while its knobs are still changed is a loud error, not "nothing to roll back", and an
apply over another journal's open transaction is noticed. The lock lives on /run (it serialises
processes, which a reboot ends); the marker lives beside the journals (it mirrors what they hold).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from typing import Any

from nodetune.probes.host import Host
from nodetune.probes.serde import SchemaError, from_jsonable, to_jsonable

from ..errors import JournalError
from .durable import JournalIO, fsync_dir, makedirs_durable, open_regular, os_reason, replace_file
from .record import sealed, unseal

LOCK = "/run/nodetune/tune.lock"
MARKER = "/var/lib/nodetune/open-transaction"


class NodeLock:
    """An exclusive flock on the node's lock file, held for one apply or rollback."""

    def __init__(self, host: Host) -> None:
        self.path = host.path(LOCK)
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as the lock file says ('pid N' or 'an unknown process')."""
        try:
            fd = open_regular(self.path, os.O_RDONLY)
        except (OSError, JournalError):
            return "an unknown process"
        try:
            text = os.read(fd, 64).decode("ascii", errors="replace").strip()
        except OSError:
            text = ""
        finally:
            os.close(fd)
        return f"pid {text}" if text.isdigit() else "an unknown process"

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            os.makedirs(os.path.dirname(self.path), 0o755, exist_ok=True)
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot create the node's tuning lock: {os_reason(exc)} "
                               "(needs root)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(f"another nodetune apply or rollback ({self.holder()}) holds this node's tuning lock "
                               f"{self.path}; wait for it to finish") from None
        try:  # after the flock: only the holder writes its pid (the file is never unlinked: no races)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise JournalError(f"{self.path}: cannot write the node's tuning lock: {os_reason(exc)}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __enter__(self) -> NodeLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class OpenTxn:
    """A journal that holds changes on this node not rolled back yet."""

    journal: str  # the journal file, as a path on this machine
    txn: str  # the transaction that opened it (the latest apply)
    profile: str
    since: float
    pid: int
    changes: int  # changes that apply planned: at most this many knobs are held

    def describe(self) -> str:
        return f"transaction {self.txn} (profile {self.profile}, up to {self.changes} knob(s)) in {self.journal}"


@dataclass
class MarkerData:
    v: int = 1
    open: list[OpenTxn] = field(default_factory=list)

    def of(self, journal: str) -> OpenTxn | None:
        return next((o for o in self.open if o.journal == journal), None)


def journal_key(path: str) -> str:
    """How the marker names a journal: its absolute path."""
    return os.path.abspath(path)


class OpenMarker:
    """The node's open-transaction marker file."""

    def __init__(self, host: Host, io: JournalIO | None = None) -> None:
        self.path = host.path(MARKER)
        self.io = io or JournalIO()

    def read(self) -> tuple[MarkerData, str | None]:
        """The marker, and a warning when it is damaged (read as empty: the journals still count)."""
        try:
            fd = open_regular(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return MarkerData(), None
        except (OSError, JournalError) as exc:
            why = exc.reason if isinstance(exc, JournalError) else os_reason(exc)
            return MarkerData(), f"{self.path}: cannot read the open-transaction marker: {why}"
        try:
            raw = os.read(fd, 1 << 20)
        except OSError as exc:
            return MarkerData(), f"{self.path}: cannot read the open-transaction marker: {os_reason(exc)}"
        finally:
            os.close(fd)
        try:
            data: Any = json.loads(raw.decode("utf-8", errors="replace"))
            body, bad = unseal(data)
            if body is None:
                raise SchemaError(bad or "damaged")
            return from_jsonable(MarkerData, body), None
        except (ValueError, RecursionError) as exc:
            return MarkerData(), (f"{self.path}: the open-transaction marker is damaged ({str(exc)[:80]}); "
                                  f"it is rewritten by the next apply or rollback")

    def write(self, m: MarkerData) -> None:
        """Replace the marker atomically (temp file, fsync, rename, fsync the directory); an empty
        one is removed. JournalError when it cannot be written."""
        d = os.path.dirname(self.path)
        try:
            if os.path.lexists(self.path) and not os.path.isfile(self.path) or os.path.islink(self.path):
                open_regular(self.path, os.O_RDONLY)  # raises naming what is there instead
            if not m.open:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    return
                fsync_dir(d, self.io)
                return
            makedirs_durable(d, self.io)
            replace_file(self.path, sealed(to_jsonable(m)), self.io)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot write the open-transaction marker: {os_reason(exc)}") from None

    def add(self, o: OpenTxn) -> None:
        m, _ = self.read()  # a damaged marker is replaced by one naming what is open now
        m.open = [x for x in m.open if x.journal != o.journal] + [o]
        self.write(m)

    def remove(self, journal: str) -> None:
        m, damaged = self.read()
        if m.of(journal) is None and not (damaged and os.path.isfile(self.path)):
            return  # a damaged marker is replaced by what is known now (it could name no journal)
        m.open = [x for x in m.open if x.journal != journal]
        self.write(m)
