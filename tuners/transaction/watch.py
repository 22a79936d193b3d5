"""The journal's counts for a reader that must never wait on it: the agent's sampling thread.

`JournalWatch.poll()` costs one stat(): while the file is the one last read (same device, inode,
size and modification time) it returns the cached counts. A changed journal smaller than
`sync_below` (a few milliseconds of parsing) is read at once; a larger one is loaded by a helper
thread while `poll()` keeps returning the previous counts (marked `pending`). A journal of
hundreds of thousands of lines then delays the tuning gauges, never a sample. Like
verify and status, it takes no lock and writes nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .journal import Journal

FileKey = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
SYNC_BELOW = 256 << 10  # bytes: ~800 records, parsed in a few milliseconds


@dataclass(frozen=True)
class JournalCounts:
    """What the journal holds, counted: changes by last state, changes still set by knob group."""

    path: str
    exists: bool
    by_state: dict[str, int] = field(default_factory=dict)  # `restore_failed`: set, its restore failed
    active_by_group: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # the journal could not be read: why
    pending: bool = False  # a read of a newer version is under way; these counts are the last ones


def journal_counts(path: str) -> JournalCounts:
    """Load the journal at `path` and count it; an unreadable journal is a value with `error`."""
    try:
        st = Journal(path).load()
    except Exception as exc:  # JournalError, and a bug on a damaged file alike: a value, not a crash
        return JournalCounts(path, True, error=getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")
    by_state = dict(st.compacted.by_state) if st.compacted is not None else {}
    active: dict[str, int] = {}
    for e in st.entries():
        # an entry whose restore failed is still applied in the fold; the count says what to do
        state = "restore_failed" if e.attempted and e.active else e.state
        by_state[state] = by_state.get(state, 0) + 1
        if e.active:
            active[e.knob.group] = active.get(e.knob.group, 0) + 1
    return JournalCounts(path, st.exists, by_state, active)


def _key(path: str) -> FileKey | None:
    """The file's identity and version; None when there is no file. OSError when stat fails."""
    try:
        s = os.stat(path)
    except FileNotFoundError:
        return None
    return s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns


class JournalWatch:
    """Cached counts of one journal, reloaded on a helper thread when the file changes."""

    def __init__(self, path: str, load: Callable[[str], JournalCounts] = journal_counts,
                 sync_below: int = SYNC_BELOW) -> None:
        self.path = path
        self._load = load
        self.sync_below = sync_below
        self._mu = threading.Lock()
        self._key: FileKey | None = None
        self._counts: JournalCounts | None = None
        self._loading: threading.Thread | None = None
        self.loads = 0  # completed loads (tests and the benchmark count them)

    def poll(self) -> JournalCounts:
        """The latest counts, at once; starts a load when the file changed since the last one."""
        try:
            key = _key(self.path)
        except OSError as exc:
            return JournalCounts(self.path, True, error=exc.strerror or str(exc))
        with self._mu:
            if key is None:
                self._key, self._counts = None, JournalCounts(self.path, False)
                return self._counts
            if key == self._key and self._counts is not None:
                return self._counts
            if self._loading is None and key[2] < self.sync_below:
                self._key, self._counts = key, self._load(self.path)
                self.loads += 1
                return self._counts
            if self._loading is None:
                self._loading = threading.Thread(target=self._run, args=(key,), name="nodetune-journal", daemon=True)
                self._loading.start()
            last = self._counts or JournalCounts(self.path, True)
            return replace(last, pending=True)

    def _run(self, key: FileKey) -> None:
        counts = self._load(self.path)
        with self._mu:
            self._key, self._counts, self._loading = key, counts, None
            self.loads += 1

    def wait(self, timeout: float | None = None) -> JournalCounts:
        """Poll until no load is pending (tests, the benchmark, `--once`); the counts then."""
        counts = self.poll()
        while counts.pending:
            t = self._loading
            if t is not None:
                t.join(timeout)
                if timeout is not None and t.is_alive():
                    return counts
            counts = self.poll()
        return counts
