"""JSON round-trip for the typed dataclasses that cross module boundaries.

`to_jsonable` turns a dataclass tree into plain JSON values; `from_jsonable` rebuilds it from the
type hints and names the exact path of the first value that does not fit, so a damaged snapshot
gives one clear line instead of a traceback deep inside a probe. Numbers are checked on the way
in: no NaN or infinity, nothing beyond MAX_MAGNITUDE (a float of 1e308 passes a type check and
then overflows `math.fsum` in the diagnosis; an int of 10**400 overflows `float()`).
`parse_json` is the strict reader for files nodetune did not necessarily write itself.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import re
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class SchemaError(ValueError):
    """A JSON document does not match the dataclass it should hold."""


# Every counter nodetune records fits in 64 bits; sums and squares of many such values stay far
# from float overflow (1.8e308).
MAX_MAGNITUDE = float(2**64)
_MAX_INT_DIGITS = 20  # len(str(2**64)): more digits is out of range before int() is even tried


def _refuse_constant(name: str) -> Any:
    raise SchemaError(f"{name} is not a number (nodetune never writes NaN or Infinity)")


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf; the magnitude of the rest is checked with its path
        raise SchemaError(f"number {text[:40]} is out of range (beyond ±{MAX_MAGNITUDE:.3g})")
    return value


def _strict_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        # Python refuses int() of > 4300 digits with a ValueError; far fewer is already absurd.
        raise SchemaError(f"integer of {digits} digits is out of range (beyond ±{MAX_MAGNITUDE:.3g})")
    return int(text)


# Numbers only the strict reader should see: 21+ digits (beyond 64 bits) or a 3-digit exponent.
# (After `:`, `,` or `[`, as numbers stand in JSON; a string that merely looks so costs a slower read.)
_SUSPECT = re.compile(rb"[:,\[]\s*-?(?:\d{21,}|\d+(?:\.\d+)?[eE][+-]?\d{3,})")


def parse_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN/Infinity, out-of-range numbers and absurd nesting as SchemaError.

    json.JSONDecodeError (bad syntax, with line and column) passes through unchanged.
    """
    try:
        if not _SUSPECT.search(text if isinstance(text, bytes) else text.encode("utf-8", "replace")):
            # the C scanner parses numbers natively (a Python callback per number is ~3 s for a
            # 10k-process snapshot); magnitudes are checked when the values are converted
            return json.loads(text, parse_constant=_refuse_constant)
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_strict_float,
                          parse_int=_strict_int)
    except RecursionError:
        raise SchemaError("nested too deeply to read (a snapshot is a few levels deep)") from None


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
    """Build `cls` from JSON values; raise SchemaError naming the path of a bad value.

    A converter compiled once per type does the work (a 10k-process snapshot holds ~5M values);
    only when it refuses a value does the slower walk below run again to name the path.
    """
    try:
        return typing.cast(T, _fast(typing.cast(Any, cls))(data))
    except _Bad:
        pass
    except RecursionError:
        raise SchemaError(f"{path}: nested too deep") from None
    return typing.cast(T, _convert(cls, data, path))


class _Bad(Exception):
    """The fast path met a value that does not fit; the slow path says where and why."""


_BAD = _Bad()


def _fail(_: Any = None) -> Any:
    raise _BAD


_LIMIT = MAX_MAGNITUDE
_LIMIT_INT = int(MAX_MAGNITUDE)


@functools.cache
def _fast(tp: Any) -> typing.Callable[[Any], Any]:
    """A converter for `tp` with the same checks as `_convert`, and no path bookkeeping."""
    if tp is Any:
        return lambda d: d
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        convs = [_fast(a) for a in args if a is not type(None)]
        nullable = type(None) in args
        if len(convs) == 1:
            one = convs[0]
            if nullable:
                return lambda d: None if d is None else one(d)
            return lambda d: _fail() if d is None else one(d)

        def union(d: Any) -> Any:
            if d is None:
                return None if nullable else _fail()
            for c in convs:
                try:
                    return c(d)
                except _Bad:
                    continue
            raise _BAD

        return union
    if origin is typing.Literal:
        allowed = get_args(tp)
        return lambda d: d if d in allowed else _fail()
    if origin in (list, tuple):
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            parts = [_fast(a) for a in args]
            return lambda d: (tuple(c(v) for c, v in zip(parts, d, strict=True))
                              if type(d) is list and len(d) == len(parts) else _fail())
        item = _fast(args[0] if args else Any)
        if origin is tuple:
            return lambda d: tuple(item(v) for v in d) if type(d) is list else _fail()
        return lambda d: [item(v) for v in d] if type(d) is list else _fail()
    if origin is dict:
        ktp, vtp = get_args(tp) or (str, Any)
        val = _fast(vtp)
        if ktp is str:
            return lambda d: {k: val(v) for k, v in d.items()} if type(d) is dict else _fail()
        return _fail  # int-keyed maps and the like: the slow path converts (and checks) their keys
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        fields = [(f.name, _fast(hints[f.name]),
                   f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                  for f in dataclasses.fields(tp)]
        cls = tp

        def obj(d: Any) -> Any:
            if type(d) is not dict:
                raise _BAD
            kw = {}
            for name, conv, required in fields:
                if name in d:
                    kw[name] = conv(d[name])
                elif required:
                    raise _BAD
            return cls(**kw)

        return obj
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _fail  # rare: the slow path
    if tp is float:  # NaN fails both comparisons, infinities the bound
        return lambda d: float(d) if (type(d) is float or type(d) is int) and -_LIMIT <= d <= _LIMIT else _fail()
    if tp is int:
        return lambda d: d if type(d) is int and -_LIMIT_INT <= d <= _LIMIT_INT else _fail()
    if tp is str:
        return lambda d: d if type(d) is str else _fail()
    if tp is bool:
        return lambda d: d if type(d) is bool else _fail()
    if tp is type(None):
        return lambda d: None if d is None else _fail()
    return _fail


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
        _in_range(data, path)
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise SchemaError(f"{path}: expected an integer, found {data!r:.40}")
        _in_range(data, path)
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


def _in_range(x: int | float, path: str) -> None:
    """Finite and within MAX_MAGNITUDE (ints are compared exactly: float(10**400) would overflow)."""
    if isinstance(x, float) and not math.isfinite(x):
        raise SchemaError(f"{path}: {x!r} is not a finite number")
    if x > MAX_MAGNITUDE or x < -MAX_MAGNITUDE:
        # str() of a huge int is slow (and refused past 4300 digits): say its size instead
        bits = x.bit_length() if isinstance(x, int) else 0
        shown = f"an integer of ~{int(bits * 0.30103) + 1} digits" if bits > 100 else repr(x)
        raise SchemaError(f"{path}: {shown} is out of range (beyond ±{MAX_MAGNITUDE:.3g})")


def _key(ktp: Any, key: str, path: str) -> Any:
    if ktp is int:
        if len(key) > _MAX_INT_DIGITS:
            raise SchemaError(f"{path}: key of {len(key)} characters is not an integer in range")
        try:
            return int(key)
        except ValueError:
            raise SchemaError(f"{path}: key {key!r} is not an integer") from None
    return key
