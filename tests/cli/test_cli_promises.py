"""What the README promises of every command: `-h`, help in words, one-line errors in words,
`--replay` on read-only commands, full-width output when piped, fleet telling a non-Prometheus apart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.agent_support import start_agent, wait_for

REPO = Path(__file__).resolve().parents[2]
SNAP = str(REPO / "examples/h200-dataloader-starved.json.gz")
MAIN = "from nodetune.cli.app import main; main()"


def nodetune(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True, timeout=120, env=env)


def test_dash_h_and_help_in_words() -> None:
    for cmd in ([], ["tune", "plan"], ["exec"], ["history"], ["fleet"], ["config", "check"], ["diagnose"]):
        r = nodetune(*cmd, "-h")
        assert r.returncode == 0 and "Usage:" in r.stdout, (cmd, r.stderr)
        assert not re.search(r"<(str|int|float|list\[\w+\])>", r.stdout), (cmd, r.stdout)
    assert "--pid PID" in nodetune("tune", "plan", "-h").stdout


def test_wrong_type_is_one_line_in_words() -> None:
    r = nodetune("tune", "plan", "--pid", "abc")
    assert r.returncode == 2 and r.stderr.strip() == "nodetune: error: --pid: expected a whole number, got 'abc'"


def test_range_and_since_share_one_grammar(tmp_path: Path) -> None:
    r = nodetune("history", "--db", str(tmp_path / "none.sqlite"), "--since", "1.5x")
    assert r.returncode == 2 and "expected a duration such as 90s, 30m, 1.5h, 7d or 1w" in r.stderr
    r = nodetune("fleet", "--prometheus", "http://127.0.0.1:9", "--range", "1.5x")
    assert r.returncode == 2 and "expected a duration such as 90s, 30m, 1.5h, 7d or 1w" in r.stderr
    r = nodetune("fleet", "--prometheus", "http://127.0.0.1:9", "--range", "1.5h")
    assert "--range" not in r.stderr and "cannot reach Prometheus" in r.stderr  # 1.5h parses for both


def test_fleet_pointed_at_an_agent_says_it_is_not_prometheus(tmp_path: Path) -> None:
    a = start_agent(tmp_path)
    try:
        wait_for(lambda: a.agent.state.view.sample is not None, what="sampled")
        r = nodetune("fleet", "--prometheus", a.url)
    finally:
        a.stop()
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "not a Prometheus server" in lines[0], r.stderr


def test_piped_output_is_not_cut_at_80_columns() -> None:
    r = nodetune("diagnose", "--replay", SNAP)
    assert r.returncode == 0, r.stderr
    cmdline = "/opt/torch/.venv/bin/python3 /work/main/bench/workloads/cpu_starved.py --seconds 66.0 --device cuda:0"
    assert cmdline in r.stdout and max(map(len, r.stdout.splitlines())) > 80


def test_tune_recommend_takes_replay(tmp_path: Path) -> None:
    r = nodetune("tune", "recommend", "--replay", SNAP, "--root", "/", "--json")
    assert r.returncode == 0, r.stderr
    assert '"changes"' in r.stdout
    both = nodetune("tune", "recommend", "--replay", SNAP, "--advice", "x.json")
    assert both.returncode == 2 and "give one" in both.stderr


def test_prefetch_of_a_device_says_only_that_it_failed() -> None:
    r = nodetune("prefetch", "/dev/null")
    assert r.returncode == 1 and r.stdout.strip() == "nothing warmed: 1 failed"
    assert "character device" in r.stderr and "warmed" not in r.stderr
