"""Convex <-> Fivetran: column types, ``ValueType`` members, batch-file cells and validators.

Source side (fivetran-source.md §5, §6.5): :func:`fivetran_columns` types a table's columns, ``_id`` STRING
primary key, ``_creationTime`` UTC_DATETIME, every other column from its shape when the shape is exact (one
non-null type, optionally nullable) else UNSPECIFIED; :func:`to_fivetran_value` and :func:`fivetran_row`
convert values into :class:`FivetranValue` records (the ``ValueType`` oneof member and the Python value the
gRPC adapter copies into the message). Nested values are the clean JSON text of :mod:`.jsontext`.

Destination side (fivetran-destination.md §6): :func:`parse_fivetran_cell` turns a CSV cell of a column's
``DataType`` into a Convex value; :func:`validator_for_fivetran_type` / :func:`schema_ts_for_fivetran_type`
give the suggested validator (§6.3); :func:`fivetran_type_from_validator` reads a deployed validator back
(§6.4). A table the destination created is described exactly from the ``DataType`` names it stored
(``FivetranDataType[name]``).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import functools
import json
import math
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from types import MappingProxyType
from typing import Any, Final, Literal, NoReturn

import orjson

from connectors import values
from connectors.constants import CREATION_TIME_FIELD, ID_FIELD
from connectors.identifiers import field_name_problem
from connectors.typemap import tags as _tags
from connectors.typemap.jsontext import json_text
from connectors.typemap.tree import (
    ArrayType,
    ConvexType,
    CreationTimeType,
    Float64Type,
    IdType,
    ObjectType,
    ScalarType,
    TypeMapError,
    UnionType,
    split_nullable,
)

__all__ = [
    "FIVETRAN_NULL",
    "SCALAR_MEMBERS",
    "FivetranCellError",
    "FivetranColumn",
    "FivetranDataType",
    "FivetranTimestamp",
    "FivetranValue",
    "FivetranValueError",
    "ValueMember",
    "creation_time_parts",
    "creation_time_to_fivetran",
    "fivetran_cell_parser",
    "fivetran_column_type",
    "fivetran_columns",
    "fivetran_row",
    "fivetran_type_from_validator",
    "fivetran_value_to_convex",
    "parse_fivetran_cell",
    "schema_ts_for_fivetran_type",
    "to_fivetran_value",
    "utc_datetime_to_ms",
    "validator_for_fivetran_type",
]


class FivetranDataType(IntEnum):
    """``common.proto`` ``DataType`` (fivetran-sdk.md §2.1): names and numbers exactly as the proto has them."""

    UNSPECIFIED = 0
    BOOLEAN = 1
    SHORT = 2
    INT = 3
    LONG = 4
    DECIMAL = 5
    FLOAT = 6
    DOUBLE = 7
    NAIVE_DATE = 8
    NAIVE_DATETIME = 9
    UTC_DATETIME = 10
    BINARY = 11
    XML = 12
    STRING = 13
    JSON = 14
    NAIVE_TIME = 15


#: The ``ValueType`` oneof members the source emits.
ValueMember = Literal["null", "bool", "long", "double", "string", "binary", "json", "utc_datetime"]


@dataclass(frozen=True, slots=True)
class FivetranTimestamp:
    """``google.protobuf.Timestamp``: ``seconds`` since the epoch, ``nanos`` in [0, 999 999 999]."""

    seconds: int
    nanos: int


@dataclass(frozen=True, slots=True)
class FivetranValue:
    """One ``ValueType``: set ``member`` to ``value`` (``null`` is ``True``, as the proto wants)."""

    member: ValueMember
    value: bool | int | float | str | bytes | FivetranTimestamp


@dataclass(frozen=True, slots=True)
class FivetranColumn:
    name: str
    type: FivetranDataType
    primary_key: bool = False


FIVETRAN_NULL: Final = FivetranValue("null", True)

#: The ``ValueType`` member of each exact Python type a decoded Convex scalar has (``to_fivetran_value``
#: agrees; arrays and objects are ``json`` text, None is ``null``). For encoders that set protobuf members
#: directly instead of building a ``FivetranValue`` per value.
SCALAR_MEMBERS: Final[Mapping[type, ValueMember]] = MappingProxyType(
    {bool: "bool", int: "long", float: "double", str: "string", bytes: "binary"}
)


class FivetranValueError(TypeMapError):
    """A Convex value the source cannot send (e.g. a non-numeric ``_creationTime``)."""


class FivetranCellError(TypeMapError):
    """A batch-file cell that does not parse as its column's type. Names the column and type, not the value."""

    def __init__(self, column: str, data_type: FivetranDataType | str, reason: str) -> None:
        name = data_type.name if isinstance(data_type, FivetranDataType) else data_type
        super().__init__(f"Couldn't parse field {column} as {name} from file: {reason}")
        self.column = column
        self.data_type = data_type
        self.reason = reason


# --- source: types --------------------------------------------------------------------------------------

_SCALAR_TYPES: Final = {
    _tags.INT64: FivetranDataType.LONG,
    _tags.BOOLEAN: FivetranDataType.BOOLEAN,
    _tags.STRING: FivetranDataType.STRING,
    _tags.BYTES: FivetranDataType.BINARY,
}


def fivetran_column_type(t: ConvexType) -> FivetranDataType:
    """The ``DataType`` of a column of type ``t``: exact when every non-null value converts to the same
    ``ValueType`` member (arrays and objects are all ``json``), else UNSPECIFIED (Fivetran infers it)."""
    inner, _nullable = split_nullable(t)
    if isinstance(inner, ScalarType):
        return _SCALAR_TYPES.get(inner.tag, FivetranDataType.UNSPECIFIED)
    if isinstance(inner, Float64Type):
        return FivetranDataType.DOUBLE
    if isinstance(inner, CreationTimeType):
        return FivetranDataType.UTC_DATETIME
    if isinstance(inner, IdType):
        return FivetranDataType.STRING
    if isinstance(inner, ArrayType | ObjectType):
        return FivetranDataType.JSON
    if isinstance(inner, UnionType) and all(isinstance(m, ArrayType | ObjectType) for m in inner.members):
        return FivetranDataType.JSON  # arrays and objects alike are json text
    return FivetranDataType.UNSPECIFIED  # null only, a mixed union, "any" or "never"


def fivetran_columns(table: ObjectType) -> list[FivetranColumn]:
    """The columns of a table for ``Schema`` (``_id`` first as the primary key, then ``_creationTime``,
    then the user fields sorted). Other ``_`` fields are dropped, as the rows drop them."""
    cols = [
        FivetranColumn(ID_FIELD, FivetranDataType.STRING, True),
        FivetranColumn(CREATION_TIME_FIELD, FivetranDataType.UTC_DATETIME),
    ]
    cols += [
        FivetranColumn(f.name, fivetran_column_type(f.type))
        for f in table.fields
        if not f.name.startswith("_")
    ]
    return cols


# --- source: values -------------------------------------------------------------------------------------


def creation_time_to_fivetran(ms: Any) -> FivetranValue:
    """``_creationTime`` (Float64 ms) -> ``utc_datetime``: seconds = floor(ms / 1000), nanos = the rest in ns
    truncated (fivetran-source.md §6.5: ``1686799242010.5`` -> 1686799242 s, 10 500 000 ns)."""
    if type(ms) is not float and type(ms) is not int or isinstance(ms, bool):
        raise FivetranValueError(
            f"Unexpected _creationTime value: a {_tags.value_type_name(ms)}, not a number"
        )
    return FivetranValue("utc_datetime", FivetranTimestamp(*creation_time_parts(ms)))


def creation_time_parts(ms: Any) -> tuple[int, int]:
    """``_creationTime`` ms -> ``(seconds, nanos)`` of its ``utc_datetime`` (the rule of
    :func:`creation_time_to_fivetran`, without building a record per value)."""
    if type(ms) is not float:
        if type(ms) is not int:
            raise FivetranValueError(
                f"Unexpected _creationTime value: a {_tags.value_type_name(ms)}, not a number"
            )
        ms = float(ms)
    if ms - ms != 0.0:
        raise FivetranValueError("Unexpected _creationTime value: not a finite number")
    seconds, rest = divmod(ms, 1000.0)  # rest is exact (fmod) and in [0, 1000)
    nanos = int(rest * 1e6)
    return int(seconds), nanos if nanos < 999_999_999 else 999_999_999


def _to_value(v: values.Value) -> FivetranValue:
    t = type(v)
    if v is None:
        return FIVETRAN_NULL
    if t is bool:
        return FivetranValue("bool", v)  # type: ignore[arg-type]
    if t is int:
        if not values.INT64_MIN <= v <= values.INT64_MAX:  # type: ignore[operator]
            raise FivetranValueError("an Int64 value is out of range")
        return FivetranValue("long", v)  # type: ignore[arg-type]
    if t is float:
        return FivetranValue("double", v)  # type: ignore[arg-type]
    if t is str:
        return FivetranValue("string", v)  # type: ignore[arg-type]
    if t is bytes:
        return FivetranValue("binary", v)  # type: ignore[arg-type]
    if t is list or t is dict:
        return FivetranValue("json", json_text(v))
    raise FivetranValueError(f"unsupported value type {t.__name__}")


def to_fivetran_value(v: values.Value) -> FivetranValue:
    """A Convex value (not ``_creationTime``) -> its ``ValueType`` member (fivetran-source.md §6.5)."""
    return _to_value(v)


def fivetran_row(doc: Mapping[str, values.Value]) -> dict[str, FivetranValue]:
    """A document -> ``Record.data``: ``_`` fields dropped except ``_id`` and ``_creationTime``."""
    out: dict[str, FivetranValue] = {}
    for name, v in doc.items():
        if name[:1] == "_":
            if name == CREATION_TIME_FIELD:
                out[name] = creation_time_to_fivetran(v)
            elif name == ID_FIELD:
                out[name] = _to_value(v)
            continue
        out[name] = _to_value(v)
    return out


def fivetran_value_to_convex(fv: FivetranValue) -> values.Value:
    """The inverse of :func:`to_fivetran_value` for the exact members (``json`` is clean JSON, so lossy:
    it is not inverted) and ``utc_datetime`` (to Float64 ms as the destination computes it)."""
    member, v = fv.member, fv.value
    if member == "null":
        return None
    if member == "utc_datetime":
        assert isinstance(v, FivetranTimestamp)
        return v.seconds * 1000.0 + v.nanos / 1e6
    if member == "json":
        raise FivetranValueError("json values are clean JSON text and cannot be converted back exactly")
    return v  # type: ignore[return-value]


# --- destination: CSV cells -> Convex (fivetran-destination.md §6.1) ----------------------------------------

_INT_RE: Final = re.compile(r"[+-]?[0-9]+", re.ASCII)
# Rust's f64/f32 FromStr: decimal with optional exponent, or inf/infinity/nan in any case, optional sign.
_FLOAT_RE: Final = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.ASCII | re.IGNORECASE
)
_DATE_RE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)
_TIME_RE: Final = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?", re.ASCII)
_RFC3339_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)
_I32: Final = (-(1 << 31), (1 << 31) - 1)
_F32: Final = struct.Struct("<f")

_JSON_TOP_LEVEL_ERRORS: Final = {
    bool: "Booleans aren\u2019t supported as top-level JSON values",
    int: "Numbers aren\u2019t supported as top-level JSON values",
    float: "Numbers aren\u2019t supported as top-level JSON values",
    str: "Strings aren\u2019t supported as top-level JSON values",
}
_INVALID_JSON: Final = "Your data source contains a JSON value which isn\u2019t valid."
_UNSUPPORTED_JSON: Final = (
    "Your data source contains JSON data that isn\u2019t supported by Convex. You can learn more about the "
    "values supported by Convex on https://docs.convex.dev/database/types"
)
_UNSPECIFIED: Final = "Can\u2019t parse a value to an unspecified type"


def _f32(x: float) -> float:
    """``x`` rounded to f32 and widened back (1.23 -> 1.2300000190734863); beyond f32's range -> ±inf, as
    Rust's ``f32`` parser gives. (The text is rounded to f64 first: a double rounding that can differ from
    a direct decimal -> f32 rounding in the last bit for rare inputs.)"""
    try:
        return float(_F32.unpack(_F32.pack(x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def _fraction_text(nanos: int) -> str:
    """chrono's ``%.f``: nothing when zero, else 3, 6 or 9 digits."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"


def _nanos(fraction: str | None) -> int:
    return int((fraction or "").ljust(9, "0")[:9] or "0")


def _check_date(y: str, m: str, d: str) -> None:
    date(int(y), int(m), int(d))  # ValueError when the day does not exist


def _check_time(h: str, mi: str, s: str) -> None:
    if int(h) > 23 or int(mi) > 59 or int(s) > 59:
        raise ValueError("time of day out of range")


def utc_datetime_to_ms(text: str) -> float:
    """An RFC 3339 instant -> Float64 ms = ``seconds * 1000.0 + nanos / 1e6`` (f64, not rounded)."""
    m = _RFC3339_RE.fullmatch(text)
    if m is None:
        raise ValueError("expected an RFC 3339 date-time with an offset or Z")
    y, mo, d, h, mi, s, frac, _z, sign, oh, om = m.groups()
    _check_date(y, mo, d)
    _check_time(h, mi, s)
    seconds = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if sign is not None:
        offset = int(oh) * 3600 + int(om) * 60
        seconds -= offset if sign == "+" else -offset
    return seconds * 1000.0 + _nanos(frac) / 1e6


def _json_value(v: Any) -> values.Value:
    t = type(v)
    if t is int:
        try:
            return float(v)
        except OverflowError:
            raise ValueError("Arbitrary precision JSON integers unsupported") from None
    if t is float and v - v != 0.0:
        raise ValueError(_INVALID_JSON)  # a number beyond f64's range: serde_json rejects it too
    if t is list:
        return [_json_value(x) for x in v]
    if t is dict:
        out: dict[str, values.Value] = {}
        for k, x in v.items():
            problem = field_name_problem(k)
            if problem is not None:
                raise ValueError(f"{_UNSUPPORTED_JSON}: {problem}")
            out[k] = _json_value(x)
        return out
    return v  # null, bool, float, str


def _reject_constant(_name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _parse_json_cell(text: str) -> values.Value:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson rejects integers beyond 64 bits; the standard parser reads them, so the error can say why.
        try:
            parsed = json.loads(text, parse_constant=_reject_constant)
        except ValueError:
            raise ValueError(_INVALID_JSON) from None
    top = _JSON_TOP_LEVEL_ERRORS.get(type(parsed))
    if top is not None:
        raise ValueError(top)
    return _json_value(parsed)


def _parse(text: str, dt: FivetranDataType) -> values.Value:
    if dt is FivetranDataType.BOOLEAN:
        if text == "true":
            return True
        if text == "false":
            return False
        raise ValueError("expected true or false")
    if dt is FivetranDataType.SHORT or dt is FivetranDataType.INT:
        if _INT_RE.fullmatch(text) is None or not _I32[0] <= (n := int(text)) <= _I32[1]:
            raise ValueError("expected a 32-bit integer")
        return float(n)
    if dt is FivetranDataType.LONG:
        if _INT_RE.fullmatch(text) is None or not values.INT64_MIN <= (n := int(text)) <= values.INT64_MAX:
            raise ValueError("expected a 64-bit integer")
        return n
    if dt is FivetranDataType.FLOAT or dt is FivetranDataType.DOUBLE:
        if _FLOAT_RE.fullmatch(text) is None:
            raise ValueError("expected a floating-point number")
        x = float(text)
        return _f32(x) if dt is FivetranDataType.FLOAT else x
    if dt is FivetranDataType.NAIVE_DATE:
        if (m := _DATE_RE.fullmatch(text)) is None:
            raise ValueError("expected YYYY-MM-DD")
        _check_date(*m.groups())
        return text
    if dt is FivetranDataType.NAIVE_TIME:
        if (m := _TIME_RE.fullmatch(text)) is None:
            raise ValueError("expected HH:MM:SS[.fraction]")
        h, mi, s, frac = m.groups()
        _check_time(h, mi, s)
        return f"{h}:{mi}:{s}{_fraction_text(_nanos(frac))}"
    if dt is FivetranDataType.NAIVE_DATETIME:
        date_part, sep, time_part = text.partition("T")
        if (
            not sep
            or (dm := _DATE_RE.fullmatch(date_part)) is None
            or (tm := _TIME_RE.fullmatch(time_part)) is None
        ):
            raise ValueError("expected YYYY-MM-DDTHH:MM:SS[.fraction] without a zone")
        _check_date(*dm.groups())
        h, mi, s, frac = tm.groups()
        _check_time(h, mi, s)
        return f"{date_part} {h}:{mi}:{s}{_fraction_text(_nanos(frac))}"
    if dt is FivetranDataType.UTC_DATETIME:
        return utc_datetime_to_ms(text)
    if dt is FivetranDataType.BINARY:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("expected standard base64") from None
    if dt in (FivetranDataType.DECIMAL, FivetranDataType.XML, FivetranDataType.STRING):
        return text
    if dt is FivetranDataType.JSON:
        return _parse_json_cell(text)
    raise ValueError(_UNSPECIFIED)


def parse_fivetran_cell(text: str, data_type: FivetranDataType, column: str) -> values.Value:
    """A batch-file cell (already known not to be the null or unmodified string) -> its Convex value per
    fivetran-destination.md §6.1; :class:`FivetranCellError` names the column and the type."""
    try:
        return _parse(text, FivetranDataType(data_type))
    except ValueError as e:
        raise FivetranCellError(column, data_type, str(e)) from None


def fivetran_cell_parser(data_type: FivetranDataType, column: str) -> Callable[[str], values.Value]:
    """:func:`parse_fivetran_cell` for one column, with the type resolved once instead of per cell (a batch
    file has millions of cells): the same values and the same errors."""
    dt = FivetranDataType(data_type)

    def fail(reason: str) -> NoReturn:
        raise FivetranCellError(column, data_type, reason)

    if dt is FivetranDataType.BOOLEAN:

        def parse_bool(text: str) -> values.Value:
            if text == "true":
                return True
            if text == "false":
                return False
            fail("expected true or false")

        return parse_bool
    if dt is FivetranDataType.LONG or dt is FivetranDataType.SHORT or dt is FivetranDataType.INT:
        is_int = _INT_RE.fullmatch
        low, high = (values.INT64_MIN, values.INT64_MAX) if dt is FivetranDataType.LONG else _I32
        reason = "expected a 64-bit integer" if dt is FivetranDataType.LONG else "expected a 32-bit integer"
        as_float = dt is not FivetranDataType.LONG  # SHORT and INT are Float64 (§6.1)

        def parse_int(text: str) -> values.Value:
            if is_int(text) is None:
                fail(reason)
            try:
                n = int(text)
            except ValueError as e:  # more digits than int() converts
                fail(str(e))
            if not low <= n <= high:
                fail(reason)
            return float(n) if as_float else n

        return parse_int
    if dt is FivetranDataType.DOUBLE:
        is_float = _FLOAT_RE.fullmatch

        def parse_double(text: str) -> values.Value:
            if is_float(text) is None:
                fail("expected a floating-point number")
            return float(text)

        return parse_double
    if dt is FivetranDataType.UTC_DATETIME:

        def parse_instant(text: str) -> values.Value:
            try:
                return utc_datetime_to_ms(text)
            except ValueError as e:
                fail(str(e))

        return parse_instant
    return functools.partial(_parse_cell_of, dt=dt, data_type=data_type, column=column)


def _parse_cell_of(text: str, *, dt: FivetranDataType, data_type: FivetranDataType, column: str) -> values.Value:
    try:
        return _parse(text, dt)
    except ValueError as e:
        raise FivetranCellError(column, data_type, str(e)) from None


# --- validators (fivetran-destination.md §6.3, §6.4) --------------------------------------------------------

_SUGGESTED: Final[dict[FivetranDataType, tuple[dict[str, Any], str]]] = {
    FivetranDataType.UNSPECIFIED: ({"type": "any"}, "v.any()"),
    FivetranDataType.BOOLEAN: ({"type": "boolean"}, "v.boolean()"),
    FivetranDataType.SHORT: ({"type": "number"}, "v.float64()"),
    FivetranDataType.INT: ({"type": "number"}, "v.float64()"),
    FivetranDataType.LONG: ({"type": "bigint"}, "v.int64()"),
    FivetranDataType.DECIMAL: ({"type": "string"}, "v.string()"),
    FivetranDataType.FLOAT: ({"type": "number"}, "v.float64()"),
    FivetranDataType.DOUBLE: ({"type": "number"}, "v.float64()"),
    FivetranDataType.NAIVE_DATE: ({"type": "string"}, "v.string()"),
    FivetranDataType.NAIVE_TIME: ({"type": "string"}, "v.string()"),
    FivetranDataType.NAIVE_DATETIME: ({"type": "string"}, "v.string()"),
    FivetranDataType.UTC_DATETIME: ({"type": "number"}, "v.float64()"),
    FivetranDataType.BINARY: ({"type": "bytes"}, "v.bytes()"),
    FivetranDataType.XML: ({"type": "string"}, "v.string()"),
    FivetranDataType.STRING: ({"type": "string"}, "v.string()"),
    FivetranDataType.JSON: ({"type": "object", "value": {}}, "v.object({})"),
}
# Not wrapped in a union with null even when nullable (§6.3).
_NEVER_WRAPPED: Final = frozenset({FivetranDataType.UNSPECIFIED, FivetranDataType.JSON})


def validator_for_fivetran_type(data_type: FivetranDataType, nullable: bool) -> dict[str, Any]:
    """The suggested ``ValidatorJson`` of a column (nullable: ``union(V, null)``, except UNSPECIFIED and JSON)."""
    v, _ = _SUGGESTED[FivetranDataType(data_type)]
    if nullable and data_type not in _NEVER_WRAPPED:
        return {"type": "union", "value": [dict(v), {"type": "null"}]}
    return dict(v)


def schema_ts_for_fivetran_type(data_type: FivetranDataType, nullable: bool) -> str:
    """The same as ``schema.ts`` text: ``v.union(v.string(), v.null())``, ``v.int64()``, ..."""
    _, text = _SUGGESTED[FivetranDataType(data_type)]
    if nullable and data_type not in _NEVER_WRAPPED:
        return f"v.union({text}, v.null())"
    return text


_FROM_VALIDATOR: Final = {
    "number": FivetranDataType.DOUBLE,
    "bigint": FivetranDataType.LONG,
    "boolean": FivetranDataType.BOOLEAN,
    "string": FivetranDataType.STRING,
    "bytes": FivetranDataType.BINARY,
    "object": FivetranDataType.JSON,
    "array": FivetranDataType.JSON,
}


def fivetran_type_from_validator(validator: Mapping[str, Any]) -> FivetranDataType:
    """DescribeTable on a deployed schema (§6.4): a ``ValidatorJson`` -> ``DataType``; ``union[v]`` and
    ``v`` with null take ``v``'s type; null, literal, id, record, any and other unions are UNSPECIFIED."""
    kind = validator.get("type")
    if kind == "union":
        members = [m for m in validator.get("value", []) if isinstance(m, Mapping)]
        rest = [m for m in members if m.get("type") != "null"]
        if len(rest) == 1 and len(members) - len(rest) <= 1:
            return fivetran_type_from_validator(rest[0])
        return FivetranDataType.UNSPECIFIED
    return (
        _FROM_VALIDATOR.get(kind, FivetranDataType.UNSPECIFIED)
        if isinstance(kind, str)
        else FivetranDataType.UNSPECIFIED
    )
