"""The exporter's TLS, users and response headers: node_exporter's web configuration file
(`--web.config.file`, the Prometheus exporter toolkit's format), or the agent's own [agent] keys.

The toolkit's format, as far as an asyncio server with the stdlib's ssl can honour it; keys it
cannot are refused with one line rather than silently ignored (the toolkit also refuses unknown
keys). Relative file names are relative to the web config file, as in the toolkit.

    tls_server_config: {cert_file, key_file, client_ca_file, client_auth_type, min_version,
                        max_version, prefer_server_cipher_suites}
    http_server_config: {headers: {...}, http2}       (http2: accepted, HTTP/1.1 is served)
    basic_auth_users: {USER: BCRYPT_HASH, ...}
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import asdict, dataclass, field
from typing import Any

from nodetune.agent.small_files import read_small_file
from nodetune.agent.web_auth import checked_users, load_users
from nodetune.config.loader import ConfigError

_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
             "TLS13": ssl.TLSVersion.TLSv1_3}
# client_auth_type -> verify mode; the two "request/require any" modes accept an unverified
# certificate, which the stdlib's ssl cannot do (and the toolkit's docs call insecure).
_CLIENT_AUTH = {"": ssl.CERT_NONE, "NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# The toolkit's closed list of settable headers, with the values it allows (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None, "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": None, "Content-Security-Policy": None}
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version",
             "prefer_server_cipher_suites"}
_UNSUPPORTED = {"cert": "use cert_file", "key": "use key_file", "client_ca": "use client_ca_file",
                "cipher_suites": "the stdlib's ssl names ciphers differently", "curve_preferences": "",
                "client_allowed_sans": "", "rate_limit": ""}


@dataclass(frozen=True)
class TlsSettings:
    cert_file: str
    key_file: str
    client_ca_file: str = ""
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True)
class WebConfig:
    """What the server needs to know about TLS, users and headers, and where it came from."""

    tls: TlsSettings | None = None
    users: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the file or [agent] keys, for messages

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WebConfig:
        tls = d.get("tls")
        return cls(TlsSettings(**tls) if tls else None, dict(d.get("users", {})), dict(d.get("headers", {})),
                   str(d.get("source", "")))


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where}: expected a mapping of names")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _tls(d: dict[str, Any], path: str) -> TlsSettings | None:
    where = f"{path}: tls_server_config"
    for k in d:
        if k in _UNSUPPORTED:
            why = _UNSUPPORTED[k]
            raise ConfigError(f"{where}.{k}: not supported by nodetune" + (f" ({why})" if why else ""))
        if k not in _TLS_KEYS:
            raise ConfigError(f"{where}: unknown key {k!r:.40}")
    if not d:
        return None
    base = os.path.dirname(os.path.abspath(path))

    def file(key: str) -> str:
        v = _string(d.get(key, ""), f"{where}.{key}")
        return os.path.join(base, v) if v else ""

    t = TlsSettings(file("cert_file"), file("key_file"), file("client_ca_file"),
                    _string(d.get("client_auth_type", "NoClientCert"), f"{where}.client_auth_type"),
                    _string(d.get("min_version", "TLS12"), f"{where}.min_version"),
                    _string(d.get("max_version", "TLS13"), f"{where}.max_version"),
                    d.get("prefer_server_cipher_suites", True))
    if not isinstance(t.prefer_server_cipher_suites, bool):
        raise ConfigError(f"{where}.prefer_server_cipher_suites: expected true or false")
    if not t.cert_file:
        raise ConfigError(f"{where}: missing cert_file")
    if not t.key_file:
        raise ConfigError(f"{where}: missing key_file")
    for key in ("min_version", "max_version"):
        if getattr(t, key) not in _VERSIONS:
            raise ConfigError(f"{where}.{key}: {getattr(t, key)!r:.20} is not one of {', '.join(_VERSIONS)}")
    if t.client_auth_type not in _CLIENT_AUTH:
        raise ConfigError(f"{where}.client_auth_type: {t.client_auth_type!r:.40} is not supported (one of "
                          f"{', '.join(k for k in _CLIENT_AUTH if k)})")
    if t.client_ca_file and _CLIENT_AUTH[t.client_auth_type] == ssl.CERT_NONE:
        raise ConfigError(f"{where}: client_ca_file is set without a client_auth_type that verifies")
    if not t.client_ca_file and _CLIENT_AUTH[t.client_auth_type] != ssl.CERT_NONE:
        raise ConfigError(f"{where}.client_auth_type {t.client_auth_type}: needs client_ca_file")
    return t


def load_web_config(path: str) -> WebConfig:
    """Parse node_exporter's web configuration file; ConfigError (one line naming the file and key)
    on anything it cannot honour. The certificates themselves are loaded by `tls_context`."""
    import yaml


    text = read_small_file(path, "web config file")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{at}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    top = _mapping(doc, path)
    for k in top:
        if k in _UNSUPPORTED:
            raise ConfigError(f"{path}: {k}: not supported by nodetune")
        if k not in ("tls_server_config", "http_server_config", "basic_auth_users"):
            raise ConfigError(f"{path}: unknown key {k!r:.40}")
    tls = _tls(_mapping(top.get("tls_server_config"), f"{path}: tls_server_config"), path)
    http = _mapping(top.get("http_server_config"), f"{path}: http_server_config")
    for k in http:
        if k not in ("headers", "http2"):
            raise ConfigError(f"{path}: http_server_config: unknown key {k!r:.40}")
    headers: dict[str, str] = {}
    for k, v in _mapping(http.get("headers"), f"{path}: http_server_config.headers").items():
        if k not in HEADERS:
            raise ConfigError(f"{path}: http_server_config.headers: {k!r:.40} can not be configured "
                              f"(one of {', '.join(HEADERS)})")
        v = _string(v, f"{path}: http_server_config.headers.{k}")
        allowed = HEADERS[k]
        if allowed is not None and v not in allowed:
            raise ConfigError(f"{path}: http_server_config.headers.{k}: expected one of {', '.join(allowed)}")
        if "\r" in v or "\n" in v:
            raise ConfigError(f"{path}: http_server_config.headers.{k}: a line break in a header value")
        headers[k] = v
    users = {u: _string(h, f"{path}: basic_auth_users.{u}")
             for u, h in _mapping(top.get("basic_auth_users"), f"{path}: basic_auth_users").items()}
    return WebConfig(tls, checked_users(users, f"{path}: basic_auth_users"), headers, path)


def tls_context(t: TlsSettings, where: str) -> ssl.SSLContext:
    """A server SSLContext for `t`; ConfigError naming `where` when a file cannot be used."""
    for what, p in (("cert_file", t.cert_file), ("key_file", t.key_file), ("client_ca_file", t.client_ca_file)):
        if p:
            try:
                st = os.stat(p)
            except OSError as exc:
                raise ConfigError(f"{where} {what} {p}: cannot read: {exc.strerror or exc}") from None
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{where} {what} {p}: not a regular file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[t.min_version]
    ctx.maximum_version = _VERSIONS[t.max_version]
    if t.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(t.cert_file, t.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where} cert_file {t.cert_file}: cannot load: {exc}") from None
    if t.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=t.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where} client_ca_file {t.client_ca_file}: cannot load: {exc}") from None
        ctx.verify_mode = _CLIENT_AUTH[t.client_auth_type]
    return ctx


def web_config(web_config_file: str, tls_cert_file: str = "", tls_key_file: str = "",
               basic_auth_file: str = "") -> WebConfig:
    """The effective web config: the web config file, or the [agent] keys; both at once is an error."""

    if web_config_file:
        if tls_cert_file or tls_key_file or basic_auth_file:
            raise ConfigError(f"web config file {web_config_file} and [agent].tls_cert_file/tls_key_file/"
                              "basic_auth_file: set one or the other (the web config file holds both)")
        return load_web_config(web_config_file)
    tls = None
    if tls_cert_file or tls_key_file:
        if not (tls_cert_file and tls_key_file):
            raise ConfigError("[agent].tls_cert_file and tls_key_file: set both or neither")
        tls = TlsSettings(tls_cert_file, tls_key_file)
    users = load_users(basic_auth_file) if basic_auth_file else {}
    return WebConfig(tls, users, {}, "[agent]")
