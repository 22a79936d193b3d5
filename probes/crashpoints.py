"""Crash points: where a test may SIGKILL an apply or rollback to prove the journal recovers.

Used by the tuning journal, apply and rollback (tuners/transaction/) and by `Host.write`'s
replacement of file-backed knobs (`probes.knob_file`), so it sits with the lowest of them.

A no-op unless the environment variable NODETUNE_TEST_CRASH_AT names a point and a count,
e.g. "after_write:2" (right after the second knob write) or "torn_intent:1" (half of the first
intent record written). Points: after_begin, after_marker (the node's open-transaction marker
written, no knob touched yet), torn_intent, after_intent, after_write, after_applied,
before_commit, after_restore, after_rolled_back, knob_tmp_written (a knob file's new value
written to its temp file, not yet renamed over it), replace_tmp_written (the same for a whole
journal or marker file: a compaction). Counts are 1-based.
"""

from __future__ import annotations

import os
import signal

ENV = "NODETUNE_TEST_CRASH_AT"


def spec() -> tuple[str, int] | None:
    """The (point, count) the environment asks for, or None."""
    raw = os.environ.get(ENV)
    if not raw:
        return None
    point, _, count = raw.partition(":")
    return point, int(count) if count.isdigit() else 1


def reached(point: str, count: int) -> bool:
    return spec() == (point, count)


def crash_if(point: str, count: int) -> None:
    """SIGKILL this process (no cleanup, no finally blocks) if a test asked for this point."""
    if reached(point, count):
        os.kill(os.getpid(), signal.SIGKILL)
