"""The StackRecorder's bad cases are notes, never exceptions: py-spy missing, a process that is gone,
a slice kept only as long as a window needs it."""

from __future__ import annotations

import time

from nodetune.probes.pystacks import StackRecorder, StackSample


def test_missing_pyspy_is_a_reason_per_process() -> None:
    r = StackRecorder(slice_s=1, rate_hz=5)
    r.exe = None  # as on a node where py-spy is not installed
    r.tick([4242])
    got = r.slices(0, time.monotonic() + 1)
    assert len(got) == 1 and not got[0].ok and "py-spy is not installed" in (got[0].reason or "")
    r.tick([4242])  # not retried at once: one note, not one per sample
    assert len(r.slices(0, time.monotonic() + 1)) == 1


def test_process_gone_is_a_reason_not_a_crash() -> None:
    r = StackRecorder(slice_s=1, rate_hz=5, retry_s=60)
    if r.exe is None:
        return  # covered by the test above
    r.tick([2**22 + 17])  # above pid_max's default: no such process
    deadline = time.monotonic() + 10
    while r.running and time.monotonic() < deadline:
        time.sleep(0.1)
        r.tick([2**22 + 17])
    got = r.slices(0, time.monotonic() + 1, finish=True)
    assert got and not got[0].ok and got[0].reason


def test_old_slices_are_dropped() -> None:
    now = [1000.0]
    r = StackRecorder(slice_s=1, keep_s=30, clock=lambda: now[0])
    r.exe = None
    r.done.append(StackSample(pid=1, ok=True, t_start=900.0, t_end=901.0))
    r.tick([])
    assert list(r.done) == []
