"""systemd/nodetune.service: its shape, `systemd-analyze verify`, and its security exposure."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.test_deploy import BIN, SYSTEMD, read_unit

UNIT = SYSTEMD / "nodetune.service"


def test_agent_unit_shape() -> None:
    u = read_unit(UNIT)
    s = u["Service"]
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"] and s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] == ["30s"]
    assert s["ExecStart"][0].startswith(f"{BIN} agent")
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "ProtectKernelTunables" not in s and "ProtectKernelLogs" not in s  # knobs writable, /dev/kmsg readable
    assert set(s["CapabilityBoundingSet"][0].split()) == {"CAP_SYS_PTRACE", "CAP_SYSLOG", "CAP_DAC_READ_SEARCH"}
    assert s["ProtectSystem"] == ["strict"] and s["NoNewPrivileges"] == ["yes"]


def _copy(tmp_path: Path) -> Path:
    stub = tmp_path / "bin" / "nodetune"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    dst = tmp_path / UNIT.name
    dst.write_text(UNIT.read_text().replace(BIN, str(stub)))
    return dst


@pytest.mark.integration
def test_agent_unit_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    r = subprocess.run([tool, "verify", str(_copy(tmp_path))], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


@pytest.mark.integration
def test_agent_unit_security_exposure(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    r = subprocess.run([tool, "security", "--offline=true", "--no-pager", str(_copy(tmp_path))],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    if r.returncode != 0 and not m and "offline" in r.stderr:
        pytest.skip(f"systemd-analyze too old for --offline: {r.stderr.strip()[:200]}")
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= 4.5, r.stdout
