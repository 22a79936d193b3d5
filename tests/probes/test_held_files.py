"""probes/held_files.py on the live /proc: a held descriptor reads fresh counters, fails once its
process is reaped (never reading whoever takes the pid), is closed by a sweep once unread, and a fake
tree is read by path as before."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodetune.probes.held_files import HeldFiles
from nodetune.probes.host import Host, ProbeError
from nodetune.probes.processes import sample_process

BURN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


def _ticks(text: str) -> int:
    rest = text[text.rfind(")") + 2:].split()
    return int(rest[11]) + int(rest[12])  # utime + stime (fields 14, 15)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs a Linux /proc")
def test_a_held_descriptor_reads_fresh_counters_and_fails_once_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        held = HeldFiles(Host("/"), limit=16)
        path = f"/proc/{child.pid}/stat"
        first = _ticks(held.read(path))
        deadline = time.monotonic() + 10
        while _ticks(held.read(path)) <= first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _ticks(held.read(path)) > first and held.held() == 1  # the same descriptor, new text
        ps = sample_process(Host("/"), child.pid, read=held.read)
        assert ps.alive and ps.threads and held.held() >= 3  # stat, io and the thread's stat
    finally:
        child.kill()
        child.wait()
    with pytest.raises(ProbeError, match="No such process"):
        held.read(path)
    assert path not in held._fds  # dropped with the error
    gone = sample_process(Host("/"), child.pid, read=held.read)
    assert not gone.alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs a Linux /proc")
def test_a_sweep_closes_what_went_unread_and_the_limit_reads_by_path() -> None:
    held = HeldFiles(Host("/"), limit=1)
    me = os.getpid()
    held.read(f"/proc/{me}/stat")
    held.read(f"/proc/{me}/io")  # past the limit: read by path, not held
    assert held.held() == 1
    assert held.sweep() == 0  # read since the last sweep
    assert held.sweep() == 1 and held.held() == 0


def test_a_fake_tree_file_replaced_or_removed_is_read_by_path(tmp_path: Path) -> None:
    (tmp_path / "proc" / "7").mkdir(parents=True)
    f = tmp_path / "proc" / "7" / "stat"
    f.write_text("7 (a) S 1 7 7 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 100 0 0\n")
    held = HeldFiles(Host(str(tmp_path)))
    assert held.read("/proc/7/stat").startswith("7 (a) S") and held.held() == 1
    f.write_text("7 (a) R 1 7 7 0 -1 0 0 0 0 0 2 2 0 0 20 0 1 0 100 0 0\n")  # rewritten in place
    assert held.read("/proc/7/stat").startswith("7 (a) R") and held.held() == 1
    tmp = tmp_path / "stat.new"
    tmp.write_text("7 (a) D 1 7 7 0 -1 0 0 0 0 0 3 3 0 0 20 0 1 0 100 0 0\n")
    os.replace(tmp, f)  # replaced by rename: the held descriptor names the old file
    assert held.read("/proc/7/stat").startswith("7 (a) D") and held.held() == 0
    held.read("/proc/7/stat")
    f.unlink()  # the process is gone
    with pytest.raises(ProbeError, match="not present"):
        held.read("/proc/7/stat")
    assert held.held() == 0
