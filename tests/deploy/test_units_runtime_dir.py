"""The node lock's directory is writable under each unit's ProtectSystem=strict (the hardening
scores are held by test_deploy's exposure test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetune.tuners.transaction.nodelock import LOCK

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"


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
