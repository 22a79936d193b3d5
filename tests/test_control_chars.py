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

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "h200-dataloader-starved.json.gz"
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
