"""The exporter's web app: read-only routes as WSGI apps, served by agent/web_server.py (one
asyncio loop; see there why not a thread per connection, and what a client may hold).

The exposition is rendered at most once per View version (the state changes once a sample): a
hundred scrapers in one second cost one render, and a scrape never runs a collector twice for the
same state. TLS, basic auth and extra response headers come from a `WebConfig`
(agent/web_config.py: node_exporter's web configuration file or the [agent] keys); basic auth is
the WSGI middleware of agent/web_auth.py.
"""

from __future__ import annotations

import gzip
import logging
import os
import resource
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics import exposition as om

from nodetune.agent.exposition import render
from nodetune.agent.state import State
from nodetune.agent.web_auth import BasicAuth, check_password, hash_password, load_users
from nodetune.agent.web_config import WebConfig, tls_context
from nodetune.agent.web_server import AsyncServer, Limits
from nodetune.config.agent import parse_listen as config_parse_listen
from nodetune.config.loader import ConfigError

__all__ = ["BasicAuth", "Listen", "MetricsApp", "Served", "check_password", "hash_password", "load_users",
           "parse_listen", "serve"]

log = logging.getLogger("nodetune.agent")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
TEXT = "text/plain; version=0.0.4; charset=utf-8"
FD_MARGIN = 128  # descriptors the agent needs beside its connections (files, NVML, sockets)


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Listen:
    """"ADDR:PORT", "[V6]:PORT" or ":PORT"; ValueError names what is wrong (config/agent.py's rule)."""
    host, port = config_parse_listen(text)
    return Listen(host, port)


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
            return [b"ok\n" if fresh
                    else f"stale: last sample {'never' if age is None else f'{age:.1f} s ago'}\n".encode()]
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

    def update(self, web: WebConfig) -> None:
        """Take a reloaded web config: new certificates for new connections, new users and headers.
        Turning TLS or auth on or off needs a restart (the caller says so)."""
        if web.tls is not None and self.server.ssl_ctx is not None:
            self.server.ssl_ctx = tls_context(web.tls, web.source)
        auth = self.server.app
        if web.users and isinstance(auth, BasicAuth):
            auth.users = web.users
        self.server.headers = dict(web.headers)

    def stop(self) -> None:
        self.server.stop()


def _room_for(connections: int) -> None:
    """Raise the soft descriptor limit to fit the connection cap, or say it does not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = connections + FD_MARGIN
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit to %d: %s", need, exc)
        if soft < need:
            log.warning("[agent].max_connections %d leaves too few of %d file descriptors (LimitNOFILE=)",
                        connections, soft)


def serve(app: WsgiApp, listen: Listen, web: WebConfig | None = None, limits: Limits | None = None,
          on_refused: Callable[[str], None] | None = None) -> Served:
    """Bind and serve in a daemon thread; ConfigError (one line) when the address or TLS is unusable.
    With users in `web`, `app` is wrapped in BasicAuth; `on_refused` is told why each client was
    turned away (agent/web_server.py's REFUSALS)."""
    web = web or WebConfig()
    limits = limits or Limits()
    ctx = tls_context(web.tls, web.source) if web.tls is not None else None
    if web.users:
        app = BasicAuth(app, web.users)
    route = getattr(app, "route", None)
    if route is None:
        cheap = getattr(app, "cheap", None)
        route = (lambda env: "loop" if cheap(env) else "pool") if cheap else None
    _room_for(limits.max_connections)
    try:
        server = AsyncServer(app, listen.host, listen.port, ctx, route, limits=limits, headers=web.headers,
                             on_refused=on_refused)
    except socket.gaierror as exc:  # its errno is getaddrinfo's (-2), which strerror cannot name
        raise ConfigError(f"[agent].listen {listen}: cannot resolve {listen.host!r}: {exc.strerror}") from None
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's text wraps the errno's
        raise ConfigError(f"[agent].listen {listen}: cannot listen: {why}") from None
    return Served(server)
