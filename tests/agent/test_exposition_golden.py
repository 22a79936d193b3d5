"""Every metric the agent exports, pinned: name, type and label names of each series, rendered from
the replay backend (the shipped H200 snapshot) with every event-driven family given one event.

Like node_exporter's collector/fixtures/e2e-output.txt: a renamed metric, a changed type or a label
added or dropped fails here, on purpose: dashboards, alerts and fleet queries read these names.
After a deliberate change, regenerate the fixture and review its diff:

    NODETUNE_UPDATE_EXPOSITION=1 .venv/bin/python -m pytest tests/agent/test_exposition_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodetune.agent.application import Agent
from nodetune.agent.state import TuningSummary
from nodetune.prefetch.pool import PrefetchTotals
from nodetune.probes.source import open_source
from tests.support.agent_support import REPO

FIXTURE = Path(__file__).parents[1] / "data" / "exposition.txt"
SNAP = str(REPO / "examples/h200-dataloader-starved.json.gz")


def _shape(text: str) -> str:
    """One line a series shape: `sample_name type label,names`, sorted, values and label values dropped."""
    lines = set()
    for fam in text_string_to_metric_families(text):
        lines.add(f"# {fam.name} {fam.type}")
        for s in fam.samples:
            lines.add(f"{s.name} {fam.type} {','.join(sorted(s.labels)) or '-'}")
    return "\n".join(sorted(lines)) + "\n"


def _exposition(tmp_path: Path) -> str:
    root = tmp_path / "root"
    root.mkdir()
    src = open_source(str(root), replay=SNAP)
    assert src.snapshot is not None and src.snapshot.window is not None
    a = Agent(root=str(root), source=src)
    try:
        a.controller.replay(src.snapshot.window)
        st = a.state
        # one event of each kind a replay cannot show, so their label sets are pinned too
        st.count("xid", ("0", "79"))
        st.count("hotplug_events", ("pci", "add"))
        st.count("sample_errors", "gpu")
        st.count("config_reloads", "ok")
        st.count("http_refused", "bad_auth")
        st.update(tuning=TuningSummary("/var/lib/nodetune/journal.jsonl", True, MappingProxyType({"applied": 1}),
                                       MappingProxyType({"cpu_affinity": 1})),
                  autotune_changes=MappingProxyType({("pinning", "cpu_affinity"): 1}),
                  prefetch=PrefetchTotals(followers=1, stopped_total={"exited": 1}))
        return generate_latest(a.registry()).decode()
    finally:
        a.stop()


def test_every_exported_metric_name_type_and_label_set_is_pinned(tmp_path: Path) -> None:
    got = _shape(_exposition(tmp_path))
    if os.environ.get("NODETUNE_UPDATE_EXPOSITION") == "1":
        FIXTURE.write_text(got)
    want = FIXTURE.read_text()
    assert got == want, ("the exported metrics changed; if on purpose, regenerate with "
                         "NODETUNE_UPDATE_EXPOSITION=1 (see this file's docstring) and review the diff")


def test_every_collector_renders_in_the_pinned_exposition(tmp_path: Path) -> None:
    from nodetune.agent.collectors import discover

    text = _exposition(tmp_path)
    for name in discover():
        assert f'nodetune_agent_collector_success{{collector="{name}"}} 1.0' in text, name
    assert "nodetune_agent_http_refused_total counter reason" in FIXTURE.read_text()
