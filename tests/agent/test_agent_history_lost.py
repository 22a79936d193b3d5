"""The history database deleted or its header overwritten while the agent runs: history_up goes 0
with one log line naming the path and why; a deleted file is created again, an overwritten one is
left alone until a reload; the agent never stops."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nodetune.agent.collectors import StateCollector
from nodetune.agent.history import History
from nodetune.agent.sinks import Sinks
from nodetune.agent.state import State
from nodetune.config.agent import AgentConfig
from nodetune.diagnosis.findings import Report
from nodetune.probes.host import Host
from tests.support.agent_support import FAST, start_agent, wait_for

DB = "var/lib/nodetune/history.sqlite"


def _lines(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and str(path) in r.getMessage() and "history off" in r.getMessage()]


def test_sinks_take_history_down_for_one_batch_then_create_it_again(tmp_path: Path) -> None:
    state = State(4)
    sinks = Sinks(Host(str(tmp_path)), state, lambda: None)
    sinks.configure(AgentConfig())
    db = tmp_path / DB
    report = Report(1, "agent", "", 1.0, 1.0, None, "fake")
    sinks.remember(report, 0.0, 1.0)
    assert state.view.history_up and db.exists()
    db.unlink()
    sinks.remember(report, 1.0, 2.0)
    v = state.view
    assert not v.history_up and str(db) in (v.history_reason or "") and "deleted" in (v.history_reason or "")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StateCollector(state))
    assert b"\nnodetune_agent_history_up 0.0\n" in generate_latest(reg)
    sinks.remember(report, 2.0, 3.0)
    assert state.view.history_up and db.exists()
    sinks.close()


def test_a_deleted_history_is_noticed_and_created_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "nodetune.agent")
    r = start_agent(tmp_path, FAST)
    db = r.root / DB
    try:
        wait_for(lambda: r.agent.state.view.history_writes_total >= 1, 40, "a history write")
        db.unlink()
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        (line,) = wait_for(lambda: _lines(caplog, db), 40, "one log line")
        assert "deleted" in line and "\n" not in line
        writes = r.agent.state.view.history_writes_total
        wait_for(lambda: r.agent.state.view.history_up and r.agent.state.view.history_writes_total > writes, 40,
                 "history re-created and written")
        assert db.exists() and len(_lines(caplog, db)) == 1
    finally:
        r.stop()
    h = History(str(db)).open(create=False)
    assert h.jobs() and h.integrity() == "ok"  # the rows after the deletion reached the new file
    h.close()


def test_an_overwritten_header_takes_history_down_until_a_reload(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    r = start_agent(tmp_path)
    db = r.root / DB
    try:
        wait_for(lambda: r.agent.state.view.history_writes_total >= 1, 40, "a history write")
        with open(db, "r+b") as f:
            f.write(b"garbage garbage!")  # the 16-byte header
        wait_for(lambda: not r.agent.state.view.history_up, 40, "history_up 0")
        reason = r.agent.state.view.history_reason or ""
        assert "header overwritten" in reason and str(db) in reason
        n = r.agent.state.view.diagnoses_total
        wait_for(lambda: r.agent.state.view.diagnoses_total >= n + 2, 40, "two more diagnoses")
        assert not r.agent.state.view.history_up  # refused: the agent does not write into that file
        assert r.agent.state.view.samples_total > 0 and len(_lines(caplog, db)) == 1
    finally:
        r.stop()
