"""Convex -> Arrow (Parquet) for the snapshot export: schemas and per-column value converters.

Int64 -> int64, Float64 -> float64 (NaN payloads, ±inf and -0.0 kept bit for bit), Boolean -> bool,
String and Id -> string, Bytes -> binary, null only -> null, a union with null -> the nullable member type,
arrays -> list, objects -> struct. ``_creationTime`` -> ``timestamp(us, UTC)`` (floor of the microseconds)
plus the companion float64 column :data:`CREATION_TIME_EXACT_COLUMN` with the exact milliseconds, so nothing
is lost. What :func:`~connectors.typemap.jsontext.needs_json_text` says cannot be typed becomes a string
field with ``{"convex:encoding": "json"}`` metadata holding clean JSON text (lossy: Int64 and Bytes become
strings there). A field both optional and nullable reads back as null where it was missing.

The type comes from the table's whole shape, so a field whose type changes between pages still gets one
type, decided before the first row is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import pyarrow as pa

from connectors import values
from connectors.constants import CREATION_TIME_FIELD
from connectors.typemap import tags as _tags
from connectors.typemap.jsontext import ARROW_JSON_METADATA, json_text, needs_json_text
from connectors.typemap.tree import (
    NEVER,
    ArrayType,
    ConvexType,
    CreationTimeType,
    Float64Type,
    IdType,
    ObjectType,
    ScalarType,
    TypeMapError,
    split_nullable,
)

__all__ = [
    "CREATION_TIME_EXACT_COLUMN",
    "ArrowColumn",
    "arrow_columns",
    "arrow_converter",
    "arrow_field",
    "arrow_schema",
    "arrow_type",
    "arrow_value_to_convex",
    "arrow_row_to_document",
    "creation_time_micros",
]

#: Companion column with ``_creationTime``'s exact Float64 milliseconds (a system name: no user field has it).
CREATION_TIME_EXACT_COLUMN: Final = "_creationTime_ms"
_META_TYPE: Final = b"convex:type"
CREATION_TIME_METADATA: Final = {
    _META_TYPE: b"creationTime",
    b"convex:exact_column": CREATION_TIME_EXACT_COLUMN.encode(),
}
EXACT_CREATION_TIME_METADATA: Final = {_META_TYPE: b"creationTimeExact"}

_SCALARS: Final = {
    _tags.NULL: pa.null(),
    _tags.INT64: pa.int64(),
    _tags.BOOLEAN: pa.bool_(),
    _tags.STRING: pa.string(),
    _tags.BYTES: pa.binary(),
}
_TIMESTAMP: Final = pa.timestamp("us", tz="UTC")

Converter = Callable[[Any], Any]


def creation_time_micros(ms: float) -> int:
    """Float64 milliseconds -> whole microseconds for ``timestamp(us)`` (floor; the exact value is kept in
    the companion column)."""
    if type(ms) is not float and type(ms) is not int or not math.isfinite(ms):
        raise TypeMapError("_creationTime must be a finite number of milliseconds")
    return math.floor(ms * 1000.0)


def arrow_type(t: ConvexType) -> pa.DataType:
    """The Arrow type of a non-null value of type ``t`` (a string when it is carried as JSON text)."""
    if needs_json_text(t):
        return pa.string()
    inner, _nullable = split_nullable(t)
    if inner is None or inner == NEVER:
        return pa.null()
    if isinstance(inner, ScalarType):
        return _SCALARS[inner.tag]
    if isinstance(inner, Float64Type):
        return pa.float64()
    if isinstance(inner, CreationTimeType):
        return _TIMESTAMP
    if isinstance(inner, IdType):
        return pa.string()
    if isinstance(inner, ArrayType):
        # "element" is the Parquet name of list items; pyarrow renames "item" to it on write.
        return pa.list_(arrow_field("element", inner.items))
    if isinstance(inner, ObjectType):
        return pa.struct([arrow_field(f.name, f.type, f.optional) for f in inner.fields])
    raise TypeMapError(f"no Arrow type for {type(inner).__name__}")  # needs_json_text covers the rest


def arrow_field(name: str, t: ConvexType, optional: bool = False) -> pa.Field:
    """The Arrow field of a value of type ``t`` (nullable when optional or when null is a member)."""
    inner, nullable = split_nullable(t)
    if needs_json_text(t):
        return pa.field(name, pa.string(), nullable=optional or nullable, metadata=ARROW_JSON_METADATA)
    metadata = CREATION_TIME_METADATA if isinstance(inner, CreationTimeType) else None
    return pa.field(name, arrow_type(t), nullable=optional or nullable or inner == NEVER, metadata=metadata)


def _identity(v: Any) -> Any:
    return v


def _json_or_none(v: Any) -> Any:
    return None if v is None else json_text(v)


def _creation_time_or_none(v: Any) -> Any:
    return None if v is None else creation_time_micros(v)


def arrow_converter(t: ConvexType) -> Converter:
    """Convex value (``None`` for null or missing) -> the Python value ``pa.array(..., type=arrow_type(t))``
    takes."""
    if needs_json_text(t):
        return _json_or_none
    inner, _nullable = split_nullable(t)
    if isinstance(inner, CreationTimeType):
        return _creation_time_or_none
    if isinstance(inner, ArrayType):
        item = arrow_converter(inner.items)
        if item is _identity:
            return _identity
        return lambda v: None if v is None else [item(x) for x in v]
    if isinstance(inner, ObjectType):
        convs = [(f.name, arrow_converter(f.type)) for f in inner.fields]
        return lambda v: None if v is None else {name: conv(v.get(name)) for name, conv in convs}
    return _identity


@dataclass(frozen=True, slots=True)
class ArrowColumn:
    """One output column: its field, the document field it reads, and the value converter."""

    field: pa.Field
    source: str
    convert: Converter


def arrow_columns(table: ObjectType) -> list[ArrowColumn]:
    """The columns of a table tree in schema order: ``_id``, ``_creationTime``, its exact companion, then the
    user fields sorted."""
    cols: list[ArrowColumn] = []
    for f in sorted(table.fields, key=lambda f: (not f.name.startswith("_"), f.name != "_id", f.name)):
        cols.append(ArrowColumn(arrow_field(f.name, f.type, f.optional), f.name, arrow_converter(f.type)))
        if isinstance(f.type, CreationTimeType):
            exact = pa.field(
                CREATION_TIME_EXACT_COLUMN,
                pa.float64(),
                nullable=f.optional,
                metadata=EXACT_CREATION_TIME_METADATA,
            )
            cols.append(ArrowColumn(exact, f.name, _identity))
    return cols


def arrow_schema(table: ObjectType) -> pa.Schema:
    """The Arrow schema of a table tree (see :func:`arrow_columns` for the order)."""
    return pa.schema([c.field for c in arrow_columns(table)])


# --- back to Convex (readers, tests) -----------------------------------------------------------------------


def arrow_value_to_convex(v: Any, t: ConvexType) -> values.Value:
    """The inverse of :func:`arrow_converter` for what Arrow holds exactly (``to_pylist`` values). JSON-text
    values stay text (clean JSON cannot be read back exactly); a ``_creationTime`` timestamp gives
    microsecond precision only (read the companion column for the exact value)."""
    if v is None or needs_json_text(t):
        return v
    inner, _nullable = split_nullable(t)
    if isinstance(inner, CreationTimeType):
        assert isinstance(v, datetime)
        delta = v - datetime(1970, 1, 1, tzinfo=v.tzinfo)
        return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) / 1000.0
    if isinstance(inner, ArrayType):
        return [arrow_value_to_convex(x, inner.items) for x in v]
    if isinstance(inner, ObjectType):
        return _object_back(v, inner)
    return v


def _object_back(v: Mapping[str, Any], t: ObjectType) -> dict[str, values.Value]:
    out: dict[str, values.Value] = {}
    for f in t.fields:
        x = v.get(f.name)
        if x is None and f.optional and not split_nullable(f.type)[1]:
            continue  # missing, since null is not a value of this field
        out[f.name] = arrow_value_to_convex(x, f.type)
    return out


def arrow_row_to_document(row: Mapping[str, Any], table: ObjectType) -> dict[str, values.Value]:
    """One row of :func:`arrow_schema` (a ``to_pylist`` dict) -> the document, ``_creationTime`` exact from
    its companion column."""
    doc = _object_back(row, table)
    if CREATION_TIME_FIELD in doc and row.get(CREATION_TIME_EXACT_COLUMN) is not None:
        doc[CREATION_TIME_FIELD] = row[CREATION_TIME_EXACT_COLUMN]
    return doc
