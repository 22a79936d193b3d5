"""The one loader for /etc/nodetune/config.toml: every section, every command, the same rules.

Unknown sections and keys, wrong types, non-finite or out-of-range numbers are a `ConfigError`
naming the file, the key and its line; nothing runs on a config that does not load.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import math
import pkgutil
import re
import tomllib
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .fields import SECTIONS, allowed_names

DEFAULT_CONFIG = "/etc/nodetune/config.toml"
MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; a megabyte is a mistake, not a config

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file that cannot be used; `str(exc)` is the whole one-line message."""


def _discover() -> dict[str, type]:
    """Import every section module of this package once (each registers itself)."""
    if not getattr(_discover, "done", False):
        pkg = importlib.import_module(__package__ or "nodetune.config")
        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name not in ("fields", "loader"):
                importlib.import_module(f"{pkg.__name__}.{mod.name}")
        _discover.done = True  # type: ignore[attr-defined]
    return SECTIONS


@dataclass
class Config:
    """The effective configuration: one instance per registered section, defaults where unset."""

    sections: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the file it came from; None: built-in defaults

    def get(self, cls: type[T]) -> T:
        """The section whose dataclass is `cls` (its defaults when the file did not set it)."""
        name = getattr(cls, "__config_section__", None)
        if name is None:
            raise TypeError(f"{cls.__name__} is not a config section")
        if name not in self.sections:
            self.sections[name] = cls()
        return typing.cast(T, self.sections[name])


def defaults() -> Config:
    return Config({name: cls() for name, cls in _discover().items()})


def _line_of(text: str, section: str | None, key: str) -> int | None:
    """The line on which `key` is set inside `[section]` (tomllib does not report key positions)."""
    current: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = re.match(r"^\[\s*([^\]]+?)\s*\]", s)
        if m:
            current = m.group(1).strip().strip('"')
            if section is not None and current == section and key == "":
                return n
            continue
        if current == section and re.match(rf"^\"?{re.escape(key)}\"?\s*=", s):
            return n
    return None


def _where(src: str, text: str, section: str | None, key: str = "") -> str:
    line = _line_of(text, section, key)
    return f"{src}:{line}" if line else src


def _coerce(hint: Any, meta: dict[str, Any], value: Any, what: str) -> Any:
    """Check one value against its declared type and range; return it in the field's type."""
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{what}: expected true or false, got {value!r:.40}")
        return value
    if hint in (float, int):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{what}: expected a number, got {value!r:.40}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{what}: expected a finite number, got {value!r}")
        lo, hi = meta.get("lo"), meta.get("hi")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"between {lo:g} and {hi:g}" if hi is not None else f">= {lo:g}"
            raise ConfigError(f"{what}: expected a number {rng}, got {value!r:.40}")
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"{what}: expected a whole number, got {value!r}")
            return int(value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{what}: expected a string, got {value!r:.40}")
        return value
    if typing.get_origin(hint) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{what}: expected a list of strings, got {value!r:.60}")
        choices = allowed_names(meta) if value else ()
        bad = [v for v in value if choices and v not in choices]
        if bad:
            raise ConfigError(f"{what}: {bad[0]!r} is not one of {', '.join(choices)}")
        return list(value)
    raise TypeError(f"config field type {hint!r} is not supported")  # a bug in a section module


def _section(cls: type, table: dict[str, Any], src: str, text: str, name: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, val in table.items():
        what = f"{_where(src, text, name, key)}: [{name}].{key}"
        if key not in known:
            close = [k for k in known if k.startswith(key[:4])][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{what}: unknown key{hint}")
        values[key] = _coerce(hints[key], dict(known[key].metadata), val, what)
    obj = cls(**values)
    check = getattr(obj, "check", None)  # a section's checks across keys (files, addresses)
    for key, why in check() if callable(check) else []:
        raise ConfigError(f"{_where(src, text, name, key)}: [{name}].{key}: {why}")
    return obj


def parse_config(data: bytes | str, src: str) -> Config:
    """Parse and check a whole config file; `src` names it in every error."""
    if isinstance(data, bytes):
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{src}: {len(data)} bytes is too large for a config file (limit {MAX_CONFIG_BYTES})")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{src}: not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: not valid TOML: {exc}") from None
    sections = _discover()
    cfg = defaults()
    cfg.source = src
    for name, table in doc.items():
        if name not in sections:
            raise ConfigError(f"{_where(src, text, name)}: unknown section [{name}] "
                              f"(known: {', '.join(f'[{s}]' for s in sorted(sections))})")
        if not isinstance(table, dict):
            raise ConfigError(f"{_where(src, text, None, name)}: {name} must be a [{name}] table")
        cfg.sections[name] = _section(sections[name], table, src, text, name)
    return cfg


def read_config_file(path: str, shown: str | None = None) -> Config:
    """Read and check the file at `path` (a real path on this machine); `shown` names it in errors."""
    shown = shown or path
    from nodetune.probes.host import read_regular_file

    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES)  # a FIFO or a device: refused, never read
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise ConfigError(f"{shown}: too large for a config file (limit {MAX_CONFIG_BYTES} bytes)") from None
        if isinstance(exc, IsADirectoryError) or (exc.strerror or "").startswith("a directory"):
            raise ConfigError(f"{shown}: is a directory, not a config file") from None
        raise ConfigError(f"{shown}: cannot read config: {exc.strerror or exc}") from None
    return parse_config(data, shown)


def load_config(host: Any, path: str | None = None) -> Config:
    """`path` (a file on this machine) or the node's /etc/nodetune/config.toml, or the defaults.

    `host` is the node's `probes.host.Host`: a fake root has its own /etc/nodetune.
    """
    if path is not None:
        return read_config_file(path)
    if not host.exists(DEFAULT_CONFIG):
        return defaults()
    return read_config_file(host.path(DEFAULT_CONFIG), DEFAULT_CONFIG)


def effective(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every section's values after the file and the defaults are merged (for `config check`)."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in sorted(_discover().items()):
        out[name] = dataclasses.asdict(cfg.get(cls))
    return out


def _shown(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(f'"{x}"' for x in v) + "]"
    return f'"{v}"' if isinstance(v, str) else str(v)


def section_table(cls: type) -> str:
    """A README table of a section's keys, generated from the dataclass so the two cannot drift."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        default: Any = f.default
        factory = f.default_factory
        if default is dataclasses.MISSING and callable(factory):
            default = factory()
        shown = _shown(default)
        rows.append(f"| `{f.name}` | {shown} | {f.metadata['doc']} |")
    return "\n".join(rows)
