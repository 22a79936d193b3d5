"""SIGKILL while a knob file is written (apply or rollback) leaves its old value or its new one,
never an empty file: file-backed knobs are replaced, kernel attributes written
plainly (Host.write, probes/knob_file.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nodetune.probes.host import Host
from nodetune.probes.knob_file import replaceable
from tests.support.faketree import laptop
from tests.support.tuners_support import changed, knob_values, laptop_with_job
from tests.tuners.test_tuners_crash import PROFILE, nodetune

THP = "/sys/kernel/mm/transparent_hugepage/enabled"


@pytest.fixture
def node(tmp_path):
    laptop_with_job(tmp_path / "root")
    (tmp_path / "crash.toml").write_text(PROFILE)
    return tmp_path / "root", str(tmp_path / "crash.toml")


def _raw(root: Path, keys: list[str]) -> dict[str, str]:
    return {k: (root / k.lstrip("/")).read_text() for k in keys}


@pytest.mark.parametrize("point", ["knob_tmp_written:1", "knob_tmp_written:3", "knob_tmp_written:17",
                                   "knob_tmp_written:29"])
def test_sigkill_mid_write_during_rollback_leaves_old_or_new(node, point):
    root, profile = node
    before = knob_values(root)
    assert nodetune(root, "tune", "apply", "--profile", profile).returncode == 0
    applied = knob_values(root)
    keys = sorted(changed(before, applied))
    r = nodetune(root, "tune", "rollback", crash=point)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert all(text.strip() for text in _raw(root, keys).values())  # no knob file left empty
    now = knob_values(root)
    assert all(now[k] in (before[k], applied[k]) for k in keys)
    assert nodetune(root, "tune", "rollback").returncode == 0
    assert changed(before, knob_values(root)) == {}  # the crashed writer's temp file is gone too


def test_sigkill_mid_write_during_apply_leaves_old_or_new(node):
    root, profile = node
    before = knob_values(root)
    r = nodetune(root, "tune", "apply", "--profile", profile, crash="knob_tmp_written:2")
    assert r.returncode == -signal.SIGKILL
    assert all(v.strip() for v in _raw(root, list(before)).values() if v is not None)
    assert nodetune(root, "tune", "rollback").returncode == 0
    assert changed(before, knob_values(root)) == {}


WRITER = """
import sys
from nodetune.probes.host import Host
host = Host(sys.argv[1])
values = ["[always] madvise never\\n", "always madvise [never]\\n"]
print("ready", flush=True)
i = 0
while True:
    host.write(sys.argv[2], values[i % 2])
    i += 1
"""


def test_sigkill_at_random_moments_never_empties_a_knob_file(tmp_path):
    laptop(tmp_path)
    knob = tmp_path / THP.lstrip("/")
    values = {"[always] madvise never\n", "always madvise [never]\n", knob.read_text()}
    rng = random.Random(20)
    for _ in range(12):
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(tmp_path), THP],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert knob.read_text() in values
    leftovers = [n for n in os.listdir(knob.parent) if n.endswith(".tmp")]
    Host(str(tmp_path)).write(THP, "always [madvise] never\n")
    assert knob.read_text() == "always [madvise] never\n"
    assert [n for n in os.listdir(knob.parent) if n.endswith(".tmp")] == [] and len(leftovers) <= 1


def _replaceable(path: str, live: bool = False) -> int | None:
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        return replaceable(dfd, os.path.basename(path), live)
    finally:
        os.close(dfd)


def test_kernel_attributes_keep_plain_writes(tmp_path):
    laptop(tmp_path)
    host = Host(str(tmp_path))
    assert (_replaceable("/proc/self/status") is None
            and _replaceable("/sys/kernel/mm/transparent_hugepage/enabled") is None)
    assert _replaceable(host.path(THP)) is not None  # a regular file on a disk
    os.mkfifo(tmp_path / "fifo")
    assert _replaceable(str(tmp_path / "fifo")) is None  # not a regular file: never renamed over
    before = os.stat(host.path(THP)).st_ino
    host.write(THP, "always madvise [never]\n")
    assert os.stat(host.path(THP)).st_ino != before  # replaced, not truncated in place
    assert Path(host.path(THP)).read_text() == "always madvise [never]\n"
