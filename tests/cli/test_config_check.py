"""One validator for [agent]: what `nodetune config check` accepts the agent starts with, and what
the agent refuses `config check` refuses too (the Ansible role runs `config check` before it
installs a config), with the same one line naming file, line and key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MAIN = "from nodetune.cli.app import main; main()"


def nodetune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NODETUNE_AGENT_NO_REEXEC": "1"})


def bad_configs(tmp: Path) -> list[tuple[str, str]]:
    cert = tmp / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    return [
        ('listen = "0.0.0.0:99999"', "[agent].listen: expected a port 0-65535"),
        ('listen = "localhost"', "[agent].listen: expected ADDRESS:PORT"),
        ('listen = "bogus.invalid:80"', "[agent].listen: cannot resolve host 'bogus.invalid'"),
        (f'tls_cert_file = "{cert}"', "[agent].tls_cert_file: set tls_key_file too"),
        (f'basic_auth_file = "{tmp / "users.missing"}"', "[agent].basic_auth_file: "),
    ]


@pytest.mark.parametrize("case", range(5))
def test_config_check_refuses_what_the_agent_refuses(tmp_path: Path, case: int) -> None:
    line, says = bad_configs(tmp_path)[case]
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[agent]\n{line}\n")
    for args in (["config", "check", str(cfg)], ["agent", "--once", "--config", str(cfg), "--root", str(tmp_path)]):
        r = nodetune(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"nodetune: error: {cfg}:2: ") and says in lines[0], r.stderr


def test_listen_option_that_does_not_resolve_is_one_clear_line() -> None:
    r = nodetune("agent", "--listen", "bogus.invalid:80", "--once")
    assert r.returncode == 2
    assert r.stderr.strip() == ("nodetune: error: --listen: cannot resolve host 'bogus.invalid': "
                                + r.stderr.split("'bogus.invalid': ", 1)[1].strip())
    assert "Unknown error" not in r.stderr


def test_a_good_agent_section_passes(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[agent]\nlisten = "127.0.0.1:9847"\n')
    r = nodetune("config", "check", str(cfg))
    assert r.returncode == 0 and 'listen = "127.0.0.1:9847"' in r.stdout, r.stderr
