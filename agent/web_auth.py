"""Basic auth for the exporter, as the Prometheus exporter toolkit does it and then some.

Hashes are bcrypt (`$2y$10$...`, what `htpasswd -nBC 10` and node_exporter's web config use) or
`pbkdf2_sha256$ITERATIONS$SALT$HASH` (the agent's own users file). Their cost is bounded when the
file loads, so a hash cannot stall every scrape.

A failed login costs the same whoever the user: an unknown user is checked against a dummy hash of
the users' own scheme and cost. Verified credentials are remembered (keyed by user, stored hash and
password, as the toolkit keys its cache; only successes, so a flood of wrong passwords cannot evict
a scraper's entry), so a scraper pays for one hash, not one a scrape. Hashing runs on the server's
one-thread hash pool, at most MAX_PENDING at once and one at a time per client address; repeated
failures from one address refuse that address (429) for a time that doubles, never anyone else.

`python3 -m nodetune.agent.web_auth USER` reads a password on stdin and prints the line to add.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nodetune.agent.small_files import read_small_file
from nodetune.config.loader import ConfigError

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

PBKDF2_ITERATIONS = 200_000
PBKDF2_MIN_ITERATIONS = 1_000
PBKDF2_MAX_ITERATIONS = 2_000_000  # ~1 s of a core per check
BCRYPT_MIN_COST = 4  # the bcrypt library's floor
BCRYPT_MAX_COST = 14  # ~1 s of a core per check; each step doubles it
BCRYPT_MAX_PASSWORD = 72  # bytes bcrypt looks at; longer passwords are refused (as Go's bcrypt does)
_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
TICKET = "nodetune.auth"  # environ key: what the server's route() decided for this request


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A `pbkdf2_sha256$ITERATIONS$SALT$HASH` line for the users file."""
    salt = salt or os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${dk.hex()}"


def hash_cost(stored: str) -> tuple[str, int]:
    """(scheme, cost) of a stored hash; ValueError saying what is wrong with it, or its cost."""
    m = _BCRYPT.match(stored)
    if m:
        cost = int(m.group(1))
        if not BCRYPT_MIN_COST <= cost <= BCRYPT_MAX_COST:
            raise ValueError(f"bcrypt cost {cost} is outside {BCRYPT_MIN_COST}-{BCRYPT_MAX_COST} (each step doubles "
                             f"the CPU time of a login; make the hash with `htpasswd -nBC 10 USER`)")
        return "bcrypt", cost
    parts = stored.split("$")
    if len(parts) == 4 and parts[0] == "pbkdf2_sha256" and parts[1].isdigit():
        try:
            bytes.fromhex(parts[2]), bytes.fromhex(parts[3])
        except ValueError:
            raise ValueError("pbkdf2_sha256 salt and hash must be hex") from None
        iters = int(parts[1])
        if not PBKDF2_MIN_ITERATIONS <= iters <= PBKDF2_MAX_ITERATIONS:
            raise ValueError(f"pbkdf2_sha256 iteration count {parts[1]:.20} is outside "
                             f"{PBKDF2_MIN_ITERATIONS}-{PBKDF2_MAX_ITERATIONS}")
        return "pbkdf2_sha256", iters
    raise ValueError("expected a bcrypt hash ($2y$10$...) or pbkdf2_sha256$ITERATIONS$SALT$HASH")


def check_password(password: str, stored: str) -> bool:
    """Does `password` match `stored` (a hash `hash_cost` accepts)? Constant work for a given hash."""
    pw = password.encode()
    if stored.startswith("$2"):
        import bcrypt

        try:
            match = bcrypt.checkpw(pw[:BCRYPT_MAX_PASSWORD], stored.encode())
        except ValueError:  # a malformed hash (load_users refuses those): no match
            return False
        return match and len(pw) <= BCRYPT_MAX_PASSWORD
    try:
        scheme, iters, salt, want = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        dk = hashlib.pbkdf2_hmac("sha256", pw, bytes.fromhex(salt), int(iters))
    except ValueError:
        return False
    return hmac.compare_digest(dk.hex(), want)


def dummy_hash(scheme: str, cost: int) -> str:
    """A hash of a random password with this scheme and cost: what an unknown user is checked against."""
    secret = os.urandom(16)
    if scheme == "bcrypt":
        import bcrypt

        return bcrypt.hashpw(secret.hex().encode(), bcrypt.gensalt(cost)).decode()
    return f"pbkdf2_sha256${cost}${os.urandom(16).hex()}${hashlib.sha256(secret).hexdigest()}"


def checked_users(users: dict[str, str], where: str) -> dict[str, str]:
    """`users` if every hash is well formed and of bounded cost, else ConfigError naming the user."""
    for user, stored in users.items():
        try:
            hash_cost(stored)
        except ValueError as exc:
            raise ConfigError(f"{where}: user {user!r:.40}: {exc}") from None
    return users


def load_users(path: str) -> dict[str, str]:
    """The users file: `user:HASH` lines (pbkdf2_sha256 or bcrypt, as `htpasswd -B` writes);
    ConfigError naming the file and line on anything malformed, unreadable or too costly."""
    text = read_small_file(path, "[agent].basic_auth_file")
    users: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        user, sep, stored = s.partition(":")
        if not sep or not user:
            raise ConfigError(f"{path}:{n}: expected user:HASH (make one with "
                              "`python3 -m nodetune.agent.web_auth USER` or `htpasswd -nBC 10 USER`)")
        try:
            hash_cost(stored)
        except ValueError as exc:
            raise ConfigError(f"{path}:{n}: {exc}") from None
        users[user] = stored
    if not users:
        raise ConfigError(f"{path}: no users (a basic_auth_file with no user would lock every scraper out)")
    return users


@dataclass
class _Client:
    """Login failures from one address."""

    failures: int = 0
    last: float = 0.0
    until: float = 0.0  # refused until then (monotonic)
    inflight: bool = False


@dataclass(frozen=True)
class Refusal:
    status: str
    retry_after_s: int


VERIFY = "verify"


class BasicAuth:
    """WSGI middleware: 401 unless the request carries one of `users` (see the module's docstring)."""

    FREE_FAILURES = 3  # a person's typos
    BASE_DELAY_S = 1.0
    MAX_DELAY_S = 60.0
    FORGET_S = 900.0  # failures older than this are forgiven
    MAX_CLIENTS = 4096  # addresses remembered (oldest dropped first)
    MAX_PENDING = 8  # hashes queued or running at once, all clients together
    CACHE = 64  # verified credentials remembered

    def __init__(self, app: WsgiApp, users: dict[str, str], clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self._lock = threading.Lock()
        self._secret = os.urandom(32)  # cache keys are keyed digests: no password kept in memory
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._pending = 0
        self.failures_total = 0
        self.refused_total = 0
        self.users = users

    @property
    def users(self) -> dict[str, str]:
        return self._users

    @users.setter
    def users(self, users: dict[str, str]) -> None:
        # The dummy takes the most common (scheme, cost): with one cost for all users (advised), an
        # unknown user and a wrong password cost exactly the same.
        costs = Counter(hash_cost(s) for s in users.values())
        scheme, cost = max(costs, key=lambda k: (costs[k], k[1])) if costs else ("pbkdf2_sha256", PBKDF2_ITERATIONS)
        self._dummy = dummy_hash(scheme, cost)
        self._users = dict(users)

    # -- decisions ----------------------------------------------------------------------------------
    @staticmethod
    def _credentials(header: str) -> tuple[str, str] | None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, pw = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, pw) if sep else None

    def _key(self, user: str, stored: str, pw: str) -> bytes:
        msg = b"\0".join((user.encode(), stored.encode(), pw.encode()))
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    def _cached(self, user: str, pw: str) -> bool:
        stored = self._users.get(user)
        if stored is None:
            return False
        key = self._key(user, stored, pw)
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        return False

    def _reserve(self, addr: str) -> str | Refusal:
        """VERIFY (a hash slot is this request's) or why this client must not hash now."""
        now = self.clock()
        with self._lock:
            c = self._clients.get(addr)
            if c is not None and not c.inflight and now - c.last > self.FORGET_S:
                c.failures, c.until = 0, 0.0
            if c is not None and (c.inflight or now < c.until):
                self.refused_total += 1
                return Refusal("429 Too Many Requests", max(1, math.ceil(c.until - now)))
            if self._pending >= self.MAX_PENDING:
                self.refused_total += 1
                return Refusal("503 Service Unavailable", 1)
            if c is None:
                c = self._clients[addr] = _Client()
                while len(self._clients) > self.MAX_CLIENTS:
                    self._clients.popitem(last=False)
            self._clients.move_to_end(addr)
            c.inflight = True
            self._pending += 1
            return VERIFY

    def _release(self, addr: str, ok: bool, key: bytes | None) -> None:
        now = self.clock()
        with self._lock:
            self._pending -= 1
            c = self._clients.get(addr)
            if ok:
                self._clients.pop(addr, None)
                if key is not None:
                    self._ok[key] = None
                    while len(self._ok) > self.CACHE:
                        self._ok.popitem(last=False)
                return
            self.failures_total += 1
            if c is None:
                c = self._clients[addr] = _Client()
            c.inflight = False
            c.failures += 1
            c.last = now
            if c.failures >= self.FREE_FAILURES:
                c.until = now + min(self.MAX_DELAY_S, self.BASE_DELAY_S * 2 ** (c.failures - self.FREE_FAILURES))

    def route(self, environ: dict[str, Any]) -> str:
        """Where the server should run this request: "loop" (answer now), "pool" (a render) or
        "hash" (a password to verify, on the one-thread hash pool). Reserves the hash slot."""
        cred = self._credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if cred is None:
            return "loop"  # a quick 401
        if self._cached(*cred):
            inner = getattr(self.app, "route", None)
            if inner is not None:
                return str(inner(environ))
            cheap = getattr(self.app, "cheap", None)
            return "loop" if cheap is not None and cheap(environ) else "pool"
        ticket = self._reserve(environ.get("REMOTE_ADDR", ""))
        environ[TICKET] = ticket
        return "hash" if ticket == VERIFY else "loop"

    def cheap(self, environ: dict[str, Any]) -> bool:
        return self.route(environ) == "loop"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        ticket = environ.pop(TICKET, None)
        cred = self._credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if cred is not None:
            user, pw = cred
            if self._cached(user, pw):
                return self.app(environ, start_response)
            addr = environ.get("REMOTE_ADDR", "")
            if ticket is None:  # called without the server's route(): reserve here
                ticket = self._reserve(addr)
            if isinstance(ticket, Refusal):
                start_response(ticket.status, [("Content-Type", "text/plain"),
                                               ("Retry-After", str(ticket.retry_after_s))])
                return [b"too many failed logins from this address: retry later\n"
                        if ticket.status.startswith("429") else b"busy: retry later\n"]
            stored = self._users.get(user)
            ok = False
            try:
                ok = check_password(pw, stored if stored is not None else self._dummy) and stored is not None
            finally:
                self._release(addr, ok, self._key(user, stored, pw) if ok and stored is not None else None)
            if ok:
                return self.app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                            ("WWW-Authenticate", 'Basic realm="nodetune"')])
        return [b"401 Unauthorized\n"]


def main() -> None:
    """Print a users-file line for the user named on the command line (password from stdin)."""
    import getpass
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m nodetune.agent.web_auth USER  (the password is read from stdin or prompted)")
    pw = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    print(f"{sys.argv[1]}:{hash_password(pw)}")


if __name__ == "__main__":
    main()
