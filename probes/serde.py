"""JSON round-trip for the typed dataclasses that cross module boundaries.

`to_jsonable` turns a dataclass tree into plain JSON values; `from_jsonable` rebuilds it from the
type hints and names the exact path of the first value that does not fit, so a damaged snapshot
gives one clear line instead of a traceback deep inside a probe. Numbers are checked on the way
in: no NaN or infinity, nothing beyond MAX_MAGNITUDE (a float of 1e308 passes a type check and
then overflows `math.fsum` in the diagnosis; an int of 10**400 overflows `float()`).
`parse_json` is the strict reader for files nodetune did not necessarily write itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import gc
import json
import math
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


def parse_json(text: str | bytes, strict: bool = False) -> Any:
    """json.loads that refuses NaN/Infinity and absurd nesting as SchemaError.

    Numbers are parsed natively (a Python callback per number is ~3 s for a 10k-process snapshot;
    a scan for suspicious numbers first cost 1.3 s): their magnitudes are checked when the values
    are converted. `strict` checks each number while parsing, to name a bad one as written; a
    number the native parser refuses (an integer of more than 4300 digits) takes that path too.
    json.JSONDecodeError (bad syntax, with line and column) passes through unchanged.
    """
    try:
        if not strict:
            try:
                return json.loads(text, parse_constant=_refuse_constant)
            except json.JSONDecodeError:
                raise
            except ValueError:  # int() refused a number of thousands of digits: say which, below
                pass
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_strict_float,
                          parse_int=_strict_int)
    except RecursionError:
        raise SchemaError("nested too deeply to read (a snapshot is a few levels deep)") from None


def strict_reason(text: str | bytes) -> str | None:
    """What the strict reader says of a number in `text`, or None: names the number as written
    when a converted value was out of range (1e400 reads natively as inf)."""
    try:
        parse_json(text, strict=True)
    except SchemaError as exc:
        return str(exc)
    except ValueError:
        return None
    return None


@contextlib.contextmanager
def gc_paused() -> typing.Iterator[None]:
    """No cyclic garbage collection inside: for building (or judging) large acyclic structures.

    Each collection of the oldest generation walks every object made so far; a 10k-process snapshot
    is ~1.5M objects and those passes were over half of its load (reference counting frees what
    it can meanwhile). Threads that nest it leave the collector as they found it.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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


# Below a registered root (a snapshot's Sample), every number is a counter or a reading that never
# goes below zero, except these fields (class.field; the aggregate "cpu" line of /proc/stat is -1).
_COUNTER_ROOTS: set[type] = set()
SIGNED_FIELDS = frozenset({"CpuTimes.cpu"})


def register_counters(cls: type) -> None:
    """Refuse negative numbers anywhere under `cls` (but SIGNED_FIELDS) when converting."""
    _COUNTER_ROOTS.add(cls)
    _fast.cache_clear()


def from_jsonable(cls: type[T], data: Any, path: str = "$") -> T:
    """Build `cls` from JSON values; raise SchemaError naming the path of a bad value.

    A converter compiled once per type does the work (a 10k-process snapshot holds ~5M values);
    only when it refuses a value does the slower walk below run again to name the path.
    """
    try:
        return typing.cast(T, _fast(typing.cast(Any, cls), False)(data))
    except _Bad:
        pass
    except RecursionError:
        raise SchemaError(f"{path}: nested too deep") from None
    return typing.cast(T, _convert(cls, data, path))


class _Bad(Exception):
    """The fast path met a value that does not fit; the slow path says where and why."""


_BAD = _Bad()
_MISSING = object()


def _fail(_: Any = None) -> Any:
    raise _BAD


_LIMIT = MAX_MAGNITUDE
_LIMIT_INT = int(MAX_MAGNITUDE)


def _inline(tp: Any, nonneg: bool, v: str = "v") -> str | None:
    """A Python expression converting the variable `v` of a scalar (or optional scalar) type, or None.

    The bounds are literals (a constant load, not a global lookup, for each of millions of values).
    """
    hi, hi_int = repr(_LIMIT), repr(_LIMIT_INT)
    lo, lo_int = ("0", "0") if nonneg else (f"-{hi}", f"-{hi_int}")
    if tp is float:
        return (f"({v} if type({v}) is float and {lo} <= {v} <= {hi} else "
                f"float({v}) if type({v}) is int and {lo} <= {v} <= {hi} else _fail())")
    if tp is int:
        return f"({v} if type({v}) is int and {lo_int} <= {v} <= {hi_int} else _fail())"
    if tp is str:
        return f"({v} if type({v}) is str else _fail())"
    if tp is bool:
        return f"({v} if type({v}) is bool else _fail())"
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            inner = _inline(args[0], nonneg, v)
            return None if inner is None else f"(None if {v} is None else {inner})"
    return None


def _field_expr(tp: Any, nonneg: bool, env: dict[str, Any], name: str) -> str:
    """The expression converting `v` into a field of type `tp`, for a generated converter: scalars
    inline, a list or string-keyed map with its comprehension inline (an empty one without even
    that), anything else by its converter, bound in `env` as `name`."""
    expr = _inline(tp, nonneg)
    if expr is not None:
        return expr
    origin, args = get_origin(tp), get_args(tp)
    if origin is list or (origin is dict and args and args[0] is str):
        item_tp = args[-1] if args else Any
        item = _inline(item_tp, nonneg, "x")
        if item is None:
            env[name] = _fast(item_tp, nonneg)
            item = f"{name}(x)"
        if origin is list:
            return f"(([{item} for x in v] if v else []) if type(v) is list else _fail())"
        return f"(({{k: {item} for k, x in v.items()}} if v else {{}}) if type(v) is dict else _fail())"
    env[name] = _fast(tp, nonneg)
    return f"{name}(v)"


def _plain_init(tp: type) -> bool:
    """Whether tp's __init__ is the one dataclasses wrote and does nothing but store each field:
    then a converter stores them on a bare instance itself (a call frame less per object)."""
    params = getattr(tp, "__dataclass_params__", None)
    init = tp.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    fields = dataclasses.fields(tp)
    return (params is not None and params.init and not params.frozen and not hasattr(tp, "__post_init__")
            and code is not None and code.co_filename == "<string>"  # generated, not written in a class body
            and all(f.init for f in fields)
            and set(tp.__dict__.get("__dataclass_fields__", ())) == {f.name for f in fields})  # no InitVar


def _nullable(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _compile_dataclass(tp: type, nonneg: bool) -> typing.Callable[[Any], Any]:
    """obj(d) -> tp(...): generated once, scalar checks inlined, fields read by subscription (a
    missing one is a KeyError, caught once per object rather than tested per field) and stored on
    a bare instance where that is all __init__ would do. A call per value, a keyword dict per object
    and a `dict.get` per field were most of a large snapshot's load."""
    hints = _hints(tp)
    under = nonneg or tp in _COUNTER_ROOTS
    direct = _plain_init(tp)
    env: dict[str, Any] = {"_BAD": _BAD, "_MISSING": _MISSING, "_fail": _fail, "cls": tp, "new": object.__new__}
    src = ["def obj(d):", "    if type(d) is not dict:", "        raise _BAD"]
    if direct:
        src.append("    o = new(cls)")
    src.append("    try:")
    args: list[str] = []
    for i, f in enumerate(dataclasses.fields(tp)):
        if not f.init:
            continue
        fn = under and f"{tp.__name__}.{f.name}" not in SIGNED_FIELDS
        expr = _field_expr(hints[f.name], fn, env, f"c{i}")
        dest = f"o.{f.name}" if direct else f"a{i}"
        if f.default is None and _nullable(hints[f.name]):  # absent reads as None: the default itself
            src += [f"        v = d.get({f.name!r})", f"        {dest} = {expr}"]
        elif f.default is not dataclasses.MISSING:
            env[f"d{i}"] = f.default
            src += [f"        v = d.get({f.name!r}, _MISSING)", f"        {dest} = d{i} if v is _MISSING else {expr}"]
        elif f.default_factory is not dataclasses.MISSING:
            env[f"f{i}"] = f.default_factory
            src += [f"        v = d.get({f.name!r}, _MISSING)", f"        {dest} = f{i}() if v is _MISSING else {expr}"]
        else:
            src += [f"        v = d[{f.name!r}]", f"        {dest} = {expr}"]
        args.append(f"{f.name}=a{i}" if f.kw_only else f"a{i}")
    # Converters below raise only _Bad; a KeyError is a missing field of this object.
    src += ["    except KeyError:", "        raise _BAD from None"]
    src.append("    return o" if direct else f"    return cls({', '.join(args)})")
    exec(compile("\n".join(src), f"<from_jsonable {tp.__name__}>", "exec"), env)  # noqa: S102 - our own source
    return typing.cast(typing.Callable[[Any], Any], env["obj"])


def _lambda(body: str, arg: str = "d") -> typing.Callable[[Any], Any]:
    return typing.cast(typing.Callable[[Any], Any],
                       eval(f"lambda {arg}: {body}", {"_fail": _fail}))  # noqa: S307 - our own source


@functools.cache
def _fast(tp: Any, nonneg: bool = False) -> typing.Callable[[Any], Any]:
    """A converter for `tp` with the same checks as `_convert`, and no path bookkeeping."""
    if tp is Any:
        return lambda d: d
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        convs = [_fast(a, nonneg) for a in args if a is not type(None)]
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
            parts = [_fast(a, nonneg) for a in args]
            return lambda d: (tuple(c(v) for c, v in zip(parts, d, strict=True))
                              if type(d) is list and len(d) == len(parts) else _fail())
        inline = _inline(args[0], nonneg) if args else None
        if inline is not None:  # a list of scalars: the check inside the comprehension, no call per item
            return _lambda(f"({'tuple' if origin is tuple else ''}([{inline} for v in d]) "
                           "if type(d) is list else _fail())")
        item = _fast(args[0] if args else Any, nonneg)
        if origin is tuple:
            return lambda d: tuple(item(v) for v in d) if type(d) is list else _fail()
        return lambda d: [item(v) for v in d] if type(d) is list else _fail()
    if origin is dict:
        ktp, vtp = get_args(tp) or (str, Any)
        inline = _inline(vtp, nonneg)
        if ktp is str and inline is not None:
            return _lambda(f"({{k: {inline} for k, v in d.items()}} if type(d) is dict else _fail())")
        val = _fast(vtp, nonneg)
        if ktp is str:
            return lambda d: {k: val(v) for k, v in d.items()} if type(d) is dict else _fail()
        return _fail  # int-keyed maps and the like: the slow path converts (and checks) their keys
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _compile_dataclass(tp, nonneg)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _fail  # rare: the slow path
    expr = _inline(tp, nonneg)
    if expr is not None:
        return _lambda(expr, "v")
    if tp is type(None):
        return lambda d: None if d is None else _fail()
    return _fail


def _convert(tp: Any, data: Any, path: str, nonneg: bool = False) -> Any:
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
                return _convert(arg, data, path, nonneg)
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
            return tuple(_convert(a, v, f"{path}[{i}]", nonneg)
                         for i, (a, v) in enumerate(zip(args, data, strict=True)))
        item = args[0] if args else Any
        out = [_convert(item, v, f"{path}[{i}]", nonneg) for i, v in enumerate(data)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(data, dict):
            raise SchemaError(f"{path}: expected an object, found {type(data).__name__}")
        ktp, vtp = get_args(tp) or (str, Any)
        return {_key(ktp, k, path): _convert(vtp, v, f"{path}.{k}", nonneg) for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise SchemaError(f"{path}: expected an object for {tp.__name__}, found {type(data).__name__}")
        hints = _hints(tp)
        under = nonneg or tp in _COUNTER_ROOTS
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{path}.{f.name}",
                                          under and f"{tp.__name__}.{f.name}" not in SIGNED_FIELDS)
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
        _in_range(data, path, nonneg)
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise SchemaError(f"{path}: expected an integer, found {data!r:.40}")
        _in_range(data, path, nonneg)
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


def _in_range(x: int | float, path: str, nonneg: bool = False) -> None:
    """Finite and within MAX_MAGNITUDE (ints are compared exactly: float(10**400) would overflow)."""
    if isinstance(x, float) and not math.isfinite(x):
        raise SchemaError(f"{path}: {x!r} is not a finite number")
    if x > MAX_MAGNITUDE or x < -MAX_MAGNITUDE:
        # str() of a huge int is slow (and refused past 4300 digits): say its size instead
        bits = x.bit_length() if isinstance(x, int) else 0
        shown = f"an integer of ~{int(bits * 0.30103) + 1} digits" if bits > 100 else repr(x)
        raise SchemaError(f"{path}: {shown} is out of range (beyond ±{MAX_MAGNITUDE:.3g})")
    if nonneg and x < 0:
        raise SchemaError(f"{path}: {x!r} is negative (a counter or a reading; it never goes below zero)")


def _key(ktp: Any, key: str, path: str) -> Any:
    if ktp is int:
        if len(key) > _MAX_INT_DIGITS:
            raise SchemaError(f"{path}: key of {len(key)} characters is not an integer in range")
        try:
            return int(key)
        except ValueError:
            raise SchemaError(f"{path}: key {key!r} is not an integer") from None
    return key
