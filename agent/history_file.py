"""Is the history database file still the one the agent's connection writes?

SQLite keeps writing to a deleted file's inode and to a file whose header was overwritten (its
pages are cached), so neither fails a write: one stat and a 16-byte read a write batch see both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class FileLoss:
    """The history file is gone from under the connection: why, and whether opening the path again
    is safe (a deleted or replaced file) or would write into something else's file (overwritten)."""

    reason: str
    reopen: bool


def file_identity(path: str) -> tuple[int, int]:
    """(st_dev, st_ino) of the file at `path`."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def file_lost(path: str, opened: tuple[int, int] | None) -> FileLoss | None:
    """Why `path` is no longer the SQLite file opened as `opened` (its identity), or None."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return FileLoss(f"{path}: deleted while the agent ran; created again at the next write", True)
    except OSError as exc:
        return FileLoss(f"{path}: unreadable: {exc.strerror or exc}", True)
    if opened is not None and (st.st_dev, st.st_ino) != opened:
        return FileLoss(f"{path}: replaced by another file while the agent ran; opened again at the next write", True)
    if head != SQLITE_HEADER:
        return FileLoss(f"{path}: header overwritten, not an SQLite database any more; history off until "
                        "a reload or restart (move the file away)", False)
    return None
