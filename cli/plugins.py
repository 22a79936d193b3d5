"""Installed distributions' metadata read as files: the nodetune.commands entry points and
nodetune's version, found as importlib.metadata finds them (the first distribution of a name on
sys.path wins) without importing it (importlib.metadata and the email parser it brings cost more
than the rest of `nodetune --help`)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator

TYPE_CHECKING = False  # typing's, without importing typing: `nodetune --help` imports this module
if TYPE_CHECKING:
    from typing import Any

GROUP = "nodetune.commands"


def _normalized(name: str) -> str:
    """A distribution name as packaging compares them (runs of -_. as one _, lower case); no `re`:
    importing it is a tenth of a bare interpreter's start."""
    out = name.lower().replace("-", "_").replace(".", "_")
    while "__" in out:
        out = out.replace("__", "_")
    return out


def _distributions() -> Iterator[tuple[str, str]]:
    """(normalized name, metadata folder) of each distribution on sys.path, first of a name only."""
    seen: set[str] = set()
    for entry in sys.path:
        path = entry or os.getcwd()
        try:
            names = sorted(os.listdir(path))
        except OSError:  # a zip or a folder that is gone: importlib.metadata would look inside; we skip it
            continue
        for n in names:
            if not n.endswith((".dist-info", ".egg-info")):
                continue
            dist = _normalized(n.rsplit(".", 1)[0].split("-", 1)[0])
            if dist not in seen and os.path.isdir(os.path.join(path, n)):
                seen.add(dist)
                yield dist, os.path.join(path, n)


def version(dist: str) -> str | None:
    """`dist`'s Version header, or None where no metadata of it is found as a folder on sys.path."""
    want = _normalized(dist)
    for name, meta in _distributions():
        if name != want:
            continue
        for fname in ("METADATA", "PKG-INFO"):
            try:
                with open(os.path.join(meta, fname), encoding="utf-8") as fh:
                    for line in fh:
                        if line.startswith("Version:"):
                            return line.split(":", 1)[1].strip() or None
                        if not line.strip():
                            break  # the headers ended without a version
            except OSError:
                continue
        return None
    return None


def command_entry_points() -> list[tuple[str, str]]:
    """(name, "module:attr") of each nodetune.commands entry point, in sys.path order."""
    out: list[tuple[str, str]] = []
    for _, meta in _distributions():
        try:
            with open(os.path.join(meta, "entry_points.txt"), encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        section = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[] ")
            elif section == GROUP and "=" in line and not line.startswith(("#", ";")):
                name, value = (x.strip() for x in line.split("=", 1))
                out.append((name, value))
    return out


def load(value: str) -> Callable[..., Any]:
    """The object an entry point's "module:attr" value names (ImportError/AttributeError if none)."""
    module, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module.strip())
    for part in attr.split("[", 1)[0].strip().split(".") if attr else []:
        obj = getattr(obj, part)
    return obj
