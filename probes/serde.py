"""JSON round-trip for the typed dataclasses that cross module boundaries.

`to_jsonable` turns a dataclass tree into plain JSON values; `from_jsonable` rebuilds it from the
type hints and names the exact path of the first value that does not fit, so a damaged snapshot
gives one clear line instead of a traceback deep inside a probe.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class SchemaError(ValueError):
    """A JSON document does not match the dataclass it should hold."""


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, enums, lists, tuples and dicts to JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def from_jsonable(cls: type[T], data: Any, path: str = "$") -> T:
    """Build `cls` from JSON values; raise SchemaError naming the path of a bad value."""
    return typing.cast(T, _convert(cls, data, path))


def _convert(tp: Any, data: Any, path: str) -> Any:
    if tp is Any:
        return data
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if data is None:
            if type(None) in args:
                return None
            raise SchemaError(f"{path}: null where a value is required")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, data, path)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(errors[0] if len(errors) == 1 else f"{path}: no type of {tp} fits {data!r:.60}")
    if origin is typing.Literal:
        if data not in get_args(tp):
            raise SchemaError(f"{path}: {data!r:.40} is not one of {get_args(tp)}")
        return data
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise SchemaError(f"{path}: expected a list, found {type(data).__name__}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(data):
                raise SchemaError(f"{path}: expected {len(args)} items, found {len(data)}")
            return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
        item = args[0] if args else Any
        out = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(data)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(data, dict):
            raise SchemaError(f"{path}: expected an object, found {type(data).__name__}")
        ktp, vtp = get_args(tp) or (str, Any)
        return {_key(ktp, k, path): _convert(vtp, v, f"{path}.{k}") for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise SchemaError(f"{path}: expected an object for {tp.__name__}, found {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{path}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SchemaError(f"{path}.{f.name}: missing")
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise SchemaError(f"{path}: {data!r:.40} is not a valid {tp.__name__}") from None
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise SchemaError(f"{path}: expected a number, found {data!r:.40}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise SchemaError(f"{path}: expected an integer, found {data!r:.40}")
        return data
    if tp in (str, bool):
        if not isinstance(data, tp):
            raise SchemaError(f"{path}: expected {tp.__name__}, found {data!r:.40}")
        return data
    if tp is type(None):
        if data is not None:
            raise SchemaError(f"{path}: expected null")
        return None
    raise SchemaError(f"{path}: cannot convert to {tp!r}")


def _key(ktp: Any, key: str, path: str) -> Any:
    if ktp is int:
        try:
            return int(key)
        except ValueError:
            raise SchemaError(f"{path}: key {key!r} is not an integer") from None
    return key
