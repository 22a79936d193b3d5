"""Strings from the node (a command line, a comm) holding line breaks or escape codes cannot forge
output lines or reach the output raw."""

from __future__ import annotations

import gzip
import io
import json
import logging
from pathlib import Path

from rich.console import Console

from nodetune.cli.render_diagnosis import render_report
from nodetune.config.diagnosis import Thresholds
from nodetune.diagnosis.engine import diagnose
from nodetune.probes.host import inert as safe
from nodetune.probes.snapshot import load_snapshot

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "h200-dataloader-starved.json.gz"
FORGED = "train.py\r\nnodetune: all healthy\x1b[2J\x1b]0;owned\x07"


def test_safe_writes_controls_out() -> None:
    assert safe("a\r\nb\x1b[31m\x9b\u2028") == "a\\r\\nb\\x1b[31m\\x9b\\u2028"
    assert safe("plain é 日本") == "plain é 日本"


def test_forged_command_line_stays_on_its_line_in_piped_diagnose(tmp_path: Path) -> None:
    doc = json.loads(gzip.decompress(EXAMPLE.read_bytes()))
    for p in doc["window"]["processes"]:
        p["cmdline"] = ["python3", FORGED]
        p["comm"] = "py\nnodetune: ok"
    f = tmp_path / "s.json"
    f.write_text(json.dumps(doc))
    snap = load_snapshot(str(f))
    assert snap.window is not None
    report = diagnose(snap.topology, snap.window, Thresholds(), str(f))
    buf = io.StringIO()
    render_report(report, Console(file=buf, width=200, force_terminal=False, color_system=None))
    out = buf.getvalue()
    assert "train.py\\r\\nnodetune: all healthy\\x1b[2J" in out  # shown, written out
    assert not any(line.startswith("nodetune:") for line in out.splitlines()), out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out


def test_log_lines_write_controls_out() -> None:
    from nodetune.agent.ratelog import SafeFormatter

    rec = logging.LogRecord("nodetune.agent", logging.WARNING, __file__, 1, "job %s: %s", ("x", FORGED), None)
    line = SafeFormatter("%(message)s").format(rec)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line


def _plain(render: object, *args: object) -> str:
    buf = io.StringIO()
    render(*args, Console(file=buf, width=250, force_terminal=False, color_system=None))  # type: ignore[operator]
    return buf.getvalue()


def _inert(out: str) -> None:
    assert not any(line.lstrip(" │|-").startswith("nodetune:") for line in out.splitlines()), out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out


def test_tune_tables_write_a_threads_name_and_warnings_out() -> None:
    """A thread names itself (prctl) and a warning quotes a command line: neither forges a line."""
    from types import SimpleNamespace

    from nodetune.cli.render_tune import render_plan, render_rollback, render_status
    from nodetune.tuners.contract import Change, Knob

    knob = Knob(id="affinity:42:43", kind="affinity", group="affinity", label=f"affinity pid 42 ({FORGED})", pid=42)
    ch = Change("pinning", knob, "0-223", "0-55", reason=f"local CPUs of {FORGED}", warnings=[FORGED])
    plan = SimpleNamespace(profile="x\x1b[31m", source="profile", changes=[ch], notes=[FORGED], warnings=[FORGED],
                           count=lambda a: 1)
    out = _plain(render_plan, plan)
    assert "\\r\\nnodetune: all healthy\\x1b[2J" in out
    _inert(out)
    row = SimpleNamespace(txn="t1", knob=knob, original=FORGED, outcome="restored", reason=FORGED)
    _inert(_plain(render_rollback, SimpleNamespace(rows=[row], journal="/j", warnings=[FORGED])))
    active = SimpleNamespace(txn="t1", knob=knob, original="a\rb", set_value=FORGED, since=None)
    txn = SimpleNamespace(txn="t1", started=None, profile=FORGED, state="applied", changes=1, active=1)
    _inert(_plain(render_status, SimpleNamespace(txns=[txn], active=[active], journal="/j", warnings=[FORGED])))


def test_topo_writes_node_names_out(tmp_path: Path) -> None:
    from nodetune.cli.render_topo import render_topology
    from nodetune.probes.host import Host
    from nodetune.probes.node import probe_topology
    from nodetune.probes.source import NoGpuBackend
    from tests.support.faketree import FakeNode, dgx_h100

    dgx_h100(tmp_path)
    FakeNode(tmp_path).attr("/proc/sys/kernel/hostname", FORGED)
    backend = NoGpuBackend(f"reason {FORGED}")
    topo = probe_topology(Host(str(tmp_path)), backend, backend.open())
    out = _plain(render_topology, topo)
    assert "\\r\\nnodetune: all healthy" in out
    _inert(out)
