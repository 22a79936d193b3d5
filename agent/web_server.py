"""The exporter's HTTP server: one asyncio event loop in a daemon thread, HTTP/1.1 keep-alive.

Why not wsgiref's threading server (prometheus-client's `start_http_server`): a thread per
connection and a Python header parser cost ~1 ms of GIL time a scrape, so 100 concurrent scrapers
on a 2-core node queued for ~120 ms (p99 390 ms, measured with wrk). Here a scrape whose answer
is ready (the exposition of the current state is cached, the credentials already verified) is
answered inside the loop with no thread hop; a render runs in a small thread pool and a password
check in a one-thread pool of its own, so neither stalls the loop nor waits behind the other.

The routes, auth and caching stay in the WSGI apps of `agent/web_app.py`; this module only moves
bytes, and bounds what a client can hold:
- at most `max_connections` open, a quarter of them from one address; a new connection past either
  closes the longest-idle kept-alive one (of that address, or of all), else the longest stalled
  on its client, so a scraper gets in however many idle or slow ones there are;
- a request's headers must arrive within `header_timeout_s` of its first byte (slowloris), a new
  connection's first request within `header_timeout_s`, a kept-alive one's within `idle_timeout_s`;
- each response must be taken by the client within `write_timeout_s`, or the connection is
  aborted and its buffers freed (a client that pipelines and never reads);
- TLS is negotiated inside the connection's handler, so handshakes count against the cap and the
  header timeout too. GET and HEAD only; 8 KiB of headers.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("nodetune.agent")
MAX_HEAD = 8192

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Response = tuple[str, list[tuple[str, str]], bytes]
Route = Callable[[dict[str, Any]], str]  # environ -> "loop" | "pool" | "hash"
# Why the server turned a client away: the bounded `reason` label of nodetune_agent_http_refused_total.
REFUSALS = ("connection_cap", "evicted", "idle_timeout", "header_timeout", "write_timeout", "too_large",
            "bad_request", "bad_auth", "auth_backoff")
_BY_STATUS = {"401": "bad_auth", "429": "auth_backoff", "431": "too_large", "400": "bad_request"}


@dataclass(frozen=True)
class Limits:
    """What one client may hold: connections, and the time to send a request or take a response."""

    max_connections: int = 64  # one client address may hold a quarter of them
    idle_timeout_s: float = 60.0  # Prometheus scrapes every 15-60 s over one kept-alive connection
    header_timeout_s: float = 10.0
    write_timeout_s: float = 10.0


@dataclass
class ServerCounts:
    requests: int = 0
    errors: int = 0
    evicted: int = 0  # connections closed to make room for a new one
    refused: int = 0  # new connections refused: every open one was being answered
    write_timeouts: int = 0
    read_timeouts: int = 0


# Connection phases. Who is closed for a newcomer: the longest-idle kept-alive connection first,
# then the longest stalled on its client (TLS handshake, a partial request, an unread response)
# for longer than GRACE_S; never one being answered (WORK) nor one that has not had time to send.
IDLE, TLS, HEAD, WRITE, WORK = "idle", "tls", "head", "write", "work"
STALLED = (IDLE, TLS, HEAD, WRITE)
GRACE_S = 0.5


class _Conn:
    __slots__ = ("writer", "addr", "phase", "since", "served")

    def __init__(self, writer: asyncio.StreamWriter, addr: str, phase: str) -> None:
        self.writer = writer
        self.addr = addr
        self.phase = phase
        self.since = time.monotonic()
        self.served = False  # answered a request: an idle one is a kept-alive connection

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.since = time.monotonic()

    def drop(self) -> None:
        """Close now, unsent data and all (abort: close() would wait for a non-reader to read)."""
        self.writer.transport.abort()


def call_wsgi(app: WsgiApp, environ: dict[str, Any]) -> Response:
    """Run a WSGI app to completion: (status line, headers, body)."""
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        got["status"], got["headers"] = status, headers
        return lambda b: None

    body = b"".join(app(environ, start_response))
    return got.get("status", "500 Internal Server Error"), list(got.get("headers", [])), body


def _environ(method: str, target: str, version: str, headers: dict[str, str], peer: Any) -> dict[str, Any]:
    path, _, query = target.partition("?")
    env: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                           "SERVER_PROTOCOL": version, "REMOTE_ADDR": str(peer[0]) if peer else ""}
    for k, v in headers.items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    return env


class AsyncServer:
    """Serves `app` on (host, port). `route(environ)` says where a request runs: "loop" (answer
    now), "pool" (a render) or "hash" (a password check). `ssl_ctx` and `headers` (added to every
    response) may be replaced while serving; new connections use the new ones."""

    def __init__(self, app: WsgiApp, host: str, port: int, ssl_ctx: ssl.SSLContext | None = None,
                 route: Route | None = None, workers: int = 4, limits: Limits | None = None,
                 headers: dict[str, str] | None = None, on_refused: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.on_refused = on_refused  # told each refusal's reason (one of REFUSALS), on the loop thread
        self.route = route or (lambda env: "pool")
        self.ssl_ctx = ssl_ctx
        self.limits = limits or Limits()
        self.headers = dict(headers or {})
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nodetune-http")
        # bcrypt and PBKDF2 release the GIL: one thread bounds a login flood to one core
        self.hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nodetune-auth")
        self.loop = asyncio.new_event_loop()
        self.counts = ServerCounts()
        self.conns: dict[_Conn, None] = {}
        self.by_addr: dict[str, int] = {}  # open connections per client address
        self._stopping = False
        # bind here, in the caller's thread, so an address in use is the caller's error at once
        self.server = self.loop.run_until_complete(asyncio.start_server(
            self._client, host, port, backlog=1024, limit=MAX_HEAD, reuse_address=True))
        self.thread = threading.Thread(target=self.loop.run_forever, name="nodetune-http", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def requests(self) -> int:
        return self.counts.requests

    @property
    def errors(self) -> int:
        return self.counts.errors

    def stop(self) -> None:
        """Close the listener and every connection, then the loop and the pools (within ~2 s)."""
        async def close() -> None:
            self._stopping = True
            self.server.close()
            # Kept-alive and half-sent clients: abort their transports, so each handler ends on its
            # own (EOF) rather than by cancellation, which Python 3.11's stream callback logs as an
            # ERROR with a CancelledError traceback. 3.12's wait_closed would wait for them.
            for conn in list(self.conns):
                conn.drop()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                _, pending = await asyncio.wait(others, timeout=1.0)
                for t in pending:  # a request still being answered: cancelled, it ends quietly in _client
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=2)
            except (TimeoutError, RuntimeError) as exc:  # a client that never lets go: give up on it
                log.warning("HTTP server did not close cleanly: %s", exc)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=2)
        if not self.loop.is_running():
            self.loop.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.hash_pool.shutdown(wait=False, cancel_futures=True)

    # -- admission ------------------------------------------------------------------------------------
    def _refused(self, reason: str) -> None:
        if self.on_refused is not None:
            try:
                self.on_refused(reason)
            except Exception as exc:  # a counter must not break serving: say so once a kind
                log.error("counting an HTTP refusal failed: %s: %s", type(exc).__name__, exc)

    @property
    def per_address(self) -> int:
        return max(2, self.limits.max_connections // 4)

    def _forget(self, conn: _Conn) -> None:
        if conn in self.conns:
            del self.conns[conn]
            n = self.by_addr[conn.addr] - 1
            if n:
                self.by_addr[conn.addr] = n
            else:
                del self.by_addr[conn.addr]

    def _victim(self, new: _Conn) -> _Conn | None:
        """Whom to close so that `new` fits, or None: `new` itself must go."""
        if self.by_addr.get(new.addr, 0) >= self.per_address:
            # one address at its share: it makes room among its own, whatever their age
            own = [c for c in self.conns if c.addr == new.addr and c.phase in STALLED]
            idle = [c for c in own if c.phase == IDLE]
            return min(idle or own, key=lambda c: c.since) if own else None
        if len(self.conns) < self.limits.max_connections:
            return None
        kept = [c for c in self.conns if c.phase == IDLE and c.served]
        if kept:
            return min(kept, key=lambda c: c.since)
        old = time.monotonic() - GRACE_S
        stalled = [c for c in self.conns if c.phase in STALLED and c.since < old]
        return min(stalled, key=lambda c: c.since) if stalled else None

    def _admit(self, conn: _Conn) -> bool:
        full = self.by_addr.get(conn.addr, 0) >= self.per_address or len(self.conns) >= self.limits.max_connections
        if full:
            victim = self._victim(conn)
            if victim is None:
                self.counts.refused += 1
                self._refused("connection_cap")
                return False
            self.counts.evicted += 1
            self._refused("evicted")
            self._forget(victim)
            victim.drop()
        self.conns[conn] = None
        self.by_addr[conn.addr] = self.by_addr.get(conn.addr, 0) + 1
        return True

    # -- one connection --------------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ctx = self.ssl_ctx
        conn = _Conn(writer, str(peer[0]) if peer else "", TLS if ctx else IDLE)
        lim = self.limits
        if not self._admit(conn):
            if ctx is None:  # over TLS there is no way to say it before a handshake: just close
                await self._send(conn, "503 Service Unavailable", [("Retry-After", "1")], b"too many connections\n",
                                 False)
            conn.drop()
            return
        try:
            if ctx is not None:
                await writer.start_tls(ctx, ssl_handshake_timeout=lim.header_timeout_s)
            served = False
            while True:
                conn.enter(IDLE)
                try:
                    first = await asyncio.wait_for(reader.readexactly(1),
                                                   lim.idle_timeout_s if served else lim.header_timeout_s)
                    conn.enter(HEAD)
                    head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), lim.header_timeout_s)
                except asyncio.LimitOverrunError:
                    self._refused("too_large")
                    await self._send(conn, "431 Request Header Fields Too Large", [], b"headers too large\n", False)
                    return
                except TimeoutError:
                    self.counts.read_timeouts += conn.phase == HEAD
                    self._refused("header_timeout" if conn.phase == HEAD or not served else "idle_timeout")
                    return
                except asyncio.IncompleteReadError:
                    return
                served = conn.served = True
                if not await self._one(head, conn, peer):
                    return
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            return
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            return  # cancelled by stop(): the handler ends, the server is going away anyway
        finally:
            self._forget(conn)
            if not writer.transport.is_closing():
                writer.close()

    async def _one(self, head: bytes, conn: _Conn, peer: Any) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._refused("bad_request")
            await self._send(conn, "400 Bad Request", [], b"bad request line\n", False)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, sep, v = line.partition(":")
                if not sep:
                    self._refused("bad_request")
                    await self._send(conn, "400 Bad Request", [], b"bad header\n", False)
                    return False
                headers[k.strip().lower()] = v.strip()
        conn_hdr = headers.get("connection", "").lower()
        keep = (version == "HTTP/1.1" and conn_hdr != "close") or (version == "HTTP/1.0" and conn_hdr == "keep-alive")
        if "content-length" in headers or "transfer-encoding" in headers:
            keep = False  # a request body on a read-only server: answer (405 below) and hang up
        env = _environ(method, target, version, headers, peer)
        self.counts.requests += 1
        conn.enter(WORK)
        try:
            where = self.route(env)
            if where == "loop":
                status, hdrs, body = call_wsgi(self.app, env)
            else:
                pool = self.hash_pool if where == "hash" else self.pool
                status, hdrs, body = await asyncio.get_running_loop().run_in_executor(pool, call_wsgi, self.app, env)
        except Exception as exc:  # a bug in an app: this request fails, the server goes on
            self.counts.errors += 1
            log.error("HTTP %s %s failed: %s: %s", method, target[:100], type(exc).__name__, exc)
            status, hdrs, body = "500 Internal Server Error", [("Content-Type", "text/plain")], b"internal error\n"
            keep = False
        refusal = _BY_STATUS.get(status[:3])
        if refusal is not None:
            self._refused(refusal)
        return await self._send(conn, status, hdrs, b"" if method == "HEAD" else body, keep, len(body)) and keep

    async def _send(self, conn: _Conn, status: str, headers: list[tuple[str, str]], body: bytes,
                    keep: bool, length: int | None = None) -> bool:
        """Write one response; False (and the connection aborted) when the client does not take it
        within the write timeout."""
        out = [f"HTTP/1.1 {status}"]
        names = {k.lower() for k, _ in headers}
        out += [f"{k}: {v}" for k, v in headers]
        out += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in names]
        if "content-length" not in names:
            out.append(f"Content-Length: {len(body) if length is None else length}")
        if "content-type" not in names:
            out.append("Content-Type: text/plain")
        out.append("Connection: keep-alive" if keep else "Connection: close")
        conn.enter(WRITE)
        conn.writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
        try:
            await asyncio.wait_for(conn.writer.drain(), self.limits.write_timeout_s)
        except TimeoutError:
            self.counts.write_timeouts += 1
            self._refused("write_timeout")
            conn.drop()
            return False
        return True
