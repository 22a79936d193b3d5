"""Every client the exporter turns away is counted in nodetune_agent_http_refused_total with a
reason from a fixed set: too large, bad request, bad auth, idle and slow clients, the connection cap."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from nodetune.agent.collectors import StateCollector
from nodetune.agent.state import State
from nodetune.agent.web_app import Listen, MetricsApp, serve
from nodetune.agent.web_auth import hash_password
from nodetune.agent.web_config import WebConfig
from nodetune.agent.web_server import REFUSALS, Limits


def _answer(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return got


def _wait(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_refusals_are_counted_by_reason(tmp_path: Path) -> None:
    state = State(4)
    state.update()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StateCollector(state))
    app = MetricsApp(reg, state, lambda: 10.0)
    web = WebConfig(users={"prom": hash_password("right")})
    limits = Limits(max_connections=2, idle_timeout_s=0.3, header_timeout_s=0.3, write_timeout_s=1.0)
    served = serve(app, Listen("127.0.0.1", 0), web, limits,
                   on_refused=lambda reason: state.count("http_refused", reason))
    port = served.port
    try:
        bad = base64.b64encode(b"prom:wrong").decode()
        assert _answer(port, f"GET /metrics HTTP/1.1\r\nAuthorization: Basic {bad}\r\n\r\n".encode()).startswith(
            b"HTTP/1.1 401")
        assert _answer(port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _answer(port, b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
        # a new connection that never sends its request, then a kept-alive one left idle
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow.sendall(b"GET /healthz HT")
        assert _wait(lambda: state.view.http_refused.get("header_timeout", 0) >= 1)
        slow.close()
        good = base64.b64encode(b"prom:right").decode()
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.sendall(f"GET /healthz HTTP/1.1\r\nAuthorization: Basic {good}\r\n\r\n".encode())
        assert idle.recv(4096)
        assert _wait(lambda: state.view.http_refused.get("idle_timeout", 0) >= 1)
        idle.close()
    finally:
        served.stop()
    counts = dict(state.view.http_refused)
    assert counts.get("bad_auth") == 1 and counts.get("bad_request") == 1 and counts.get("too_large") == 1
    assert set(counts) <= set(REFUSALS)
    text = generate_latest(reg).decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("nodetune_agent_http_refused_total{")]
    assert len(lines) == len(REFUSALS)  # every reason, zero included: a bounded label set
    assert 'nodetune_agent_http_refused_total{reason="bad_auth"} 1.0' in lines


def test_a_newcomer_past_the_cap_evicts_an_idle_connection_and_counts_it() -> None:
    state = State(4)
    state.update()
    app = MetricsApp(CollectorRegistry(), state, lambda: 10.0)
    served = serve(app, Listen("127.0.0.1", 0), None, Limits(max_connections=2),
                   on_refused=lambda reason: state.count("http_refused", reason))
    try:
        held = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert s.recv(4096)
            held.append(s)
        assert _answer(served.port, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 ")
        assert state.view.http_refused.get("evicted") == 1
        for s in held:
            s.close()
    finally:
        served.stop()
