"""SIGTERM while a scraper holds an idle keep-alive connection: the agent exits 0 at once with no
ERROR line and no traceback (its connection handlers are cancelled quietly)."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.support.agent_support import agent_process, free_port, wait_for, write_config
from tests.support.faketree import laptop

CONFIG = """[agent]
sample_interval_s = 0.2
diagnose_every_s = 1
window_s = 2
"""


def _get(s: socket.socket) -> bytes:
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    return got


def test_sigterm_with_idle_keepalive_connections_is_clean(tmp_path: Path) -> None:
    root = tmp_path / "root"
    laptop(root)
    write_config(root, CONFIG)
    port = free_port()
    p = agent_process(root, "--listen", f"127.0.0.1:{port}")
    held: list[socket.socket] = []
    try:
        def connect() -> socket.socket | None:
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                return None

        for _ in range(3):
            s = wait_for(connect, 30, "agent listening")
            assert _get(s).startswith(b"HTTP/1.1 200")
            held.append(s)  # answered, kept alive, now idle
        half = socket.create_connection(("127.0.0.1", port), timeout=5)
        half.sendall(b"GET /metrics HTTP/1.1\r\n")  # a request whose headers never end
        held.append(half)
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        for s in held:
            s.close()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert took < 2.0, took
    assert "Traceback" not in err and "CancelledError" not in err, err
    assert "ERROR" not in err, err
