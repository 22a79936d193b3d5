"""The exporter under attack, on 127.0.0.1: idle and slow clients, clients that never read, login
floods and timing, absurd hash costs; and node_exporter's web configuration file (TLS + bcrypt)."""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge

from nodetune.agent.state import State
from nodetune.agent.web_app import Listen, MetricsApp, Served, serve
from nodetune.agent.web_auth import BasicAuth, hash_password, load_users
from nodetune.agent.web_config import WebConfig, load_web_config, web_config
from nodetune.agent.web_server import Limits
from nodetune.config.loader import ConfigError
from tests.support.agent_support import REPO


def big_app(series: int = 1) -> tuple[MetricsApp, State]:
    reg = CollectorRegistry()
    g = Gauge("nodetune_test_value", "a value the test sets", ["n"], registry=reg)
    for i in range(series):
        g.labels(str(i)).set(i)
    state = State(4)
    state.update()
    return MetricsApp(reg, state, lambda: 10.0), state


def basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def get(port: int, headers: dict[str, str] | None = None, source: str = "127.0.0.1", timeout: float = 5) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        c.request("GET", "/metrics", headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def idle_keepalive(port: int) -> socket.socket:
    """A connection that made one request, read the answer and now holds the connection open."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
    return s


def closed_by_server(s: socket.socket, wait: float = 2.0) -> bool:
    """Did the server close this connection (EOF or reset) within `wait` s, unread data skipped?"""
    s.settimeout(wait)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


# -- connections ------------------------------------------------------------------------------------

SERVER = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
from prometheus_client import CollectorRegistry
from nodetune.agent.web_app import Listen, MetricsApp, serve
from nodetune.agent.web_server import Limits
from nodetune.agent.state import State
state = State(4); state.update()
s = serve(MetricsApp(CollectorRegistry(), state, lambda: 10.0), Listen("127.0.0.1", 0),
          limits=Limits(max_connections=16))
print(s.port, flush=True)
time.sleep(120)
"""


def test_idle_keepalive_flood_cannot_lock_a_scraper_out():
    """200 idle kept-alive connections against a server with 128 file descriptors: the cap (16)
    closes the longest-idle ones, and a new scraper is answered at once."""
    p = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=REPO)
    held: list[socket.socket] = []
    try:
        assert p.stdout is not None
        port = int(p.stdout.readline())
        for _ in range(200):
            try:
                held.append(idle_keepalive(port))
            except OSError:
                pass  # refused or reset while the server makes room: the flood goes on
        t0 = time.monotonic()
        assert get(port, timeout=5) == 200
        assert time.monotonic() - t0 < 2
        assert closed_by_server(held[0], 1.0), "the longest-idle connection should have been closed"
        assert not closed_by_server(held[-1], 0.2), "the newest idle connection should still be open"
        assert sum(closed_by_server(s, 0.01) for s in held) >= len(held) - 16
    finally:
        for s in held:
            s.close()
        p.kill()
        p.wait()


@pytest.fixture
def served_big():
    app, state = big_app(3000)  # ~100 KB an answer
    s = serve(app, Listen("127.0.0.1", 0), limits=Limits(max_connections=32, header_timeout_s=1.0,
                                                          write_timeout_s=0.5))
    yield s
    s.stop()


def test_pipelining_client_that_never_reads_is_dropped_within_the_write_deadline(served_big: Served):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", served_big.port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
    server = served_big.server
    t0 = time.monotonic()
    while server.counts.write_timeouts == 0 and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert server.counts.write_timeouts == 1
    assert time.monotonic() - t0 < 2.5  # the deadline is 0.5 s; the rest is filling the buffers
    assert not server.conns  # dropped: its buffers are gone with it
    assert closed_by_server(s, 2.0)
    s.close()
    assert get(served_big.port) == 200


def test_slow_headers_on_a_kept_alive_connection_are_cut_off(served_big: Served):
    """Slowloris after a first request: one byte every 0.2 s never completes a request."""
    s = idle_keepalive(served_big.port)
    t0 = time.monotonic()
    try:
        for b in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            s.sendall(bytes([b]))
            time.sleep(0.2)
            if time.monotonic() - t0 > 4:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert closed_by_server(s, 0.5)
    assert time.monotonic() - t0 < 3  # header timeout 1 s from the first byte
    assert served_big.server.counts.read_timeouts >= 1
    s.close()


# -- basic auth -------------------------------------------------------------------------------------

def call(auth: BasicAuth, headers: dict[str, str], addr: str) -> tuple[str, dict[str, str]]:
    got: dict[str, object] = {}

    def sr(status: str, hdrs: list[tuple[str, str]], exc: object = None) -> None:
        got["status"], got["headers"] = status, dict(hdrs)

    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "REMOTE_ADDR": addr}
    env.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    b"".join(auth(env, sr))
    return str(got["status"]), dict(got["headers"])  # type: ignore[call-overload]


@pytest.mark.parametrize("stored", [hash_password("s3cret", iterations=100_000),
                                    bcrypt.hashpw(b"s3cret", bcrypt.gensalt(8)).decode()],
                         ids=["pbkdf2", "bcrypt"])
def test_unknown_user_and_wrong_password_cost_the_same(stored: str):
    app, _ = big_app()
    auth = BasicAuth(app, {"prom": stored})
    times: dict[str, list[float]] = {"unknown": [], "wrong": []}
    for i in range(6):
        for kind, user in (("unknown", f"nobody{i}"), ("wrong", "prom")):
            t0 = time.perf_counter()
            status, _ = call(auth, basic(user, f"guess{i}"), f"10.0.{i}.{len(kind)}")  # one address each: no backoff
            times[kind].append(time.perf_counter() - t0)
            assert status.startswith("401")
    unknown, wrong = statistics.median(times["unknown"]), statistics.median(times["wrong"])
    assert 0.5 < unknown / wrong < 2, f"unknown user {unknown * 1000:.1f} ms vs wrong password {wrong * 1000:.1f} ms"
    assert call(auth, basic("prom", "s3cret"), "10.1.0.1")[0].startswith("200")


def test_repeated_failures_slow_that_client_only():
    now = [1000.0]
    app, _ = big_app()
    auth = BasicAuth(app, {"prom": hash_password("s3cret", iterations=1000)}, clock=lambda: now[0])
    auth.MAX_CLIENTS = 8
    for _ in range(auth.FREE_FAILURES):
        assert call(auth, basic("prom", "no"), "10.0.0.66")[0].startswith("401")
    status, hdrs = call(auth, basic("prom", "s3cret"), "10.0.0.66")  # even the right password waits
    assert status.startswith("429") and hdrs["Retry-After"] == "1"
    assert call(auth, basic("prom", "s3cret"), "10.0.0.1")[0].startswith("200")  # another client: no delay
    now[0] += 1.1
    assert call(auth, basic("prom", "no"), "10.0.0.66")[0].startswith("401")
    assert call(auth, basic("prom", "no"), "10.0.0.66")[1]["Retry-After"] == "2"  # growing
    # the known-good credentials of a scraper behind the same address still pass (cached)
    assert call(auth, basic("prom", "s3cret"), "10.0.0.66")[0].startswith("200")
    for i in range(50):  # the table of addresses stays bounded
        call(auth, basic("x", "y"), f"10.9.0.{i}")
    assert len(auth._clients) <= 8


def test_wrong_password_flood_does_not_stall_an_authenticated_scraper():
    """200 concurrent wrong-password clients from one address while the state changes (so the
    scraper needs fresh renders): the scraper's scrapes stay fast."""
    app, state = big_app(500)
    s = serve(app, Listen("127.0.0.1", 0), WebConfig(users={"prom": hash_password("s3cret", iterations=200_000)}))
    stop = threading.Event()
    statuses: list[int] = []

    def attacker() -> None:
        while not stop.is_set():
            try:
                statuses.append(get(s.port, basic("prom", "wrong"), source="127.0.0.2", timeout=30))
            except OSError:
                pass

    def sampler() -> None:
        while not stop.is_set():
            state.update()
            time.sleep(0.1)

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(200)]
    threads.append(threading.Thread(target=sampler, daemon=True))
    try:
        assert get(s.port, basic("prom", "s3cret")) == 200  # verified once
        for t in threads:
            t.start()
        time.sleep(0.5)
        lat = []
        for _ in range(30):
            t0 = time.perf_counter()
            assert get(s.port, basic("prom", "s3cret"), timeout=30) == 200
            lat.append(time.perf_counter() - t0)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        s.stop()
    assert max(lat) < 1.0, f"scrape latencies under the flood: max {max(lat) * 1000:.0f} ms"
    assert 429 in statuses  # the flooding address was refused, not hashed for
    assert statuses.count(401) < 40  # a handful of hashes for the flooder, not one a request


def test_absurd_hash_costs_are_refused_at_load_with_one_line(tmp_path: Path):
    f = tmp_path / "users"
    f.write_text("prom:pbkdf2_sha256$2147483647$00$00\n")
    with pytest.raises(ConfigError) as e:
        load_users(str(f))
    assert "iteration count 2147483647 is outside" in str(e.value) and f"{f}:1" in str(e.value)
    assert "\n" not in str(e.value)
    f.write_text("prom:pbkdf2_sha256$100000000000000$00$00\n")
    with pytest.raises(ConfigError, match="outside"):
        load_users(str(f))
    w = tmp_path / "web.yml"
    w.write_text("basic_auth_users:\n  bob: $2y$18$4VeFDzXIoPHKnKTU3O3GH.N.vZu06CVqczYZ8WvfzrddFU6tGqjR.\n")
    with pytest.raises(ConfigError) as e:
        load_web_config(str(w))
    assert "user 'bob': bcrypt cost 18 is outside 4-14" in str(e.value) and "\n" not in str(e.value)


def test_agent_refuses_an_absurd_cost_with_one_line_and_exit_2(tmp_path: Path):
    w = tmp_path / "web.yml"
    w.write_text("basic_auth_users:\n  bob: $2y$31$4VeFDzXIoPHKnKTU3O3GH.N.vZu06CVqczYZ8WvfzrddFU6tGqjR.\n")
    r = subprocess.run([sys.executable, "-m", "nodetune.agent", "--root", str(tmp_path), "--listen", "127.0.0.1:0",
                        "--web.config.file", str(w)], capture_output=True, text=True, timeout=60, cwd=REPO,
                       env={**os.environ, "NODETUNE_AGENT_NO_REEXEC": "1"})
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and "bcrypt cost 31" in lines[0], r.stderr


# -- node_exporter's web configuration file ---------------------------------------------------------

def self_signed(d: Path) -> tuple[Path, Path]:
    cert, key = d / "server.crt", d / "server.key"
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl CLI: no way to make a test certificate")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        return cert, key
    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
         .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
         .sign(k, hashes.SHA256()))
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return cert, key


def test_node_exporter_web_config_tls_users_and_headers(tmp_path: Path):
    cert, _ = self_signed(tmp_path)
    h = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(5)).decode().replace("$2b$", "$2y$")  # as htpasswd -B writes it
    w = tmp_path / "web-config.yml"
    w.write_text(f"""# as a fleet ships it for node_exporter
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  min_version: TLS13
http_server_config:
  http2: true
  headers:
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: {h}
""")
    web = load_web_config(str(w))
    assert web.tls is not None and web.tls.cert_file == str(cert)  # relative to the file, as the toolkit does
    assert WebConfig.from_dict(web.to_dict()) == web
    app, _ = big_app()
    s = serve(app, Listen("127.0.0.1", 0), web)
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False

        def fetch(headers: dict[str, str]) -> http.client.HTTPResponse:
            c = http.client.HTTPSConnection("127.0.0.1", s.port, timeout=5, context=ctx)
            c.request("GET", "/metrics", headers=headers)
            r = c.getresponse()
            r.read()
            c.close()
            return r

        r = fetch(basic("prometheus", "s3cret"))
        assert r.status == 200 and r.getheader("X-Content-Type-Options") == "nosniff"
        assert r.getheader("Strict-Transport-Security") == "max-age=31536000"
        assert fetch({}).status == 401
        assert fetch(basic("prometheus", "nope")).status == 401
        old = ssl.create_default_context(cafile=str(cert))
        old.check_hostname = False
        old.maximum_version = ssl.TLSVersion.TLSv1_2  # below the file's min_version
        with pytest.raises((ssl.SSLError, OSError)):
            c = http.client.HTTPSConnection("127.0.0.1", s.port, timeout=5, context=old)
            c.request("GET", "/metrics")
    finally:
        s.stop()


@pytest.mark.parametrize("text,message", [
    ("tls_server_config:\n  cert_file: a\n", "missing key_file"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS111\n",
     "min_version: 'TLS111' is not one of"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n", "without a client_auth_type"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
     "needs client_ca_file"),
    ("tls_server_config:\n  cert: inline\n", "not supported by nodetune (use cert_file)"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "expected one of deny, sameorigin"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "can not be configured"),
    ("basic_auth_users:\n  bob: plaintext\n", "user 'bob': expected a bcrypt hash"),
    ("junk: 1\n", "unknown key 'junk'"),
    ("rate_limit:\n  burst: 1\n", "rate_limit: not supported"),
    ("basic_auth_users: [\n", "not valid YAML"),
])
def test_web_config_file_mistakes_are_one_line(tmp_path: Path, text: str, message: str):
    w = tmp_path / "web.yml"
    w.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_web_config(str(w))
    assert message in str(e.value) and str(w) in str(e.value) and "\n" not in str(e.value)


def test_web_config_file_that_is_a_fifo_or_not_utf8_is_refused(tmp_path: Path):
    fifo = tmp_path / "web.yml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_web_config(str(fifo))  # refused, not a hang
    bad = tmp_path / "bad.yml"
    bad.write_bytes(b"basic_auth_users:\n  b\xffb: x\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_web_config(str(bad))
    with pytest.raises(ConfigError, match="set one or the other"):
        web_config(str(tmp_path / "web.yml"), "", "", str(tmp_path / "users"))
