"""The exporter's HTTP server on 127.0.0.1: keep-alive, HEAD, read-only, bounded requests, basic
auth and TLS, over a state the test controls."""

from __future__ import annotations

import base64
import http.client
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from nodetune.agent.state import State
from nodetune.agent.web_app import Listen, MetricsApp, hash_password, serve
from nodetune.agent.web_config import WebConfig, web_config


def app_and_state() -> tuple[MetricsApp, State, Gauge]:
    reg = CollectorRegistry()
    g = Gauge("nodetune_test_value", "a value the test sets", registry=reg)
    state = State(4)
    return MetricsApp(reg, state, lambda: 10.0), state, g


@pytest.fixture
def served():
    app, state, g = app_and_state()
    s = serve(app, Listen("127.0.0.1", 0))
    yield s, state, g
    s.stop()


def test_keep_alive_head_and_fresh_values(served):
    s, state, g = served
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    g.set(1)
    state.update()
    c.request("GET", "/metrics")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Connection") == "keep-alive"
    assert b"nodetune_test_value 1.0" in r.read()
    g.set(2)
    state.update()  # a new state: a new render on the same connection
    c.request("GET", "/metrics")
    assert b"nodetune_test_value 2.0" in c.getresponse().read()
    c.request("HEAD", "/metrics")
    r = c.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) > 0 and r.read() == b""
    c.close()


def test_read_only_and_bounded(served):
    s, _, _ = served
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    c.request("POST", "/metrics", body=b"x")
    r = c.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
    r.read()
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    c.request("GET", "/nope")
    assert c.getresponse().status == 404
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
        raw.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Junk: " + b"a" * 20000 + b"\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
        raw.sendall(b"NONSENSE\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")


def test_basic_auth():
    app, state, _ = app_and_state()
    s = serve(app, Listen("127.0.0.1", 0), WebConfig(users={"prom": hash_password("s3cret", iterations=1000)}))
    try:
        def get(user: str | None, pw: str = "") -> int:
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
            h = {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()} if user else {}
            c.request("GET", "/metrics", headers=h)
            r = c.getresponse()
            r.read()
            return r.status

        assert get(None) == 401
        assert get("prom", "wrong") == 401
        assert get("nobody", "s3cret") == 401
        assert get("prom", "s3cret") == 200
        assert get("prom", "s3cret") == 200  # the verified header is cached
    finally:
        s.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed (needed to make a test certificate)")
def test_tls(tmp_path: Path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    app, state, _ = app_and_state()
    s = serve(app, Listen("127.0.0.1", 0), web_config("", str(cert), str(key)))
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        c = http.client.HTTPSConnection("127.0.0.1", s.port, timeout=5, context=ctx)
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.status == 200 and b"nodetune_test_value" in r.read()
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:  # plain HTTP to a TLS port
            raw.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            assert not raw.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        s.stop()
    from nodetune.config.loader import ConfigError

    with pytest.raises(ConfigError, match="set both or neither"):
        web_config("", str(cert), "")


def test_gzip_and_plain_scrapes_of_one_state_share_one_render():
    app, state, g = app_and_state()
    renders = []
    real = app.registry.collect

    def counting():
        renders.append(1)
        return real()

    app.registry.collect = counting  # type: ignore[method-assign]
    state.update()
    plain = app.body(False, False)
    packed = app.body(False, True)
    assert len(renders) == 1
    import gzip

    assert gzip.decompress(packed) == plain
