"""Convex <-> Airbyte: stream JSON Schemas and record values for the source, record JSON for the destination.

Source (values read with ``convex_encoded_json``, so every type is known): Int64 -> JSON integer,
``{"type": "integer"}`` (exact: Airbyte reads integers as big integers); Bytes -> base64 string,
``{"type": "string", "contentEncoding": "base64"}``; Float64 -> number, NaN and ±inf as the strings
``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no such numbers; the schema says so when the shape has
seen them); ``_creationTime`` stays ``{"type": "number"}`` (milliseconds) as the published source sends it,
so existing connections keep their column types; arrays and objects are typed natively (JSON holds every
nested value, so nothing becomes JSON text); a union with null is ``"type": [T, "null"]``, other unions
``anyOf``.

Destination: Airbyte record JSON -> Convex is the streaming-import rule (streaming-import.md §5: keys
renamed, every number a Float64), implemented in :mod:`connectors.airbyte_records` and reached through
:func:`airbyte_record_to_convex`.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Final

from connectors import airbyte_records, values
from connectors.constants import AB_CDC_DELETED_AT, AB_CDC_LSN, AB_CDC_UPDATED_AT
from connectors.typemap import tags as _tags
from connectors.typemap.jsonschema import DELTA_PROPERTIES, JSON_SCHEMA_DRAFT
from connectors.typemap.tree import (
    BOOLEAN_T,
    BYTES_T,
    INT64_T,
    NEVER,
    STRING_T,
    AnyType,
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
    "airbyte_is_exact",
    "airbyte_json_schema",
    "airbyte_record_data",
    "airbyte_record_to_convex",
    "airbyte_stream_schema",
    "airbyte_value_to_convex",
    "to_airbyte_value",
]

_SPECIAL_FLOAT_TEXT: Final = ("NaN", "Infinity", "-Infinity")
_BYTES_SCHEMA: Final = {"type": "string", "contentEncoding": "base64", "$description": "base64 bytes"}
_CDC_PROPERTIES: Final = {
    AB_CDC_LSN: {"type": "number"},
    AB_CDC_UPDATED_AT: {"type": "string"},
    AB_CDC_DELETED_AT: {"anyOf": [{"type": "string"}, {"type": "null"}]},
}


def _member_schema(t: ConvexType) -> Any:
    if isinstance(t, ScalarType):
        if t.tag == _tags.INT64:
            return {"type": "integer"}
        if t.tag == _tags.BYTES:
            return dict(_BYTES_SCHEMA)
        return {"type": t.tag}  # null, boolean, string
    if isinstance(t, Float64Type):
        if not t.special:
            return {"type": "number"}
        return {"anyOf": [{"type": "number"}, {"type": "string", "enum": list(_SPECIAL_FLOAT_TEXT)}]}
    if isinstance(t, CreationTimeType):
        return {"type": "number"}
    if isinstance(t, IdType):
        return {"type": "string", "$description": f"Id({t.table})"}
    if isinstance(t, ArrayType):
        # Airbyte's type mapping has no "never"; items of always-empty arrays are left open.
        return {"type": "array", "items": {} if t.items == NEVER else airbyte_json_schema(t.items)}
    if isinstance(t, ObjectType):
        return {
            "type": "object",
            "properties": {f.name: airbyte_json_schema(f.type) for f in t.fields},
            "required": [f.name for f in t.fields if not f.optional],
            "additionalProperties": False,
        }
    if isinstance(t, AnyType) or t == NEVER:
        return {}
    raise TypeMapError(f"no Airbyte schema for {type(t).__name__}")


def airbyte_json_schema(t: ConvexType) -> Any:
    """The Airbyte JSON Schema of a value of type ``t`` as :func:`to_airbyte_value` writes it."""
    inner, nullable = split_nullable(t)
    if inner is None:
        return {"type": "null"}
    if isinstance(inner, UnionType) and inner.members:
        members = [_member_schema(m) for m in inner.members]
        return {"anyOf": members + [{"type": "null"}]} if nullable else {"anyOf": members}
    schema = _member_schema(inner)
    if nullable:
        if isinstance(schema.get("type"), str):
            return {**schema, "type": [schema["type"], "null"]}
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def airbyte_stream_schema(
    table: ObjectType, *, delta_metadata: bool = True, cdc: bool = True
) -> dict[str, Any]:
    """A stream's ``json_schema``: the table's fields, the export metadata (``_table``, ``_component``,
    ``_ts``, ``_deleted``) and Airbyte's ``_ab_cdc_*`` columns, open to additional properties as the
    published source makes it."""
    properties: dict[str, Any] = {f.name: airbyte_json_schema(f.type) for f in table.fields}
    if delta_metadata:
        properties.update(DELTA_PROPERTIES)
    if cdc:
        properties.update(_CDC_PROPERTIES)
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": True,
        "required": sorted(f.name for f in table.fields if not f.optional),
        "$schema": JSON_SCHEMA_DRAFT,
    }


def to_airbyte_value(v: values.Value) -> Any:
    """A Convex value -> its Airbyte record JSON value (see the module docstring)."""
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is float:
        if v - v == 0.0:  # type: ignore[operator]
            return v
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")  # type: ignore[operator]
    if t is int:
        return v
    if t is bytes:
        return base64.b64encode(v).decode()  # type: ignore[arg-type]
    if t is list:
        return [to_airbyte_value(x) for x in v]  # type: ignore[union-attr]
    if t is dict:
        return {k: to_airbyte_value(x) for k, x in v.items()}  # type: ignore[union-attr]
    raise TypeMapError(f"unsupported value type {t.__name__}")


def airbyte_record_data(doc: dict[str, values.Value]) -> dict[str, Any]:
    """A document -> the ``data`` of its Airbyte RECORD (the adapter adds ``_ab_cdc_*`` and metadata)."""
    return {k: to_airbyte_value(v) for k, v in doc.items()}


def _float_from_text(j: str) -> float:
    if j == "NaN":
        return math.nan
    if j == "Infinity":
        return math.inf
    if j == "-Infinity":
        return -math.inf
    raise TypeMapError("expected NaN, Infinity or -Infinity")


def _candidates(j: Any) -> tuple[Any, ...]:
    """Tests, in order of preference, for the union member a JSON value of this kind was written from."""
    k = type(j)
    if k is bool:
        return (lambda m: m == BOOLEAN_T,)
    if k is int:
        return (lambda m: m == INT64_T, lambda m: isinstance(m, Float64Type | CreationTimeType))
    if k is float:
        return (lambda m: isinstance(m, Float64Type | CreationTimeType),)
    if k is str:
        return (
            lambda m: m == STRING_T or isinstance(m, IdType),
            lambda m: m == BYTES_T,
            lambda m: isinstance(m, Float64Type),
        )
    if k is list:
        return (lambda m: isinstance(m, ArrayType),)
    if k is dict:
        return (lambda m: isinstance(m, ObjectType),)
    return ()


def _member_for(j: Any, t: ConvexType) -> ConvexType:
    """The member of ``t`` a JSON value was written from: by JSON type; a string prefers String/Id, then
    Bytes, then a special Float64."""
    if not isinstance(t, UnionType):
        return t
    for test in _candidates(j):
        for m in t.members:
            if test(m):
                return m
    raise TypeMapError(f"a JSON {type(j).__name__} does not match the stream's type")


def _written_as_string(m: ConvexType) -> bool:
    return m in (STRING_T, BYTES_T) or isinstance(m, IdType) or (isinstance(m, Float64Type) and m.special)


def airbyte_is_exact(t: ConvexType) -> bool:
    """Whether values of type ``t`` read back exactly from Airbyte records: false when a union has two
    members that are both written as JSON strings (String or Id, Bytes, NaN/±inf), as clean JSON."""
    if isinstance(t, UnionType):
        if sum(1 for m in t.members if _written_as_string(m)) > 1:
            return False
        return all(airbyte_is_exact(m) for m in t.members)
    if isinstance(t, ArrayType):
        return airbyte_is_exact(t.items)
    if isinstance(t, ObjectType):
        return all(airbyte_is_exact(f.type) for f in t.fields)
    return True


def airbyte_value_to_convex(j: Any, t: ConvexType) -> values.Value:
    """The inverse of :func:`to_airbyte_value` given the value's type tree (for readers of our own
    stream's records): exact where :func:`airbyte_is_exact`, except NaN payloads (the text is "NaN")."""
    if j is None:
        return None
    m = _member_for(j, t)
    if isinstance(m, ScalarType):
        if m.tag == _tags.BYTES:
            try:
                return base64.b64decode(j, validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise TypeMapError("expected base64 bytes") from None
        if m.tag == _tags.INT64 and type(j) is not int:
            raise TypeMapError("expected an integer")
        return j
    if isinstance(m, Float64Type | CreationTimeType):
        return _float_from_text(j) if type(j) is str else float(j)
    if isinstance(m, ArrayType):
        return [airbyte_value_to_convex(x, m.items) for x in j]
    if isinstance(m, ObjectType):
        types = {f.name: f.type for f in m.fields}
        return {k: airbyte_value_to_convex(x, types.get(k, NEVER)) for k, x in j.items()}
    return j  # Id (a string) or "any"


def airbyte_record_to_convex(data: Any) -> tuple[dict[str, values.Value], bool]:
    """Destination: one Airbyte record's ``data`` -> ``(Convex object, deleted)`` per streaming-import.md §5
    (every key through the identifier rules, every number a Float64, top-level CDC fields dropped)."""
    return airbyte_records.convert_airbyte_record(data)
