"""Convex values in Python: wire formats, the storage encoding and order-preserving index keys.

Representation (``shared/spec/values-and-ids.md`` §1): ``None`` = Null, ``bool`` = Boolean, ``int`` = Int64
(``bool`` is not an Int64, so checks use ``type(x) is int``), ``float`` = Float64 (NaN payloads, ±inf and
-0.0 preserved), ``str`` = String, ``bytes`` = Bytes, ``list`` = Array, ``dict[str, Value]`` = Object.

Storage: a document is kept as its ``convex_encoded_json`` text with sorted keys (orjson), plus flag bits
saying which special values it contains (Int64, NaN/±inf, -0.0, Bytes). The encoded format is what real
clients ask for, so exporting it is a byte copy; other formats and decoding walk the tree only when a flag
says a special value is present.
Pure functions, no I/O.
"""

from __future__ import annotations

import binascii
import enum
import json
import math
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Final, NamedTuple, TypeAlias

import orjson

from connectors.constants import (
    FORMAT_ALIASES,
    MAX_ARRAY_LEN,
    MAX_DOCUMENT_SIZE,
    MAX_NESTING,
    MAX_OBJECT_FIELDS,
    SYSTEM_FIELDS,
)
from connectors.errors import BadRequestError, InvalidValueError
from connectors.identifiers import field_name_problem
from connectors.typemap.tags import TYPE_RANK as _TYPE_RANK

Value: TypeAlias = "None | bool | int | float | str | bytes | list[Value] | dict[str, Value]"

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1

# Storage flag bits: which special values a stored document contains.
FLAG_INT: Final = 1
FLAG_NONFINITE: Final = 2
FLAG_NEGZERO: Final = 4
FLAG_BYTES: Final = 8

_OPT_SORT: Final = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
_loads = orjson.loads
_copysign = math.copysign
_PACK_I64 = struct.Struct("<q").pack
_UNPACK_I64 = struct.Struct("<q").unpack
_PACK_F64 = struct.Struct("<d").pack
_UNPACK_F64 = struct.Struct("<d").unpack
_PACK_F64_BE = struct.Struct(">d").pack


# --- Formats -----------------------------------------------------------------------------------------


class ValueFormat(enum.Enum):
    JSON = "json"
    ENCODED = "convex_encoded_json"
    EXPORT = "export_json"


_FORMAT_NAMES: Final = {name: ValueFormat(canonical) for name, canonical in FORMAT_ALIASES.items()}


def parse_format(s: str | None) -> ValueFormat:
    """The ``format`` query parameter (§2); ``None`` means the default, clean ``json``."""
    if s is None:
        return ValueFormat.JSON
    fmt = _FORMAT_NAMES.get(s)
    if fmt is None:
        raise BadRequestError("BadFormat", f"format param must be one of [`json`]. Got {s}")
    return fmt


# --- Errors with paths -------------------------------------------------------------------------------


class _Problem(Exception):
    """Internal: raised deep in a walk; each level appends its key on the way out (zero cost when
    nothing fails), and the public entry point turns it into :class:`InvalidValueError`."""

    def __init__(self, message: str, rev_path: list[str | int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.rev_path: list[str | int] = rev_path if rev_path is not None else []

    def to_error(self) -> InvalidValueError:
        return InvalidValueError(self.message, format_path(reversed(self.rev_path)))


class NestingTooDeepError(InvalidValueError):
    """400 ``InvalidValue``: objects and arrays nested deeper than :data:`MAX_NESTING` (or than a JSON
    parser reads). Its own type so that callers that report other value errors differently (e.g. as
    ``BadJsonBody``) still answer this one as ``InvalidValue``."""


class _TooDeep(_Problem):
    """A container nested deeper than :data:`MAX_NESTING`. Raised before recursing into it, so the depth
    of Python's stack never depends on the input; the entry point measures the real depth (iteratively)
    for the message."""

    def __init__(self) -> None:
        super().__init__(too_deep_message(MAX_NESTING + 1, exact=False))

    def measured(self, root: object) -> _TooDeep:
        self.message = too_deep_message(nesting_depth(root))
        return self

    def to_error(self) -> InvalidValueError:
        return NestingTooDeepError(self.message, format_path(reversed(self.rev_path)))


def too_deep_message(depth: int, *, exact: bool = True) -> str:
    """The one message for over-deep input, naming its depth (``exact=False``: at least ``depth``)."""
    amount = f"{depth}" if exact else f"more than {depth - 1}"
    return (
        f"Value is nested {amount} levels deep (the limit is {MAX_NESTING} levels of objects and arrays; "
        "flatten the data, for example by storing the deep part as a JSON string)"
    )


def _is_special(d: dict[Any, Any]) -> bool:
    if len(d) != 1:
        return False
    (k,) = d
    return k in ("$integer", "$float", "$bytes")


def nesting_depth(v: object) -> int:
    """How many levels of objects and arrays ``v`` has (a scalar: 0; ``{"a": [1]}``: 2). Iterative, so any
    depth is measured without recursion; ``$integer``/``$float``/``$bytes`` objects count as scalars."""
    deepest = 0
    stack: list[tuple[object, int]] = [(v, 1)]
    while stack:
        x, depth = stack.pop()
        t = type(x)
        if t is dict:
            if _is_special(x):  # type: ignore[arg-type]
                continue
            children: Iterable[object] = x.values()  # type: ignore[attr-defined]
        elif t is list:
            children = x  # type: ignore[assignment]
        else:
            continue
        if depth > deepest:
            deepest = depth
        for c in children:
            tc = type(c)
            if tc is dict or tc is list:
                stack.append((c, depth + 1))
    return deepest


_JS_IDENT_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*", re.ASCII)
# Keys in error paths are cut to this many characters: a path must not echo megabytes of user input.
_PATH_KEY_MAX: Final = 64


def format_path(parts: Iterable[str | int]) -> str:
    """JS-like path for error messages: ``.items[3].name``, ``["weird key"]``; long keys are cut (``…``)."""
    out = []
    for p in parts:
        if type(p) is int:
            out.append(f"[{p}]")
            continue
        key = str(p)
        cut = len(key) > _PATH_KEY_MAX
        if cut:
            key = key[:_PATH_KEY_MAX]
        if _JS_IDENT_RE.fullmatch(key):
            out.append("." + key + ("…" if cut else ""))
        else:
            quoted = json.dumps(key)
            out.append("[" + (quoted[:-1] + '…"' if cut else quoted) + "]")
    return "".join(out)


def _type_problem(v: object) -> _Problem:
    return _Problem(
        f"Python type {type(v).__name__} is not a Convex value "
        "(supported: None, bool, int, float, str, bytes, list, dict)"
    )


def _int_range_problem() -> _Problem:
    return _Problem("Integer is outside the Int64 range [-2^63, 2^63-1]")


def _key_problem(k: object, strict_top: bool) -> _Problem | None:
    problem = field_name_problem(k)
    if problem is not None:
        return _Problem(problem)
    if strict_top and k not in SYSTEM_FIELDS and k[0] == "_":  # type: ignore[index]
        return _Problem(
            f"Field name {json.dumps(k)} is a system field name (it starts with '_'); documents may "
            "only contain the system fields _id and _creationTime"
        )
    return None


# --- Parsing JSON text --------------------------------------------------------------------------------

# orjson refuses input nested deeper than this (its own limit, checked without recursion).
JSON_PARSER_MAX_DEPTH: Final = 1024
# The token `-0` (not `-0.5`, `-0e1`, `-01`): orjson reads it as the integer 0, Convex as Float64 -0.0.
_NEG_ZERO_TOKEN_RE: Final = re.compile(rb"-0(?![0-9.eE])")
# A whole JSON string, or the token `-0` outside strings (strings are matched first, so their contents are
# skipped).
_STRING_OR_NEG_ZERO_RE: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|-0(?![0-9.eE])', re.DOTALL)


def _neg_zero_as_float(m: re.Match[bytes]) -> bytes:
    token = m.group()
    return token if token[:1] == b'"' else b"-0.0"


def load_json(raw: bytes | str) -> Any:
    """Parse JSON text the way Convex reads it: the number token ``-0`` is the Float64 -0.0 (orjson alone
    gives the integer 0). Input nested deeper than orjson reads raises :class:`InvalidValueError` naming the
    depth; other syntax errors raise ``orjson.JSONDecodeError``. The common case costs one substring scan."""
    if type(raw) is str:
        raw = raw.encode("utf-8", "surrogatepass")
    if b"-0" in raw and _NEG_ZERO_TOKEN_RE.search(raw) is not None:  # type: ignore[arg-type]
        raw = _STRING_OR_NEG_ZERO_RE.sub(_neg_zero_as_float, raw)  # type: ignore[arg-type]
    try:
        return _loads(raw)
    except orjson.JSONDecodeError as e:
        if e.msg.startswith("depth limit"):
            raise NestingTooDeepError(too_deep_message(JSON_PARSER_MAX_DEPTH + 1, exact=False)) from None
        raise


# --- Base64 helpers ----------------------------------------------------------------------------------


def _b64(b: bytes) -> str:
    return binascii.b2a_base64(b, newline=False).decode("ascii")


def _b64decode(s: object, what: str) -> bytes:
    if type(s) is not str:
        raise _Problem(f"{what} payload must be a base64 string")
    # Encoders always pad; accept unpadded input too (upstream decoders' strictness is unconfirmed).
    if len(s) % 4:
        s = s + "=" * (-len(s) % 4)
    try:
        # strict_mode: only the standard alphabet, correct padding (what b64decode(validate=True) checks,
        # without its per-call regex).
        return binascii.a2b_base64(s, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _Problem(f"{what} payload is not valid base64") from None


# Rust's `{}` writes 1e300 as 301 digits; past this length the shortest exponent form is used instead.
_F64_DISPLAY_MAX: Final = 32


def _rust_f64_display(f: float) -> str:
    """Format like Rust's ``{}`` for f64 (no exponent, no trailing ``.0``) for upstream-identical messages;
    numbers that would take more than 32 characters that way (1e300, 5e-324) keep Python's exponent form."""
    r = repr(f)
    if "e" in r:
        plain = format(Decimal(r), "f")
        if len(plain) > _F64_DISPLAY_MAX:
            return r
        r = plain
    if r.endswith(".0"):
        r = r[:-2]
    return r


def _decode_integer_payload(s: object) -> int:
    raw = _b64decode(s, "$integer")
    if len(raw) != 8:
        raise _Problem("Int64 must be exactly eight bytes")
    return _UNPACK_I64(raw)[0]


def _decode_float_payload(s: object) -> float:
    raw = _b64decode(s, "$float")
    if len(raw) != 8:
        raise _Problem("Float64 must be exactly eight bytes")
    f: float = _UNPACK_F64(raw)[0]
    if f != 0.0 and f - f == 0.0:  # finite and non-zero, i.e. normal or subnormal
        raise _Problem(f"Float64 {_rust_f64_display(f)} should be encoded as a number")
    return f


def _is_negzero(v: float) -> bool:
    return v == 0.0 and _copysign(1.0, v) < 0.0


# --- Generic tree mapping (wire encoders/decoders; not the storage hot path) ------------------------


def _map_value(v: Any, leaf: Callable[[Any], Any], levels: int = MAX_NESTING) -> Any:
    t = type(v)
    if t is list:
        if levels <= 0:
            raise _TooDeep()
        out = []
        i = 0
        try:
            for i, x in enumerate(v):  # noqa: B007 - i is read in the except clause
                out.append(_map_value(x, leaf, levels - 1))
        except _Problem as p:
            p.rev_path.append(i)
            raise
        return out
    if t is dict:
        if levels <= 0:
            raise _TooDeep()
        res = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            try:
                res[k] = _map_value(x, leaf, levels - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
        return res
    return leaf(v)


def _run(fn: Callable[[Any], Any], v: Any) -> Any:
    try:
        return fn(v)
    except _TooDeep as p:
        raise p.measured(v).to_error() from None
    except _Problem as p:
        raise p.to_error() from None


# --- Encoders ----------------------------------------------------------------------------------------


def _leaf_clean(v: Any) -> Any:
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is float:
        if v - v == 0.0:
            return v
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        return str(v)
    if t is bytes:
        return _b64(v)
    raise _type_problem(v)


def _leaf_encoded(v: Any) -> Any:
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is float:
        if v - v == 0.0 and not _is_negzero(v):
            return v
        return {"$float": _b64(_PACK_F64(v))}
    if t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        return {"$integer": _b64(_PACK_I64(v))}
    if t is bytes:
        return {"$bytes": _b64(v)}
    raise _type_problem(v)


def _leaf_export(v: Any) -> Any:
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is float:
        return v if v - v == 0.0 else {"$float": _b64(_PACK_F64(v))}
    if t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        return v
    if t is bytes:
        return {"$bytes": _b64(v)}
    raise _type_problem(v)


def to_clean_json(v: Value) -> Any:
    """Clean ``json`` (lossy): Int64 -> decimal string, NaN/±inf -> strings, Bytes -> base64 string."""
    return _run(lambda x: _map_value(x, _leaf_clean), v)


def to_encoded_json(v: Value) -> Any:
    """``convex_encoded_json``: ``$integer``; ``$float`` only for -0.0/NaN/±inf; ``$bytes``."""
    return _run(lambda x: _map_value(x, _leaf_encoded), v)


def to_export_json(v: Value) -> Any:
    """``export_json``: Int64 plain integer, -0.0 plain, ``$float`` for NaN/±inf, ``$bytes``."""
    return _run(lambda x: _map_value(x, _leaf_export), v)


_ENCODERS: Final = {
    ValueFormat.JSON: to_clean_json,
    ValueFormat.ENCODED: to_encoded_json,
    ValueFormat.EXPORT: to_export_json,
}


def encode_value(v: Value, fmt: ValueFormat) -> Any:
    """Encode ``v`` into a JSON-able Python object in wire format ``fmt``."""
    return _ENCODERS[fmt](v)


def wire_bytes(value: Value, fmt: ValueFormat) -> bytes:
    """Serialized JSON (sorted keys) of ``value`` in wire format ``fmt``."""
    return _dumps(encode_value(value, fmt), option=_OPT_SORT)


# --- Decoders ----------------------------------------------------------------------------------------


def _dollar_key_problem(k: str) -> _Problem:
    if k in ("$set", "$map"):
        return _Problem(f"{k} values are no longer supported")
    return _Problem(f"Field name {json.dumps(k)} starts with '$', which is reserved")


def _decode_encoded(v: Any, levels: int = MAX_NESTING) -> Value:
    """``levels``: how many levels of containers ``v`` may still open (a document may open
    :data:`MAX_NESTING`); a container beyond is refused before recursing into it. Counting down keeps the
    check a comparison with a constant on this hot path."""
    t = type(v)
    if t is str or t is bool or v is None or t is float:
        return v
    if t is int:
        # §2.4 rule 1: every JSON number is a Float64, even when spelled as an integer.
        try:
            return float(v)
        except OverflowError:
            raise _Problem("Number is too large for a Float64") from None
    if t is list:
        if levels <= 0:
            raise _TooDeep()
        out: list[Value] = []
        i = 0
        try:
            for i, x in enumerate(v):  # noqa: B007 - i is read in the except clause
                out.append(_decode_encoded(x, levels - 1))
        except _Problem as p:
            p.rev_path.append(i)
            raise
        return out
    if t is dict:
        if len(v) == 1:
            ((k, x),) = v.items()
            if k == "$integer":
                return _decode_integer_payload(x)
            if k == "$float":
                return _decode_float_payload(x)
            if k == "$bytes":
                return _b64decode(x, "$bytes")
        if levels <= 0:
            raise _TooDeep()
        res: dict[str, Value] = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            if k[:1] == "$":
                raise _dollar_key_problem(k)
            try:
                res[k] = _decode_encoded(x, levels - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
        return res
    raise _type_problem(v)


def from_encoded_json(obj: Any) -> Value:
    """Decode ``convex_encoded_json`` / Convex internal JSON (parsed) per §2.4."""
    return _run(_decode_encoded, obj)


def _decode_encoded_in_place(v: Any, levels: int = MAX_NESTING) -> Value:
    """Like :func:`_decode_encoded`, but reuses the parsed containers (they are ours to change), which
    halves the allocations of a page of documents."""
    t = type(v)
    if t is list:
        if levels <= 0:
            raise _TooDeep()
        i = 0
        try:
            for i, x in enumerate(v):  # noqa: B007 - i is read in the except clause
                tx = type(x)
                if tx is str or tx is float or tx is bool or x is None:
                    continue
                v[i] = float(x) if tx is int else _decode_encoded_in_place(x, levels - 1)
        except _Problem as p:
            p.rev_path.append(i)
            raise
        except OverflowError:
            raise _Problem("Number is too large for a Float64", [i]) from None
        return v
    if t is dict:
        if len(v) == 1:
            ((k, x),) = v.items()
            if k == "$integer":
                return _decode_integer_payload(x)
            if k == "$float":
                return _decode_float_payload(x)
            if k == "$bytes":
                return _b64decode(x, "$bytes")
        if levels <= 0:
            raise _TooDeep()
        for k, x in v.items():
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            if k[:1] == "$":
                raise _dollar_key_problem(k)
            tx = type(x)
            if tx is str or tx is float or tx is bool or x is None:
                continue
            try:
                v[k] = _decode_encoded_in_place(x, levels - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
        return v
    return _decode_encoded(v, levels)


def decode_encoded_value(v: Any) -> Value:
    """Decode one parsed ``convex_encoded_json`` value, reusing its containers (raises
    InvalidValueError with the path)."""
    try:
        return _decode_encoded_in_place(v)
    except _TooDeep as p:
        raise p.measured(v).to_error() from None
    except _Problem as p:
        raise p.to_error() from None


def decode_encoded_object_in_place(obj: dict[str, Any]) -> dict[str, Value]:
    """Decode a parsed ``convex_encoded_json`` object, reusing ``obj`` (which must be ours to change):
    scalars stay where they are and only numbers, specials and containers are replaced. This is the
    client's per-document hot path, several times faster than :func:`from_encoded_json`."""
    try:
        for k, v in obj.items():
            t = type(v)
            if t is str or t is float or t is bool or v is None:
                continue
            if type(k) is str and k[:1] == "$":
                raise _dollar_key_problem(k)
            try:
                obj[k] = _decode_encoded(v, MAX_NESTING - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
    except _TooDeep as p:
        raise p.measured(obj).to_error() from None
    except _Problem as p:
        raise p.to_error() from None
    return obj


def _decode_export(v: Any, levels: int = MAX_NESTING) -> Value:
    t = type(v)
    if t is str or t is bool or v is None or t is float:
        return v
    if t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        return v
    if t is list:
        if levels <= 0:
            raise _TooDeep()
        out: list[Value] = []
        i = 0
        try:
            for i, x in enumerate(v):  # noqa: B007 - i is read in the except clause
                out.append(_decode_export(x, levels - 1))
        except _Problem as p:
            p.rev_path.append(i)
            raise
        return out
    if t is dict:
        if len(v) == 1:
            ((k, x),) = v.items()
            if k == "$float":
                return _decode_float_payload(x)
            if k == "$bytes":
                return _b64decode(x, "$bytes")
            if k == "$integer":  # not produced by export encoders; unambiguous, so accept it
                return _decode_integer_payload(x)
        if levels <= 0:
            raise _TooDeep()
        res: dict[str, Value] = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            if k[:1] == "$":
                raise _dollar_key_problem(k)
            try:
                res[k] = _decode_export(x, levels - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
        return res
    raise _type_problem(v)


def from_export_json(obj: Any) -> Value:
    """Decode ``export_json`` parsed by orjson (int token -> Int64, float token -> Float64)."""
    return _run(_decode_export, obj)


# --- Storage encoding --------------------------------------------------------------------------------


class EncodedDocument(NamedTuple):
    body: bytes  # export_json, sorted keys
    flags: int  # FLAG_* bits
    size: int  # len(body); the size counted against MAX_DOCUMENT_SIZE


# Field names already known to be legal at every depth (so not `_`-prefixed, except the two system
# fields): a set lookup replaces the per-key checks. Bounded, so arbitrary user keys cannot grow it forever.
_GOOD_KEYS: set[str] = set(SYSTEM_FIELDS)
_GOOD_KEYS_MAX = 100_000


def _remember_key(k: str) -> None:
    if k[0] != "_":
        if len(_GOOD_KEYS) >= _GOOD_KEYS_MAX:
            _GOOD_KEYS.clear()
            _GOOD_KEYS.update(SYSTEM_FIELDS)
        _GOOD_KEYS.add(k)


_NEGZERO_B64: Final = _b64(_PACK_F64(-0.0))


def _walk_object(d: dict[Any, Any], depth: int, strict_top: bool) -> tuple[int, dict[str, Any] | None]:
    """Validate ``d``; return (flags, storage replacement or None when ``d`` can be dumped as is)."""
    if depth > MAX_NESTING:
        raise _TooDeep()
    if len(d) > MAX_OBJECT_FIELDS:
        raise _Problem(f"Object has {len(d)} fields; the limit is {MAX_OBJECT_FIELDS}")
    flags = 0
    out: dict[str, Any] | None = None
    for k, v in d.items():
        if k not in _GOOD_KEYS:
            problem = _key_problem(k, strict_top)
            if problem is not None:
                raise problem
            _remember_key(k)
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is float:
            if v - v != 0.0:  # NaN or ±inf: orjson would write null
                flags |= FLAG_NONFINITE
                if out is None:
                    out = dict(d)
                out[k] = {"$float": _b64(_PACK_F64(v))}
            elif v == 0.0 and _copysign(1.0, v) < 0.0:
                flags |= FLAG_NEGZERO
                if out is None:
                    out = dict(d)
                out[k] = {"$float": _NEGZERO_B64}
        elif t is int:
            flags |= FLAG_INT
            if not INT64_MIN <= v <= INT64_MAX:
                raise _Problem(_int_range_problem().message, [k])
            if out is None:
                out = dict(d)
            out[k] = {"$integer": _b64(_PACK_I64(v))}
        elif t is dict:
            try:
                f, r = _walk_object(v, depth + 1, False)
            except _Problem as p:
                p.rev_path.append(k)
                raise
            flags |= f
            if r is not None:
                if out is None:
                    out = dict(d)
                out[k] = r
        elif t is list:
            try:
                f, r2 = _walk_list(v, depth + 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
            flags |= f
            if r2 is not None:
                if out is None:
                    out = dict(d)
                out[k] = r2
        elif t is bytes:
            flags |= FLAG_BYTES
            if out is None:
                out = dict(d)
            out[k] = {"$bytes": _b64(v)}
        else:
            bad = _type_problem(v)
            bad.rev_path.append(k)
            raise bad
    return flags, out


def _walk_list(a: list[Any], depth: int) -> tuple[int, list[Any] | None]:
    if depth > MAX_NESTING:
        raise _TooDeep()
    if len(a) > MAX_ARRAY_LEN:
        raise _Problem(f"Array has {len(a)} elements; the limit is {MAX_ARRAY_LEN}")
    flags = 0
    out: list[Any] | None = None
    for i, v in enumerate(a):
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is float:
            if v - v != 0.0:
                flags |= FLAG_NONFINITE
                if out is None:
                    out = list(a)
                out[i] = {"$float": _b64(_PACK_F64(v))}
            elif v == 0.0 and _copysign(1.0, v) < 0.0:
                flags |= FLAG_NEGZERO
                if out is None:
                    out = list(a)
                out[i] = {"$float": _NEGZERO_B64}
        elif t is int:
            flags |= FLAG_INT
            if not INT64_MIN <= v <= INT64_MAX:
                raise _Problem(_int_range_problem().message, [i])
            if out is None:
                out = list(a)
            out[i] = {"$integer": _b64(_PACK_I64(v))}
        elif t is dict:
            try:
                f, r = _walk_object(v, depth + 1, False)
            except _Problem as p:
                p.rev_path.append(i)
                raise
            flags |= f
            if r is not None:
                if out is None:
                    out = list(a)
                out[i] = r
        elif t is list:
            try:
                f, r2 = _walk_list(v, depth + 1)
            except _Problem as p:
                p.rev_path.append(i)
                raise
            flags |= f
            if r2 is not None:
                if out is None:
                    out = list(a)
                out[i] = r2
        elif t is bytes:
            flags |= FLAG_BYTES
            if out is None:
                out = list(a)
            out[i] = {"$bytes": _b64(v)}
        else:
            bad = _type_problem(v)
            bad.rev_path.append(i)
            raise bad
    return flags, out


def _find_bad_string(v: Any, rev_path: list[str | int]) -> bool:
    """Locate a string that is not encodable as UTF-8 (lone surrogate); fills ``rev_path``."""
    t = type(v)
    if t is str:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if t is dict:
        for k, x in v.items():
            if _find_bad_string(x, rev_path):
                rev_path.append(k)
                return True
    elif t is list:
        for i, x in enumerate(v):
            if _find_bad_string(x, rev_path):
                rev_path.append(i)
                return True
    return False


def encode_document(doc: dict[str, Value], *, allow_system_fields: bool = False) -> EncodedDocument:
    """Validate a document (limits and rules of §6.3/§7.1) and build its storage encoding in one walk.

    ``allow_system_fields`` lifts the top-level ``_``-name restriction (system tables' own documents)."""
    if type(doc) is not dict:
        raise InvalidValueError(f"A document must be an object (dict), not {type(doc).__name__}")
    try:
        flags, replacement = _walk_object(doc, 1, not allow_system_fields)
    except _TooDeep as p:
        raise p.measured(doc).to_error() from None
    except _Problem as p:
        raise p.to_error() from None
    try:
        body = _dumps(doc if replacement is None else replacement, option=_OPT_SORT)
    except orjson.JSONEncodeError:
        rev: list[str | int] = []
        if _find_bad_string(doc, rev):
            raise _Problem(
                "String is not valid UTF-8 (it contains a lone surrogate)", rev
            ).to_error() from None
        raise InvalidValueError("Document cannot be serialized") from None
    size = len(body)
    if size > MAX_DOCUMENT_SIZE:
        raise InvalidValueError(
            f"Document is too large ({size} bytes); the limit is {MAX_DOCUMENT_SIZE} bytes (1 MiB)"
        )
    return EncodedDocument(body, flags, size)


def _restore_object(d: dict[str, Any]) -> None:
    """In place: turn storage ``{"$integer"}``/``{"$float"}``/``{"$bytes"}`` objects back into values."""
    for k, v in d.items():
        t = type(v)
        if t is dict:
            if len(v) == 1:
                if "$integer" in v:
                    d[k] = _UNPACK_I64(binascii.a2b_base64(v["$integer"]))[0]
                    continue
                if "$float" in v:
                    d[k] = _UNPACK_F64(binascii.a2b_base64(v["$float"]))[0]
                    continue
                if "$bytes" in v:
                    d[k] = binascii.a2b_base64(v["$bytes"])
                    continue
            _restore_object(v)
        elif t is list:
            _restore_list(v)


def _restore_list(a: list[Any]) -> None:
    for i, v in enumerate(a):
        t = type(v)
        if t is dict:
            if len(v) == 1:
                if "$integer" in v:
                    a[i] = _UNPACK_I64(binascii.a2b_base64(v["$integer"]))[0]
                    continue
                if "$float" in v:
                    a[i] = _UNPACK_F64(binascii.a2b_base64(v["$float"]))[0]
                    continue
                if "$bytes" in v:
                    a[i] = binascii.a2b_base64(v["$bytes"])
                    continue
            _restore_object(v)
        elif t is list:
            _restore_list(v)


def decode_document(body: bytes, flags: int) -> dict[str, Value]:
    """Inverse of :func:`encode_document`."""
    doc: dict[str, Any] = _loads(body)
    if flags:
        _restore_object(doc)
    return doc


def _encoded_to_export_value(v: Any) -> Any:
    """The export-json form of a storage (encoded) sub-value; containers are updated in place."""
    t = type(v)
    if t is dict:
        if len(v) == 1:
            if "$integer" in v:
                return _UNPACK_I64(binascii.a2b_base64(v["$integer"]))[0]
            if "$float" in v:
                f = _UNPACK_F64(binascii.a2b_base64(v["$float"]))[0]
                return f if f == 0.0 else v  # -0.0 is a plain number in export; NaN/±inf stay $float
            if "$bytes" in v:
                return v
        for k, x in v.items():
            tx = type(x)
            if tx is dict or tx is list:
                v[k] = _encoded_to_export_value(x)
        return v
    if t is list:
        for i, x in enumerate(v):
            tx = type(x)
            if tx is dict or tx is list:
                v[i] = _encoded_to_export_value(x)
        return v
    return v


_INF: Final = float("inf")


def _float_name(f: float) -> Any:
    if f != f:
        return "NaN"
    if f in (_INF, -_INF):
        return "Infinity" if f > 0 else "-Infinity"
    return f  # -0.0 is the number -0.0 in clean json


def _encoded_to_clean_value(v: Any) -> Any:
    """The clean-json form of a storage (encoded) sub-value; containers are updated in place."""
    t = type(v)
    if t is dict:
        if len(v) == 1:
            if "$integer" in v:
                return str(_UNPACK_I64(binascii.a2b_base64(v["$integer"]))[0])
            if "$float" in v:
                return _float_name(_UNPACK_F64(binascii.a2b_base64(v["$float"]))[0])
            if "$bytes" in v:
                return v["$bytes"]  # same standard padded base64
        for k, x in v.items():
            tx = type(x)
            if tx is dict or tx is list:
                v[k] = _encoded_to_clean_value(x)
        return v
    if t is list:
        for i, x in enumerate(v):
            tx = type(x)
            if tx is dict or tx is list:
                v[i] = _encoded_to_clean_value(x)
        return v
    return v


def storage_to_wire(body: bytes, flags: int, fmt: ValueFormat) -> bytes:
    """The stored document's JSON bytes in wire format ``fmt``, re-serialized only when needed.

    Storage is ``convex_encoded_json`` with sorted keys, so the format real clients ask for most is the
    stored bytes themselves."""
    if fmt is ValueFormat.ENCODED or not flags:
        return body
    if fmt is ValueFormat.EXPORT:
        if not flags & (FLAG_INT | FLAG_NEGZERO):
            return body
        # In-place edits keep the parsed (already sorted) key order, so no re-sort is needed.
        return _dumps(_encoded_to_export_value(_loads(body)))
    return _dumps(_encoded_to_clean_value(_loads(body)))


# --- Field access ------------------------------------------------------------------------------------


class _Missing:
    """The absent value (JavaScript ``undefined``): distinct from Null."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def get_path(doc: Any, path: tuple[str, ...]) -> Value | _Missing:
    """Follow ``path`` through nested objects; :data:`MISSING` when any step is absent or not an object."""
    cur = doc
    for name in path:
        if type(cur) is not dict:
            return MISSING
        cur = cur.get(name, MISSING)
        if cur is MISSING:
            return MISSING
    return cur


# --- Order-preserving index keys ---------------------------------------------------------------------
#
# Each value is a type tag followed by a payload. Tags grow with Convex's type order, so bytes compare
# by type first. Fixed-width payloads (Int64, Float64) are big-endian and sign-adjusted. Variable-length
# ones (String, Bytes, object keys) escape 0x00 as 0x00 0xFF and end with 0x00 0x00, which sorts below
# any continuation; arrays and objects end with 0x00, below every element tag and the 0x01 key marker, so
# a prefix sorts first. All tags are in 0x10..0x91: never 0x00 and never 0xFF.

_T_MISSING: Final = b"\x10"
_T_NULL: Final = b"\x20"
_T_INT: Final = b"\x30"
_T_FLOAT: Final = b"\x40"
_T_FALSE: Final = b"\x50"
_T_TRUE: Final = b"\x51"
_T_STRING: Final = b"\x60"
_T_BYTES: Final = b"\x70"
_T_ARRAY: Final = b"\x80"
_T_OBJECT: Final = b"\x90"
_END: Final = b"\x00"
_KEY_MARK: Final = b"\x01"
_TERM: Final = b"\x00\x00"
_U64_MASK: Final = (1 << 64) - 1
_SIGN_BIT: Final = 1 << 63


def _float_order_bits(v: float) -> int:
    """IEEE-754 total order as an unsigned 64-bit integer (-NaN < -inf < … < -0.0 < 0.0 < … < NaN)."""
    u = int.from_bytes(_PACK_F64_BE(v), "big")
    return u ^ _U64_MASK if u & _SIGN_BIT else u ^ _SIGN_BIT


def _encode_key_value(v: Any, out: bytearray) -> None:
    t = type(v)
    if t is str:
        out += _T_STRING
        try:
            out += v.encode("utf-8").replace(b"\x00", b"\x00\xff")
        except UnicodeEncodeError:
            raise _Problem("String is not valid UTF-8 (it contains a lone surrogate)") from None
        out += _TERM
    elif t is float:
        out += _T_FLOAT
        out += _float_order_bits(v).to_bytes(8, "big")
    elif t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        out += _T_INT
        out += (v - INT64_MIN).to_bytes(8, "big")
    elif v is None:
        out += _T_NULL
    elif t is bool:
        out += _T_TRUE if v else _T_FALSE
    elif v is MISSING:
        out += _T_MISSING
    elif t is bytes:
        out += _T_BYTES
        out += v.replace(b"\x00", b"\x00\xff")
        out += _TERM
    elif t is list:
        out += _T_ARRAY
        for i, x in enumerate(v):
            try:
                _encode_key_value(x, out)
            except _Problem as p:
                p.rev_path.append(i)
                raise
        out += _END
    elif t is dict:
        out += _T_OBJECT
        for k in sorted(v):  # code-point order == UTF-8 byte order
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            out += _KEY_MARK
            try:
                out += k.encode("utf-8").replace(b"\x00", b"\x00\xff")
                out += _TERM
                _encode_key_value(v[k], out)
            except UnicodeEncodeError:
                raise _Problem("Field name is not valid UTF-8") from None
            except _Problem as p:
                p.rev_path.append(k)
                raise
        out += _END
    else:
        raise _type_problem(v)


def encode_index_key(values: Sequence[Value | _Missing]) -> bytes:
    """Order-preserving bytes for a tuple of values: ``a < b`` (Convex order) iff ``key(a) < key(b)``."""
    out = bytearray()
    try:
        for i, v in enumerate(values):
            try:
                _encode_key_value(v, out)
            except _Problem as p:
                p.rev_path.append(i)
                raise
    except _Problem as p:
        raise p.to_error() from None
    return bytes(out)


def index_key_prefix_successor(prefix: bytes) -> bytes | None:
    """Smallest bytes greater than every key that starts with ``prefix``; ``None`` if there is none."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


def _rank(v: Any) -> int:
    if v is MISSING:
        return 0
    try:
        return _TYPE_RANK[type(v)]
    except KeyError:
        raise InvalidValueError(_type_problem(v).message) from None


def compare_values(a: Value | _Missing, b: Value | _Missing) -> int:
    """Convex total order of two values: negative, zero or positive (like C ``memcmp``)."""
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    # Equal ranks mean equal exact types; the isinstance checks only tell the type checker so.
    if isinstance(a, float) and isinstance(b, float):
        x, y = _float_order_bits(a), _float_order_bits(b)
        return (x > y) - (x < y)
    if isinstance(a, str) and isinstance(b, str):
        ea, eb = a.encode("utf-8"), b.encode("utf-8")
        return (ea > eb) - (ea < eb)
    if isinstance(a, int) and isinstance(b, int):  # Int64, or Boolean (bool is an int)
        return (a > b) - (a < b)
    if isinstance(a, bytes) and isinstance(b, bytes):
        return (a > b) - (a < b)
    if isinstance(a, list) and isinstance(b, list):
        for item_a, item_b in zip(a, b, strict=False):
            c = compare_values(item_a, item_b)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if isinstance(a, dict) and isinstance(b, dict):
        ka, kb = sorted(a), sorted(b)
        for key_a, key_b in zip(ka, kb, strict=False):
            c = compare_values(key_a, key_b) or compare_values(a[key_a], b[key_b])
            if c:
                return c
        return (len(ka) > len(kb)) - (len(ka) < len(kb))
    return 0
