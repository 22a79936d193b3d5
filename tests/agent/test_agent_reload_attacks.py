"""A SIGHUP reload never stops the agent, and start-up refuses the same inputs with one line:
a history_path leaving the root, a users file that is not UTF-8, special files (FIFO) where a
config, users file or certificate is expected."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nodetune.agent.application import Agent
from nodetune.config.agent import AgentConfig
from tests.support.agent_support import FAST, busy_node, write_config


def _agent(tmp_path: Path) -> tuple[Agent, Path, Path]:
    root = tmp_path / "root"
    _, nv = busy_node(root)
    cfg = write_config(root, FAST + 'history_path = "/var/lib/nodetune/history.db"\n')
    return Agent(root=str(root), config_path=str(cfg), nvml=nv), root, cfg


def _reload_in_time(a: Agent) -> None:
    """_do_reload on a thread: a reload that blocks (a FIFO opened for reading) fails the test."""
    err: list[BaseException] = []

    def go() -> None:
        try:
            a._do_reload()
        except BaseException as exc:  # the test's failure value: a reload must never raise
            err.append(exc)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reload blocked"
    assert not err, f"reload raised {err[0]!r}"


def _bad_inputs(root: Path, tmp_path: Path) -> dict[str, str]:
    """name -> extra [agent] lines; the files they name are made here."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    link = root / "var/lib/escape"
    if not link.is_symlink():
        link.symlink_to("../../../outside")  # a relative link that climbs out of the root
    latin1 = tmp_path / "users-latin1"
    latin1.write_bytes(b"j\xf6rg:pbkdf2_sha256$1000$c2FsdA$aGFzaA\n")
    fifo = tmp_path / "users-fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    cert_fifo = tmp_path / "cert-fifo"
    if not cert_fifo.exists():
        os.mkfifo(cert_fifo)
    return {
        "dotdot": 'history_path = "/../../../tmp/history.db"\n',
        "symlink": 'history_path = "/var/lib/escape/history.db"\n',
        "latin1": f'basic_auth_file = "{latin1}"\n',
        "fifo_users": f'basic_auth_file = "{fifo}"\n',
        "fifo_cert": f'tls_cert_file = "{cert_fifo}"\ntls_key_file = "{cert_fifo}"\n',
    }


@pytest.mark.parametrize("case", ["dotdot", "symlink", "latin1", "fifo_users", "fifo_cert"])
def test_reload_refuses_and_keeps_running_config(tmp_path: Path, case: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    a, root, cfg = _agent(tmp_path)
    try:
        before = a.acfg
        cfg.write_text(FAST + _bad_inputs(root, tmp_path)[case])
        caplog.clear()
        _reload_in_time(a)
        assert a.acfg is before
        assert a.state.view.config_reloads.get("refused") == 1 and not a.state.view.config_ok
        lines = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
        assert len(lines) == 1 and "\n" not in lines[0], lines
        # and a good file afterwards is taken
        cfg.write_text(FAST)
        _reload_in_time(a)
        assert a.state.view.config_reloads.get("ok") == 1 and a.state.view.config_ok
    finally:
        a.stop()


def test_reload_with_a_fifo_as_the_config_file_is_refused(tmp_path: Path) -> None:
    a, root, cfg = _agent(tmp_path)
    try:
        cfg.unlink()
        os.mkfifo(cfg)
        _reload_in_time(a)
        assert a.state.view.config_reloads.get("refused") == 1
        assert isinstance(a.acfg, AgentConfig)
    finally:
        a.stop()


def test_an_exception_while_taking_the_config_is_refused(tmp_path: Path) -> None:
    a, root, cfg = _agent(tmp_path)
    try:
        before = (a.cfg, a.acfg, a.th)

        def boom() -> None:
            raise RuntimeError("history backend exploded")

        a._setup_history_and_autotune = boom  # type: ignore[method-assign]
        _reload_in_time(a)
        assert (a.cfg, a.acfg, a.th) == before
        assert a.state.view.config_reloads.get("refused") == 1
    finally:
        a.stop()


@pytest.mark.parametrize("case", ["dotdot", "symlink", "latin1", "fifo_users", "fifo_cert"])
def test_startup_refuses_with_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    root = tmp_path / "root"
    busy_node(root)
    cfg = write_config(root, FAST + _bad_inputs(root, tmp_path)[case])
    r = subprocess.run([sys.executable, "-m", "nodetune.agent", "--root", str(root), "--config", str(cfg),
                        "--once"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nodetune: error: "), r.stderr
    assert "Traceback" not in r.stderr
