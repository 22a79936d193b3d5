"""Family-by-family rendering: the same exposition as prometheus-client's, unchanged families reused."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as om

from nodetune.agent.application import Agent
from nodetune.agent.collectors import StateCollector, collector
from nodetune.agent.exposition import CachingRegistry, FamilyCache, render
from nodetune.agent.state import State
from tests.support.agent_support import Running, start_agent, wait_for

_DURATION = re.compile(rb"^nodetune_agent_collector_duration_seconds\{.*\n|^process_.*\n|^nodetune_agent_process_.*\n",
                       re.M)


def _steady(text: bytes) -> bytes:
    return _DURATION.sub(b"", text)  # timings and the process's own CPU differ between any two renders


def _settled(r: Running) -> Agent:
    """The started agent after its first diagnosis, its loop stopped: its state holds still."""
    a = r.agent
    wait_for(lambda: a.state.view.diagnoses_total >= 1, what="a diagnosis")
    a.stop_event.set()
    r.thread.join(timeout=5)
    return a


def test_render_matches_prometheus_client_on_a_running_agent(tmp_path: Path) -> None:
    r = start_agent(tmp_path)
    try:
        a = _settled(r)
        reg = a.registry()
        assert isinstance(reg, CachingRegistry)
        for openmetrics, plain in ((False, generate_latest), (True, om.generate_latest)):
            mine = reg.render(openmetrics)
            assert _steady(mine) == _steady(plain(reg)) and b"nodetune_gpu_utilization_ratio" in mine
        assert reg.render(True).endswith(b"# EOF\n") and reg.render(True).count(b"# EOF") == 1
    finally:
        r.stop()


def test_only_families_whose_fields_changed_are_rendered_again(tmp_path: Path) -> None:
    r = start_agent(tmp_path)
    try:
        a = _settled(r)
        cache = FamilyCache(StateCollector(a.state))
        first = cache.render(False)
        n = cache.rendered
        assert n >= 10
        assert _steady(cache.render(False)) == _steady(first) and cache.rendered == n  # nothing changed
        a.state.update(report=None)  # what verdicts, jobs and history read; not the GPU families
        text = cache.render(False)
        again = cache.rendered - n
        assert 1 <= again < n / 2
        assert b"nodetune_gpu_utilization_ratio" in text
    finally:
        r.stop()


def test_a_failing_family_is_reported_and_the_rest_served() -> None:
    @collector("zz_test_broken")
    def broken(v):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")
        yield  # pragma: no cover

    from nodetune.agent.collectors import COLLECTORS
    try:
        reg = CachingRegistry()
        reg.register(StateCollector(State(4)))
        text = render(reg, False).decode()
        assert 'nodetune_agent_collector_success{collector="zz_test_broken"} 0.0' in text
        assert 'nodetune_agent_collector_success{collector="agent"} 1.0' in text
    finally:
        del COLLECTORS["zz_test_broken"]
