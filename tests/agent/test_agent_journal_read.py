"""A large tuning journal never stalls the agent's sampling thread: the read is handed to a helper
thread and the tuning gauges follow once it is done."""

from __future__ import annotations

import time
from pathlib import Path

from nodetune.agent.application import Agent
from tests.support.agent_support import busy_node, wait_for, write_config
from tests.tuners.test_journal_compact import _txn


def test_a_large_journal_is_read_off_the_sampling_thread(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _, nv = busy_node(root)
    journal = root / "var/lib/nodetune/journal.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    lines = [line for i in range(3000) for line in _txn(f"t{i:06d}", 1000.0 + i, True)]
    journal.write_bytes(b"".join(lines + _txn("held", 9e6, False)))  # 15k lines, ~3.4 MB
    a = Agent(root=str(root), config_path=str(write_config(root)), nvml=nv)
    try:
        t = time.perf_counter()
        a.controller._poll_journal()  # what the sampling loop calls
        took = time.perf_counter() - t
        assert took < 0.5, f"the sampling thread waited {took:.2f} s for the journal"
        tuning = a.state.view.tuning
        assert tuning is not None and tuning.error is None and dict(tuning.by_state) == {}  # not read yet

        def loaded() -> bool:
            a.controller._poll_journal()
            view = a.state.view.tuning
            return view is not None and dict(view.by_state) == {"rolled_back": 3000, "applied": 1}

        wait_for(loaded, timeout=60, what="the journal's counts")
        assert dict(a.state.view.tuning.active_by_group) == {"thp": 1}  # type: ignore[union-attr]
    finally:
        a.stop()
