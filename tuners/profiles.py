"""Tuning profiles: TOML files, validated strictly.

A profile is a few top-level keys and one table per tuner ([pinning], [hugepages], [readahead],
[power], [gpu]); each table's keys are the fields of that tuner's parameter dataclass. A name
is looked up in /etc/nodetune/profiles/NAME.toml on the node (so a site can add its own or
override a shipped one), then among the profiles shipped in this package; anything with a "/"
or ending in ".toml" is a file path. Unknown tables or keys and wrong types fail with one line
naming the file and the key.

A name never leads out of its directory: a node profile that is a symlink resolving outside
/etc/nodetune/profiles (to /etc/shadow, say) is refused. A file path given on the command line may
be anywhere, but must be a regular file of at most MAX_PROFILE_BYTES. Numbers must be finite and
fit in 64 bits before a tuner's own range checks look at them.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import re
import stat
import tomllib
import types
import typing
from dataclasses import dataclass
from typing import Any, get_args, get_origin, get_type_hints

from nodetune.probes.host import Host, ProbeError
from nodetune.probes.serde import MAX_MAGNITUDE

from .errors import ProfileError
from .registry import sections

USER_DIR = "/etc/nodetune/profiles"
TOP_KEYS: dict[str, type] = {"description": str, "allow_lower": bool}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_PROFILE_BYTES = 1 << 20  # shipped profiles are < 2 kB
_INT64 = 2**63 - 1


@dataclass
class Profile:
    """A profile's top-level keys and one parameter object per tuner table it sets.

    `profile.readahead` reads the [readahead] table's parameters (None when the profile does not
    set it); the tables are whatever tuners `tuners.registry` found, not a list kept here.
    """

    name: str
    source: str
    description: str = ""
    allow_lower: bool = False
    tables: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "tables":
            raise AttributeError(name)
        if name in sections():
            return self.tables.get(name)
        raise AttributeError(f"Profile has no attribute or tuner table {name!r}")

    def set(self, name: str, params: Any) -> None:
        if name not in sections():
            raise ProfileError(f"no tuner reads a [{name}] table (known: {', '.join(sections())})")
        self.tables[name] = params


@dataclass
class ProfileInfo:
    name: str
    source: str
    description: str


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is list:
        return "a list of " + {int: "integers", str: "strings"}.get(get_args(tp)[0], str(get_args(tp)[0]))
    return {int: "an integer", str: "a string", bool: "true or false", float: "a number"}.get(tp, str(tp))


def fits(value: Any, tp: Any) -> bool:
    """Does a TOML value fit a field type (TOML has no null: an optional field must be present)?"""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, a) for a in get_args(tp) if a is not type(None))
    if origin is list:
        return isinstance(value, list) and all(fits(v, get_args(tp)[0]) for v in value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


def number_problem(value: Any) -> str | None:
    """Why a number (or a number in a list) cannot be a knob value: NaN, infinite, beyond 64 bits."""
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, bool):
            continue
        if isinstance(v, float) and (not math.isfinite(v) or abs(v) > MAX_MAGNITUDE):
            return f"{v!r} is not a finite number in range"
        if isinstance(v, int) and not -_INT64 <= v <= _INT64:
            return f"{v} is out of range (beyond 64 bits)"
    return None


def _section(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a table, found {type(data).__name__}")
    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        if key not in hints:
            raise ProfileError(f"{where} unknown key {key!r} (known: {', '.join(known)})")
        if not fits(value, hints[key]):
            raise ProfileError(f"{where} {key}: expected {_type_name(hints[key])}, found {value!r:.40}")
        why = number_problem(value)
        if why:
            raise ProfileError(f"{where} {key}: {why}")
    params = cls(**data)
    problems = params.check()
    if problems:
        raise ProfileError(f"{where} {problems[0]}")
    return params


def profile_from_data(data: dict[str, Any], name: str, source: str) -> Profile:
    """Validate parsed TOML (or advice turned into tables) into a Profile."""
    prof = Profile(name=name, source=source)
    for key, value in data.items():
        if key in sections():
            prof.set(key, _section(sections()[key], value, f"{source}: [{key}]"))
        elif key in TOP_KEYS:
            if not fits(value, TOP_KEYS[key]):
                raise ProfileError(f"{source}: {key}: expected {_type_name(TOP_KEYS[key])}, found {value!r:.40}")
            setattr(prof, key, value)
        elif isinstance(value, dict):
            raise ProfileError(f"{source}: unknown section [{key}] (known: {', '.join(sections())})")
        else:
            raise ProfileError(f"{source}: unknown key {key!r} (known: {', '.join(TOP_KEYS)})")
    return prof


def parse_profile(text: str, name: str, source: str) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML: {exc}") from None
    return profile_from_data(data, name, source)


def _shipped(name: str) -> str | None:
    f = importlib.resources.files("nodetune.tuners").joinpath("profiles", f"{name}.toml")
    return f.read_text(encoding="utf-8") if f.is_file() else None


def _shipped_names() -> list[str]:
    d = importlib.resources.files("nodetune.tuners").joinpath("profiles")
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".toml")) if d.is_dir() else []


def _user_names(host: Host) -> list[str]:
    try:
        return [n[:-5] for n in host.listdir(USER_DIR) if n.endswith(".toml")]
    except ProbeError:
        return []


def list_profiles(host: Host) -> list[ProfileInfo]:
    """Every profile a name can reach, node profiles first (they override shipped ones)."""
    out: list[ProfileInfo] = []
    for name in sorted(set(_user_names(host)) | set(_shipped_names())):
        try:
            p = load_profile(host, name)
            out.append(ProfileInfo(name, p.source, p.description))
        except ProfileError as exc:
            out.append(ProfileInfo(name, "?", f"invalid: {exc.reason}"))
    return out


def read_profile_file(path: str) -> str:
    """A profile file named on the command line: anywhere, but a regular UTF-8 file of bounded size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not hang us
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ProfileError(f"{path}: not a regular file; a profile is a TOML file")
        data = os.read(fd, MAX_PROFILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"{path}: larger than {MAX_PROFILE_BYTES >> 10} KiB; not a profile (refused)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text (byte {exc.start}); a profile is a TOML file") from None


def _read_node_profile(host: Host, user: str) -> str:
    """A node profile by name: it must resolve to a regular file inside USER_DIR."""
    try:
        real = host.resolve_inside(user)
    except ProbeError as exc:
        raise ProfileError(f"{user}: {exc.reason}") from None
    if not real.startswith(USER_DIR + "/"):
        raise ProfileError(f"{user}: a symlink to {real}, outside {USER_DIR}; refused (copy the file there "
                           f"instead, or pass its path)")
    try:
        if not stat.S_ISREG(host.stat(real).st_mode):
            raise ProfileError(f"{user}: not a regular file; a profile is a TOML file")
        return host.read(real, limit=MAX_PROFILE_BYTES)
    except ProbeError as exc:
        raise ProfileError(f"{user}: {exc.reason.removeprefix(real + ': ')}") from None


def load_profile(host: Host, ref: str) -> Profile:
    """A profile by name (node dir, then shipped) or by file path."""
    if "/" in ref or ref.endswith(".toml"):
        return parse_profile(read_profile_file(ref), os.path.basename(ref).removesuffix(".toml"), ref)
    if not _NAME.match(ref):
        raise ProfileError(f"profile {ref!r}: not a valid name")
    user = f"{USER_DIR}/{ref}.toml"
    if host.exists(user) or host.is_link(user):
        return parse_profile(_read_node_profile(host, user), ref, user)
    shipped = _shipped(ref)
    if shipped is None:
        names = sorted(set(_user_names(host)) | set(_shipped_names()))
        raise ProfileError(f"unknown profile {ref!r} (available: {', '.join(names)}; or pass a .toml path)")
    return parse_profile(shipped, ref, f"shipped:{ref}.toml")
