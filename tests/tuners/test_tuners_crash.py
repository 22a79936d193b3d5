"""SIGKILL during apply (and during rollback), then `nodetune tune rollback` restores every original.

Each case runs the real CLI in a subprocess on a fake tree, with NODETUNE_TEST_CRASH_AT naming the
point where the process kills itself with SIGKILL: no finally blocks, no atexit, exactly what a
crash or `kill -9` leaves behind. Thread affinity lives in the tree's /proc files (TreeAffinity), so
it survives the killed process like the kernel's would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nodetune.probes.crashpoints import ENV
from tests.support.tuners_support import changed, knob_values, laptop_with_job

PROFILE = """
description = "crash test"
[hugepages]
thp_enabled = "always"
thp_defrag = "never"
hugetlb_pages_per_node = 64
[readahead]
paths = ["/"]
read_ahead_kb = 4096
[power]
governor = "performance"
epp = "performance"
epb = 0
[pinning]
pids = [4242]
cpus = "0-3"
"""
TOTAL = 32  # 2 THP + 1 hugetlb + 2 readahead + 8 governor + 8 EPP + 8 EPB + 3 threads


def nodetune(root: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if crash:
        env[ENV] = crash
    return subprocess.run([sys.executable, "-m", "nodetune.cli", *args, "--root", str(root)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture
def node(tmp_path):
    laptop_with_job(tmp_path / "root")
    (tmp_path / "crash.toml").write_text(PROFILE)
    return tmp_path / "root", str(tmp_path / "crash.toml")


def test_profile_covers_every_knob_kind(node):
    root, profile = node
    before = knob_values(root)
    r = nodetune(root, "tune", "apply", "--profile", profile)
    assert r.returncode == 0, r.stderr
    assert len(changed(before, knob_values(root))) == TOTAL


# (crash point, knobs written when the process dies)
CASES = [
    ("after_begin:1", 0),
    ("after_marker:1", 0),  # the marker names the journal, no knob touched: rollback clears it
    ("torn_intent:1", 0),
    ("after_intent:1", 0),
    ("after_write:1", 1),
    ("after_applied:1", 1),
    ("after_write:3", 3),  # the hugetlb pool
    ("torn_intent:12", 11),
    ("after_intent:20", 19),
    ("after_write:30", 30),  # a thread's affinity
    ("after_applied:32", 32),
    ("before_commit:1", 32),
]


@pytest.mark.parametrize(("point", "written"), CASES)
def test_sigkill_during_apply_then_rollback_restores_exactly(node, point, written):
    root, profile = node
    before = knob_values(root)
    r = nodetune(root, "tune", "apply", "--profile", profile, crash=point)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)
    assert len(changed(before, knob_values(root))) == written

    st = nodetune(root, "tune", "status", "--json")
    assert st.returncode == 0
    if written:
        assert '"interrupted (run rollback)"' in st.stdout

    rb = nodetune(root, "tune", "rollback")
    assert rb.returncode == 0, rb.stderr
    assert changed(before, knob_values(root)) == {}
    if point.startswith("torn_intent"):
        assert "torn write" in rb.stdout
    again = nodetune(root, "tune", "rollback")
    assert again.returncode == 0 and "nothing to roll back" in again.stdout
    assert not (root / "var/lib/nodetune/open-transaction").exists()


@pytest.mark.parametrize("point", ["after_restore:5", "after_rolled_back:20", "after_restore:32"])
def test_sigkill_during_rollback_then_rollback_again_finishes(node, point):
    root, profile = node
    before = knob_values(root)
    assert nodetune(root, "tune", "apply", "--profile", profile).returncode == 0
    r = nodetune(root, "tune", "rollback", crash=point)
    assert r.returncode == -signal.SIGKILL
    assert changed(before, knob_values(root)) != {}  # half-way
    r = nodetune(root, "tune", "rollback")
    assert r.returncode == 0, r.stderr
    assert changed(before, knob_values(root)) == {}


def test_sigkill_after_two_stacked_transactions(node, tmp_path):
    """A second apply on the same knobs dies mid-way; rollback unwinds both to the first originals.

    The second apply is of the same profile (edited): another profile over an open transaction
    needs --force, which the engine checks (tests/tuners/test_journal_faults.py)."""
    root, profile = node
    before = knob_values(root)
    assert nodetune(root, "tune", "apply", "--profile", profile).returncode == 0
    second = tmp_path / "edited" / "crash.toml"
    second.parent.mkdir()
    second.write_text('[hugepages]\nthp_enabled = "never"\nthp_defrag = "always"\n[power]\ngovernor = "powersave"\n')
    r = nodetune(root, "tune", "apply", "--profile", str(second), crash="after_write:3")
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert nodetune(root, "tune", "rollback").returncode == 0
    assert changed(before, knob_values(root)) == {}
