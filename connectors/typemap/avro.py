"""Convex -> Avro (fastavro) for the snapshot export: schemas and record converters.

The same decisions as :mod:`.arrow`: Int64 -> ``long``, Float64 -> ``double`` (bits kept), Boolean ->
``boolean``, String and Id -> ``string``, Bytes -> ``bytes``, null only -> ``null``, a union with null or an
optional field -> ``["null", T]`` (default null), arrays -> ``array``, objects -> ``record``.
``_creationTime`` -> ``long`` with ``logicalType: timestamp-micros`` plus the exact ``double`` companion
field ``_creationTime_ms``. What cannot be typed is a plain ``string`` (no logical type) carrying
``"convex.encoding": "json"`` and clean JSON text.

Avro names allow only ``[A-Za-z_][A-Za-z0-9_]*``; a Convex field name outside that is written as a sanitized
name (other characters -> ``_``, made unique) and the original kept in the field's ``convex.name``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from connectors import values
from connectors.constants import CREATION_TIME_FIELD
from connectors.typemap import tags as _tags
from connectors.typemap.arrow import CREATION_TIME_EXACT_COLUMN, creation_time_micros
from connectors.typemap.jsontext import AVRO_JSON_PROPERTY, json_text, needs_json_text
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
    "AVRO_NAME_PROPERTY",
    "avro_record_converter",
    "avro_record_patcher",
    "avro_record_to_document",
    "avro_schema",
    "avro_type",
    "avro_value_to_convex",
]

AVRO_NAME_PROPERTY: Final = "convex.name"
_AVRO_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_NOT_NAME_CHAR_RE: Final = re.compile(r"[^A-Za-z0-9_]", re.ASCII)
_SCALARS: Final = {
    _tags.NULL: "null",
    _tags.INT64: "long",
    _tags.BOOLEAN: "boolean",
    _tags.STRING: "string",
    _tags.BYTES: "bytes",
}
_TIMESTAMP_MICROS: Final = {"type": "long", "logicalType": "timestamp-micros"}

Converter = Callable[[Any], Any]


def _avro_names(names: list[str]) -> list[str]:
    """Field names -> unique Avro names, valid names first so they keep their spelling."""
    taken = {n for n in names if _AVRO_NAME_RE.fullmatch(n)}
    out = []
    for n in names:
        if _AVRO_NAME_RE.fullmatch(n):
            out.append(n)
            continue
        base = _NOT_NAME_CHAR_RE.sub("_", n)
        if not base or base[0].isdigit():
            base = "_" + base
        candidate, i = base, 2
        while candidate in taken:
            candidate, i = f"{base}_{i}", i + 1
        taken.add(candidate)
        out.append(candidate)
    return out


class _Builder:
    """Builds one schema; record names are unique within it (Avro requires that)."""

    def __init__(self) -> None:
        self.record_names: set[str] = set()

    def record_name(self, hint: str) -> str:
        base = _NOT_NAME_CHAR_RE.sub("_", hint) or "record"
        if base[0].isdigit():
            base = "_" + base
        name, i = base, 2
        while name in self.record_names:
            name, i = f"{base}_{i}", i + 1
        self.record_names.add(name)
        return name

    def schema(self, t: ConvexType, hint: str, optional: bool = False) -> Any:
        inner, nullable = split_nullable(t)
        if needs_json_text(t):
            body: Any = {"type": "string", **AVRO_JSON_PROPERTY}
        elif inner is None or inner == NEVER:
            return "null"
        elif isinstance(inner, ScalarType):
            body = _SCALARS[inner.tag]
        elif isinstance(inner, Float64Type):
            body = "double"
        elif isinstance(inner, CreationTimeType):
            body = dict(_TIMESTAMP_MICROS)
        elif isinstance(inner, IdType):
            body = "string"
        elif isinstance(inner, ArrayType):
            body = {"type": "array", "items": self.schema(inner.items, hint + "_item")}
        elif isinstance(inner, ObjectType):
            body = self.record(inner, hint)
        else:
            raise TypeMapError(f"no Avro type for {type(inner).__name__}")
        return ["null", body] if nullable or optional else body

    def record(self, t: ObjectType, hint: str, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        names = _avro_names([f.name for f in t.fields])
        fields: list[dict[str, Any]] = []
        for f, avro_name in zip(t.fields, names, strict=True):
            entry: dict[str, Any] = {
                "name": avro_name,
                "type": self.schema(f.type, f"{hint}_{avro_name}", f.optional),
            }
            if isinstance(entry["type"], list):
                entry["default"] = None
            if avro_name != f.name:
                entry[AVRO_NAME_PROPERTY] = f.name
            fields.append(entry)
            if extra is not None and isinstance(f.type, CreationTimeType):
                fields.append(extra.pop())
        return {"type": "record", "name": self.record_name(hint), "fields": fields}


def avro_type(t: ConvexType, name_hint: str = "value", optional: bool = False) -> Any:
    """The Avro schema of one value of type ``t`` (records inside are named from ``name_hint``)."""
    return _Builder().schema(t, name_hint, optional)


def avro_schema(table: ObjectType, name: str = "Document", namespace: str | None = None) -> dict[str, Any]:
    """The Avro record schema of a table tree (fields sorted by name, ``_creationTime_ms`` right after
    ``_creationTime``); parse it with ``fastavro.parse_schema``."""
    exact = {"name": CREATION_TIME_EXACT_COLUMN, "type": "double"}
    schema = _Builder().record(table, name, [exact])
    if namespace:
        schema["namespace"] = namespace
    return schema


def _identity(v: Any) -> Any:
    return v


def _converter(t: ConvexType) -> Converter:
    if needs_json_text(t):
        return lambda v: None if v is None else json_text(v)
    inner, _nullable = split_nullable(t)
    if isinstance(inner, CreationTimeType):
        return lambda v: None if v is None else creation_time_micros(v)
    if isinstance(inner, ArrayType):
        item = _converter(inner.items)
        if item is _identity:
            return _identity
        return lambda v: None if v is None else [item(x) for x in v]
    if isinstance(inner, ObjectType):
        return _record_converter(inner)
    return _identity


def _record_converter(t: ObjectType) -> Converter:
    names = _avro_names([f.name for f in t.fields])
    convs = [(f.name, avro_name, _converter(f.type)) for f, avro_name in zip(t.fields, names, strict=True)]
    return lambda v: None if v is None else {a: conv(v.get(n)) for n, a, conv in convs}


def avro_record_converter(table: ObjectType) -> Callable[[Mapping[str, values.Value]], dict[str, Any]]:
    """A document -> the record fastavro writes with :func:`avro_schema` of the same tree."""
    convert = _record_converter(table)
    has_creation_time = isinstance(getattr(table.field(CREATION_TIME_FIELD), "type", None), CreationTimeType)

    def record(doc: Mapping[str, values.Value]) -> dict[str, Any]:
        out: dict[str, Any] = convert(doc)
        if has_creation_time:
            out[CREATION_TIME_EXACT_COLUMN] = doc.get(CREATION_TIME_FIELD)
        return out

    return record


def avro_record_patcher(table: ObjectType) -> Callable[[dict[str, values.Value]], dict[str, Any]] | None:
    """A faster :func:`avro_record_converter` for bulk writers: a shallow copy of the document with only the
    fields that need it converted (``_creationTime``, JSON text, nested values), plus the exact companion.
    Keys outside the tree stay in the copy (fastavro reads only the schema's fields). None when a field name
    is not a valid Avro name (then records are renamed: use :func:`avro_record_converter`)."""
    names = [f.name for f in table.fields]
    if _avro_names(names) != names:
        return None
    patches = [(f.name, conv) for f in table.fields if (conv := _converter(f.type)) is not _identity]
    has_creation_time = isinstance(getattr(table.field(CREATION_TIME_FIELD), "type", None), CreationTimeType)

    def record(doc: dict[str, values.Value]) -> dict[str, Any]:
        out: dict[str, Any] = doc.copy()
        for name, conv in patches:
            v = out.get(name)
            if v is not None:
                out[name] = conv(v)
        if has_creation_time:
            out[CREATION_TIME_EXACT_COLUMN] = doc.get(CREATION_TIME_FIELD)
        return out

    return record


# --- back to Convex (readers, tests) -----------------------------------------------------------------------


def avro_value_to_convex(v: Any, t: ConvexType) -> values.Value:
    """The inverse of the converter for what Avro holds exactly; JSON text stays text, a timestamp gives
    microsecond precision only."""
    if v is None or needs_json_text(t):
        return v
    inner, _nullable = split_nullable(t)
    if isinstance(inner, CreationTimeType):
        if isinstance(v, datetime):
            delta = v - datetime(1970, 1, 1, tzinfo=v.tzinfo)
            v = delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds
        return v / 1000.0
    if isinstance(inner, ArrayType):
        return [avro_value_to_convex(x, inner.items) for x in v]
    if isinstance(inner, ObjectType):
        return _record_back(v, inner)
    return v


def _record_back(v: Mapping[str, Any], t: ObjectType) -> dict[str, values.Value]:
    out: dict[str, values.Value] = {}
    for f, avro_name in zip(t.fields, _avro_names([f.name for f in t.fields]), strict=True):
        x = v.get(avro_name)
        if x is None and f.optional and not split_nullable(f.type)[1]:
            continue  # missing, since null is not a value of this field
        out[f.name] = avro_value_to_convex(x, f.type)
    return out


def avro_record_to_document(record: Mapping[str, Any], table: ObjectType) -> dict[str, values.Value]:
    """A record read back -> the document, ``_creationTime`` exact from its companion field."""
    doc = _record_back(record, table)
    if CREATION_TIME_FIELD in doc and record.get(CREATION_TIME_EXACT_COLUMN) is not None:
        doc[CREATION_TIME_FIELD] = record[CREATION_TIME_EXACT_COLUMN]
    return doc
