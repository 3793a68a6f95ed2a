"""The one rule for nested values a target cannot type: JSON text, marked as such.

The text is the clean ``json`` export of the value (``values-and-ids.md`` §2.1: Int64 as a base-10 string,
Bytes as base64, NaN/±inf as strings), compact, object keys sorted. Clean JSON is lossy by design (it is what
Fivetran's ``json`` member and the Fivetran source have always carried); a target that must keep a value
exactly types it instead. Arrow fields carry :data:`ARROW_JSON_METADATA`, Avro string schemas carry
:data:`AVRO_JSON_PROPERTY` so a reader knows the text is JSON.
"""

from __future__ import annotations

from typing import Final

import orjson

from connectors import values
from connectors.typemap.tree import (
    NEVER,
    AnyType,
    ArrayType,
    ConvexType,
    ObjectType,
    UnionType,
    split_nullable,
)

__all__ = [
    "ARROW_JSON_METADATA",
    "AVRO_ENCODING_KEY",
    "AVRO_JSON_PROPERTY",
    "ENCODING_JSON",
    "json_text",
    "json_text_bytes",
    "needs_json_text",
]

ENCODING_JSON: Final = "json"
ARROW_ENCODING_KEY: Final = b"convex:encoding"
ARROW_JSON_METADATA: Final = {ARROW_ENCODING_KEY: ENCODING_JSON.encode()}
AVRO_ENCODING_KEY: Final = "convex.encoding"
AVRO_JSON_PROPERTY: Final = {AVRO_ENCODING_KEY: ENCODING_JSON}


def json_text(value: values.Value) -> str:
    """Compact clean JSON of ``value`` with sorted keys (raises ``InvalidValueError`` on a non-value)."""
    return json_text_bytes(value).decode()


def json_text_bytes(value: values.Value) -> bytes:
    """:func:`json_text` as UTF-8 bytes, for writers that send bytes (no decode and re-encode per value)."""
    if type(value) is list and all(type(x) is str for x in value):
        return orjson.dumps(value)  # fast path: a list of strings is its own clean JSON
    return orjson.dumps(values.to_clean_json(value), option=orjson.OPT_SORT_KEYS)


def needs_json_text(t: ConvexType) -> bool:
    """Whether a typed target (Arrow, Avro) must carry values of type ``t`` as JSON text.

    The rule, once: after removing ``null`` from a union, what is left must be one type, and an object must
    have at least one field (Parquet cannot store an empty struct) and an array's items must be typable
    themselves; "any" and "never" are JSON text too. Everything else has a native typed form.
    """
    inner, _nullable = split_nullable(t)
    if inner is None or inner == NEVER:
        return False  # only null, or no value at all: a null-typed column
    if isinstance(inner, UnionType | AnyType):
        return True
    if isinstance(inner, ArrayType):
        return needs_json_text(inner.items)
    if isinstance(inner, ObjectType):
        return not inner.fields
    return False
