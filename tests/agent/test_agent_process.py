"""`nodetune agent` as its own process: SIGTERM within 2 s, SIGHUP reloads (a bad file refused with
file, line and key), sd_notify READY/STATUS/WATCHDOG, and flag errors as the CLI's one line."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
from pathlib import Path

import pytest

from tests.support.agent_support import (
    agent_process,
    free_port,
    parse,
    scrape_text,
    value,
    wait_for,
    write_config,
)
from tests.support.faketree import laptop

CONFIG = """[agent]
sample_interval_s = 0.2
diagnose_every_s = 1
window_s = 2
"""


def _up(url: str) -> bool:
    try:
        scrape_text(url, timeout=1)
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture
def node(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    laptop(root)
    write_config(root, CONFIG)
    return root


def _start(node: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    p = agent_process(node, "--listen", f"127.0.0.1:{port}", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url) or p.poll() is not None, timeout=30, what="agent up")
    except AssertionError:
        p.kill()
        raise
    assert p.poll() is None, p.communicate()
    return p, url


def _stop(p: subprocess.Popen[str]) -> tuple[float, str]:
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    return time.monotonic() - t0, err


def test_sigterm_stops_within_two_seconds(node: Path) -> None:
    p, url = _start(node)
    wait_for(lambda: value(parse(scrape_text(url)), "nodetune_agent_samples_total") >= 3)
    took, err = _stop(p)
    assert p.returncode == 0, err
    assert took < 2.0, took
    assert "Traceback" not in err


def test_sighup_reloads_a_good_config_and_refuses_a_typo(node: Path) -> None:
    p, url = _start(node)
    try:
        cfg = node / "etc/nodetune/config.toml"
        assert value(parse(scrape_text(url)), "nodetune_agent_sample_interval_seconds") == 0.2
        cfg.write_text(CONFIG.replace("0.2", "0.3"))
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: value(parse(scrape_text(url)), "nodetune_agent_sample_interval_seconds") == 0.3,
                 what="reload applied")
        cfg.write_text(CONFIG.replace("0.2", "0.25").replace("window_s", "windw_s"))
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: value(parse(scrape_text(url)), "nodetune_agent_config_reloads_total", result="refused") == 1,
                 what="reload refused")
        m = parse(scrape_text(url))
        assert value(m, "nodetune_agent_sample_interval_seconds") == 0.3  # the old one kept
        assert value(m, "nodetune_agent_config_last_reload_success") == 0.0
        assert value(m, "nodetune_agent_config_reloads_total", result="ok") == 1
    finally:
        took, err = _stop(p)
    refused = [line for line in err.splitlines() if "reload refused" in line]
    assert len(refused) == 1, err
    assert "/etc/nodetune/config.toml:4: [agent].windw_s: unknown key (did you mean window_s?)" in refused[0]
    assert p.returncode == 0 and took < 2.0


def test_sd_notify_ready_status_and_watchdog(node: Path, tmp_path: Path) -> None:
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(20)
    p, url = _start(node, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="400000")
    got: list[str] = []
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and not (any("READY=1" in m for m in got) and
                                              sum("WATCHDOG=1" in m for m in got) >= 2 and
                                              any("STATUS=no GPU" in m for m in got)):
            got.append(sock.recv(4096).decode())
    finally:
        _stop(p)
        sock.close()
    ready = next(m for m in got if "READY=1" in m)
    assert "STATUS=sampling 0 GPU(s) every 0.2 s" in ready
    assert sum("WATCHDOG=1" in m for m in got) >= 2
    assert any(m.startswith("STATUS=no GPU; ") for m in got), got


@pytest.mark.parametrize("args,needle", [
    (["--listen", "nonsense"], "nodetune: error: --listen: expected ADDRESS:PORT, got 'nonsense'"),
    (["--listen", "127.0.0.1:99999"], "nodetune: error: --listen: expected a port 0-65535, got '99999'"),
])
def test_bad_listen_is_one_line(node: Path, args: list[str], needle: str) -> None:
    p = agent_process(node, *args)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2 and err.strip() == needle, err


def test_port_in_use_is_one_line(node: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = agent_process(node, "--listen", f"127.0.0.1:{port}")
        _, err = p.communicate(timeout=30)
    lines = [x for x in err.splitlines() if x.startswith("nodetune: error:")]
    assert p.returncode == 2 and lines == [
        f"nodetune: error: [agent].listen 127.0.0.1:{port}: cannot listen: Address already in use"], err


def test_bad_config_at_start_is_one_line(node: Path) -> None:
    (node / "etc/nodetune/config.toml").write_text("[agent]\nsample_interval_s = 0\n")
    p = agent_process(node)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2
    assert err.strip().splitlines()[-1] == ("nodetune: error: /etc/nodetune/config.toml:2: [agent].sample_interval_s: "
                                            "expected a number between 0.11 and 60, got 0")


def test_once_prints_the_exposition(node: Path) -> None:
    p = agent_process(node, "--once")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    m = parse(out)
    assert value(m, "nodetune_agent_samples_total") == 3
    assert value(m, "nodetune_agent_diagnoses_total") == 1


def test_the_daemon_runs_without_the_cli_libraries(node: Path) -> None:
    """`nodetune agent` re-executes into `python -m nodetune.agent`: no typer, rich or pydantic in
    the long-running process (about 12 MB of RSS less), same pid for systemd."""
    p, url = _start(node)
    try:
        maps = Path(f"/proc/{p.pid}/maps").read_text()
        cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")
        assert b"nodetune.agent" in cmdline and "pydantic_core" not in maps
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=10)
