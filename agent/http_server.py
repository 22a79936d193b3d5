"""The exporter's HTTP server: one asyncio event loop in a daemon thread, HTTP/1.1 keep-alive.

Why not wsgiref's threading server (prometheus-client's `start_http_server`): a thread per
connection and a Python header parser cost ~1 ms of GIL time a scrape, so 100 concurrent scrapers
on a 2-core node queued for ~120 ms (p99 390 ms, measured with wrk). Here a scrape whose answer
is ready (the exposition of the current state is cached, the credentials already verified) is
answered inside the loop with no thread hop; anything that must compute (the one render per
state, a first PBKDF2 check) runs in a small thread pool so the loop never stalls on it.

The routes, auth and caching stay in the WSGI apps of `agent/http.py`; this module only moves
bytes. GET and HEAD only; requests are bounded (8 KiB of headers, 10 s to send them).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("nodetune.agent")
MAX_HEAD = 8192
HEAD_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0  # Prometheus scrapes every 15-60 s over one kept-alive connection
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Response = tuple[str, list[tuple[str, str]], bytes]


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
    """Serves `app` on (host, port); `cheap(environ)` says a request can be answered in the loop."""

    def __init__(self, app: WsgiApp, host: str, port: int, ssl_ctx: ssl.SSLContext | None = None,
                 cheap: Callable[[dict[str, Any]], bool] | None = None, workers: int = 4) -> None:
        self.app = app
        self.cheap = cheap or (lambda env: False)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nodetune-http")
        self.loop = asyncio.new_event_loop()
        self.requests = 0
        self.errors = 0
        # bind here, in the caller's thread, so an address in use is the caller's error at once
        self.server = self.loop.run_until_complete(asyncio.start_server(
            self._client, host, port, ssl=ssl_ctx, backlog=1024, limit=MAX_HEAD, reuse_address=True))
        self.thread = threading.Thread(target=self.loop.run_forever, name="nodetune-http", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            # kept-alive clients: end their handlers (3.12's wait_closed would wait for them)
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

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

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            first = True
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                                  HEAD_TIMEOUT_S if first else IDLE_TIMEOUT_S)
                except asyncio.LimitOverrunError:
                    await self._send(writer, "431 Request Header Fields Too Large", [], b"headers too large\n", False)
                    return
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                first = False
                keep = await self._one(head, writer, peer)
                if not keep:
                    return
        except (ConnectionError, ssl.SSLError):
            return
        finally:
            writer.close()

    async def _one(self, head: bytes, writer: asyncio.StreamWriter, peer: Any) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._send(writer, "400 Bad Request", [], b"bad request line\n", False)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, sep, v = line.partition(":")
                if not sep:
                    await self._send(writer, "400 Bad Request", [], b"bad header\n", False)
                    return False
                headers[k.strip().lower()] = v.strip()
        conn = headers.get("connection", "").lower()
        keep = (version == "HTTP/1.1" and conn != "close") or (version == "HTTP/1.0" and conn == "keep-alive")
        if "content-length" in headers or "transfer-encoding" in headers:
            keep = False  # a request body on a read-only server: answer (405 below) and hang up
        env = _environ(method, target, version, headers, peer)
        self.requests += 1
        try:
            if self.cheap(env):
                status, hdrs, body = call_wsgi(self.app, env)
            else:
                status, hdrs, body = await asyncio.get_running_loop().run_in_executor(self.pool, call_wsgi, self.app, env)
        except Exception as exc:  # a bug in an app: this request fails, the server goes on
            self.errors += 1
            log.error("HTTP %s %s failed: %s: %s", method, target, type(exc).__name__, exc)
            status, hdrs, body = "500 Internal Server Error", [("Content-Type", "text/plain")], b"internal error\n"
            keep = False
        await self._send(writer, status, hdrs, b"" if method == "HEAD" else body, keep, len(body))
        return keep

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: str, headers: list[tuple[str, str]], body: bytes,
                    keep: bool, length: int | None = None) -> None:
        out = [f"HTTP/1.1 {status}"]
        names = {k.lower() for k, _ in headers}
        out += [f"{k}: {v}" for k, v in headers]
        if "content-length" not in names:
            out.append(f"Content-Length: {len(body) if length is None else length}")
        if "content-type" not in names:
            out.append("Content-Type: text/plain")
        out.append("Connection: keep-alive" if keep else "Connection: close")
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
