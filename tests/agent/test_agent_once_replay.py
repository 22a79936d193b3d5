"""`nodetune agent --once --replay SNAPSHOT`, as the README promises: the snapshot's window
diagnosed once and its exposition printed, nothing written to the node; --replay alone is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.agent_support import REPO, parse, value

SNAP = str(REPO / "examples/h200-dataloader-starved.json.gz")


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodetune.cli", "agent", *args], capture_output=True, text=True,
                          timeout=120)


def test_once_replay_prints_the_snapshots_verdicts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    r = _agent("--once", "--replay", SNAP, "--root", str(root))
    assert r.returncode == 0, r.stderr
    m = parse(r.stdout)
    assert value(m, "nodetune_gpu_verdict", gpu="0", verdict="data_starved") == 1.0
    assert (value(m, "nodetune_agent_samples_total") or 0) >= 2
    assert value(m, "nodetune_agent_diagnoses_total") == 1.0
    assert value(m, "nodetune_agent_history_up") == 0.0  # a replay is no job of this node's
    assert list(root.rglob("*")) == []  # no history, no journal: nothing written under the root


def test_replay_without_once_and_a_damaged_snapshot_are_one_line(tmp_path: Path) -> None:
    r = _agent("--replay", SNAP, "--root", str(tmp_path))
    assert r.returncode == 2 and "--replay" in r.stderr and "--once" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = _agent("--once", "--replay", str(bad), "--root", str(tmp_path))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("nodetune: error: "), r.stderr
