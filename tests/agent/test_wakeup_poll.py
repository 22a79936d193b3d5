"""agent/wakeup.readable: poll(), so a descriptor numbered past select()'s 1023 still wakes a thread
(the agent holds the followed processes' files open)."""

from __future__ import annotations

import os
import resource

import pytest

from nodetune.agent.wakeup import StopEvent, readable


def test_readable_sees_a_descriptor_past_1023_and_times_out_without_input() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft <= 1600:
        pytest.skip(f"open-file limit {soft} leaves no room for descriptor 1500")
    r, w = os.pipe()
    high = os.dup2(r, 1500)
    try:
        assert readable([high], 0.01) == []
        os.write(w, b"x")
        assert readable([high], 1.0) == [high]
    finally:
        for fd in (r, w, high):
            os.close(fd)


def test_a_stop_event_wakes_readable() -> None:
    stop = StopEvent()
    r, w = os.pipe()
    try:
        stop.set()
        assert readable([r, stop.fileno()], None) == [stop.fileno()]
    finally:
        os.close(r)
        os.close(w)
        stop.close()
