"""Timers sleep until their deadline; a stop still ends every thread at once."""

from __future__ import annotations

import select
import threading
import time
from pathlib import Path

from nodetune.agent.wakeup import StopEvent
from tests.support.agent_support import FAST, start_agent, wait_for

SLOW = FAST.replace("sample_interval_s = 0.15", "sample_interval_s = 30").replace("diagnose_every_s = 1",
                                                                                "diagnose_every_s = 60")


def test_stop_event_is_selectable_and_runs_callbacks() -> None:
    ev = StopEvent()
    hits: list[int] = []
    ev.on_set(lambda: hits.append(1))
    assert select.select([ev], [], [], 0)[0] == []
    threading.Timer(0.05, ev.set).start()
    t0 = time.monotonic()
    assert select.select([ev], [], [], 5)[0] == [ev]  # woken by the set, not a timeout
    assert time.monotonic() - t0 < 2 and ev.is_set()
    ev.set()
    assert hits == [1]  # once, however often it is set
    ev.close()
    ev.close()


def test_a_stop_ends_a_30_s_sleep_at_once(tmp_path: Path) -> None:
    r = start_agent(tmp_path, SLOW)
    a = r.agent
    wait_for(lambda: a.state.view.samples_total >= 1, what="first sample")
    time.sleep(0.3)  # the loop is asleep until its next slot, 30 s away
    assert a.state.view.samples_total == 1
    t0 = time.monotonic()
    a.stop_event.set()  # as the SIGTERM handler does
    r.thread.join(timeout=3)
    worker = next(t for t in a._threads if t.name == "nodetune-diagnosis")
    worker.join(timeout=3)
    assert not r.thread.is_alive() and not worker.is_alive()
    assert time.monotonic() - t0 < 2
    a.stop()
