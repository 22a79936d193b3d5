"""The node lock's directory is writable under each unit's ProtectSystem=strict, and the hardening
score of each unit stays where it was."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nodetune.tuners.nodelock import LOCK

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"


def _settings(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


@pytest.mark.parametrize("unit", ["nodetune.service", "nodetune-tune.service"])
def test_lock_directory_is_writable_under_protect_system_strict(unit):
    s = _settings(unit)
    assert s.get("ProtectSystem") == ["strict"]
    lock_dir = str(Path(LOCK).parent)  # /run/nodetune
    runtime = [f"/run/{d}" for v in s.get("RuntimeDirectory", []) for d in v.split()]
    rw = [p.lstrip("-") for v in s.get("ReadWritePaths", []) for p in v.split()]
    assert lock_dir in runtime or any(lock_dir == p or lock_dir.startswith(p.rstrip("/") + "/") for p in rw), s
    if lock_dir in runtime:
        # Both units share the directory: one stopping must not delete the other's lock file.
        assert s.get("RuntimeDirectoryPreserve") == ["yes"]


@pytest.mark.integration
@pytest.mark.parametrize("unit,ceiling", [("nodetune.service", 3.4), ("nodetune-tune.service", 3.5)])
def test_exposure_no_worse_than_before(tmp_path, unit, ceiling):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    dst = tmp_path / unit
    dst.write_text((SYSTEMD / unit).read_text())
    r = subprocess.run([tool, "security", "--offline=true", "--no-pager", str(dst)], capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    if r.returncode != 0 and not m and "offline" in r.stderr:
        pytest.skip(f"systemd-analyze too old for --offline: {r.stderr.strip()[:200]}")
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= ceiling, r.stdout
