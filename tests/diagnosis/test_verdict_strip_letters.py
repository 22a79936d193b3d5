"""Each verdict's rule declares what the history strip draws: a verdict added as one file in
diagnosis/rules/ shows its own letter in `nodetune history JOB`, never '?'."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from nodetune.agent.history import Interval
from nodetune.agent.history_cli import strip
from nodetune.diagnosis.rules import all_rules, strip_letters

NEW_RULE = '''
"""overheated_fan: a made-up verdict, one file."""

PRIMARY_RANK: int | None = 99
STRIP_LETTER: str | None = "F"


def evaluate(ctx):
    return []
'''


def _iv(verdict: str, t0: float, t1: float) -> Interval:
    return Interval(t0, t1, verdict, None, True, 1, None, None, None, None, 0.0, None)


def test_every_verdict_has_its_letter() -> None:
    letters = strip_letters()
    for m in all_rules():
        if m.PRIMARY_RANK is not None:
            assert letters[m.__name__.rsplit(".", 1)[1]] != "?"
    line, _ = strip([_iv("data_starved", 0, 60), _iv("idle", 60, 120)], 0, 120)
    assert line == "D."


def test_a_verdict_added_in_one_file_draws_its_letter(tmp_path: Path) -> None:
    extra = tmp_path / "rules"
    extra.mkdir()
    (extra / "overheated_fan.py").write_text(NEW_RULE)
    # the rules package walks its __path__: a folder added to it is as if the file were in the repo
    code = textwrap.dedent(f"""
        import nodetune.diagnosis.rules as rules
        rules.__path__.append({str(extra)!r})
        from nodetune.agent.history import Interval
        from nodetune.agent.history_cli import strip
        iv = Interval(0, 60, "overheated_fan", None, True, 1, None, None, None, None, 0.0, None)
        print(rules.strip_letters()["overheated_fan"], strip([iv], 0, 60)[0])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["F", "F"]
