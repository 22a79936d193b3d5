"""The exporter's HTTP side: read-only routes as WSGI apps, optional TLS and basic auth, served by
agent/http_server.py (one asyncio loop; see there why not a thread per connection).

The exposition is rendered at most once per View version (the state changes once a sample): a
hundred scrapers in one second cost one render, and a scrape never runs a collector twice for the
same state. TLS is the stdlib's ssl on the listening socket, as prometheus-client's own
`start_http_server(certfile=, keyfile=)` does; basic auth (which prometheus-client's server does
not offer) is a thin WSGI wrapper over a file of `user:pbkdf2_sha256$ITER$SALT$HASH` lines.

`python -m nodetune.agent.http USER` reads a password on stdin and prints the line to add.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import logging
import os
import ssl
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics import exposition as om

from nodetune.agent.exposition import render
from nodetune.agent.http_server import AsyncServer
from nodetune.agent.state import State
from nodetune.config.loader import ConfigError

log = logging.getLogger("nodetune.agent")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
TEXT = "text/plain; version=0.0.4; charset=utf-8"
PBKDF2_ITERATIONS = 200_000
AUTH_CACHE = 32  # verified Authorization headers kept, so a scrape does not pay PBKDF2 each time


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Listen:
    """"ADDR:PORT", "[V6]:PORT" or ":PORT" (all IPv4 addresses); ValueError names what is wrong."""
    t = text.strip()
    if t.startswith("["):
        host, sep, port = t[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPV6]:PORT, got {text!r:.60}")
    else:
        host, sep, port = t.rpartition(":")
        if not sep:
            raise ValueError(f"expected ADDRESS:PORT, got {text!r:.60}")
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets ([::1]:9847), got {text!r:.60}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected a port 0-65535, got {port!r:.20}")
    return Listen(host or "0.0.0.0", int(port))


# -- basic auth -------------------------------------------------------------------------------------

def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = salt or os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${dk.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, iters, salt, want = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        dk = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iters))
    except ValueError:
        return False
    return hmac.compare_digest(dk.hex(), want)


def load_users(path: str) -> dict[str, str]:
    """user -> stored hash; ConfigError naming the file and line on anything malformed."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read(1 << 20).splitlines()
    except OSError as exc:
        raise ConfigError(f"[agent].basic_auth_file {path}: cannot read: {exc.strerror or exc}") from None
    users: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        user, sep, stored = s.partition(":")
        parts = stored.split("$")
        if not sep or not user or len(parts) != 4 or parts[0] != "pbkdf2_sha256" or not parts[1].isdigit():
            raise ConfigError(f"{path}:{n}: expected user:pbkdf2_sha256$ITERATIONS$SALT$HASH "
                              "(make one with `python3 -m nodetune.agent.http USER`)")
        users[user] = stored
    if not users:
        raise ConfigError(f"{path}: no users (a basic_auth_file with no user would lock every scraper out)")
    return users


class BasicAuth:
    """WSGI middleware: 401 unless the request carries one of the file's users."""

    def __init__(self, app: WsgiApp, users: dict[str, str]) -> None:
        self.app = app
        self.users = users
        self._ok: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def _allowed(self, header: str) -> bool:
        with self._lock:
            if header in self._ok:
                self._ok.move_to_end(header)
                return True
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, pw = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        stored = self.users.get(user)
        if not sep or stored is None or not check_password(pw, stored):
            return False
        with self._lock:
            self._ok[header] = None
            while len(self._ok) > AUTH_CACHE:
                self._ok.popitem(last=False)
        return True

    def cheap(self, environ: dict[str, Any]) -> bool:
        """Known credentials (or none at all, a quick 401) and a cheap answer behind them."""
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header:
            return True
        if header not in self._ok:
            return False  # PBKDF2 to run: off the event loop
        inner = getattr(self.app, "cheap", None)
        return bool(inner(environ)) if inner else False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._allowed(environ.get("HTTP_AUTHORIZATION", "")):
            return self.app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                            ("WWW-Authenticate", 'Basic realm="nodetune"')])
        return [b"401 Unauthorized\n"]


# -- the read-only app --------------------------------------------------------------------------------

class MetricsApp:
    """GET /metrics (text or OpenMetrics), /healthz, /: nothing else, no method but GET and HEAD."""

    def __init__(self, registry: CollectorRegistry, state: State, stale_after_s: Callable[[], float]) -> None:
        self.registry = registry
        self.state = state
        self.stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._cache: dict[tuple[bool, bool], tuple[int, bytes]] = {}

    def body(self, openmetrics: bool, gz: bool) -> bytes:
        version = self.state.view.version
        key = (openmetrics, gz)
        hit = self._cache.get(key)
        if hit is not None and (hit[0] == version or self._lock.locked()):
            # current, or a render of the new state is under way: the previous sample's exposition
            # (one sample old at most) rather than a wait
            return hit[1]
        with self._lock:  # concurrent scrapers of one version wait for one render, not a hundred
            hit = self._cache.get(key)
            if hit is not None and hit[0] == version:
                return hit[1]
            # One render per state and format: a gzip scraper (Prometheus) and a plain one (curl)
            # of the same state share it, and only the compression is per encoding.
            plain = self._cache.get((openmetrics, False))
            if plain is None or plain[0] != version:
                text = render(self.registry, openmetrics)
                plain = (version, text)
                self._cache[(openmetrics, False)] = plain
            if not gz:
                return plain[1]
            data = gzip.compress(plain[1], compresslevel=1, mtime=0)
            self._cache[key] = (version, data)
            return data

    def cheap(self, environ: dict[str, Any]) -> bool:
        """Can this request be answered without computing (for the server's fast path)?"""
        if environ.get("PATH_INFO") != "/metrics":
            return True  # /healthz, /, 404, 405: constant work
        key = ("application/openmetrics-text" in environ.get("HTTP_ACCEPT", ""),
               "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""))
        hit = self._cache.get(key)
        return hit is not None and (hit[0] == self.state.view.version or self._lock.locked())

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"read-only: GET /metrics\n"]
        if path == "/metrics":
            accept = environ.get("HTTP_ACCEPT", "")
            openmetrics = "application/openmetrics-text" in accept
            gz = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
            data = self.body(openmetrics, gz)
            headers = [("Content-Type", om.CONTENT_TYPE_LATEST if openmetrics else TEXT),
                       ("Content-Length", str(len(data)))]
            if gz:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [b"" if method == "HEAD" else data]
        if path == "/healthz":
            import time

            v = self.state.view
            age = time.time() - v.sample_wall if v.sample_wall else None
            fresh = age is not None and age <= self.stale_after_s()
            start_response("200 OK" if fresh else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if fresh else f"stale: last sample {'never' if age is None else f'{age:.1f} s ago'}\n".encode()]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [b"<html><head><title>nodetune agent</title></head><body><h1>nodetune agent</h1>"
                    b"<p><a href='/metrics'>/metrics</a> <a href='/healthz'>/healthz</a></p></body></html>\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: GET /metrics\n"]


@dataclass
class Served:
    server: AsyncServer

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        self.server.stop()


def serve(app: WsgiApp, listen: Listen, certfile: str = "", keyfile: str = "") -> Served:
    """Bind and serve in a daemon thread; ConfigError (one line) when the address or TLS is unusable."""
    ctx: ssl.SSLContext | None = None
    if certfile or keyfile:
        if not (certfile and keyfile):
            raise ConfigError("[agent].tls_cert_file and tls_key_file: set both or neither")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"[agent].tls_cert_file {certfile}: cannot load: {exc}") from None
    cheap = getattr(app, "cheap", None)
    try:
        server = AsyncServer(app, listen.host, listen.port, ctx, cheap)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's text wraps the errno's
        raise ConfigError(f"[agent].listen {listen}: cannot listen: {why}") from None
    return Served(server)


def main() -> None:
    import getpass

    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m nodetune.agent.http USER  (the password is read from stdin or prompted)")
    pw = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    print(f"{sys.argv[1]}:{hash_password(pw)}")


if __name__ == "__main__":
    main()
