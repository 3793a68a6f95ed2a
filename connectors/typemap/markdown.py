"""The type-mapping tables for the READMEs, rendered from the map itself so they are never written twice."""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

from connectors import values
from connectors.typemap.airbyte import airbyte_json_schema
from connectors.typemap.arrow import arrow_field
from connectors.typemap.avro import avro_type
from connectors.typemap.fivetran import (
    FivetranDataType,
    creation_time_to_fivetran,
    fivetran_column_type,
    parse_fivetran_cell,
    schema_ts_for_fivetran_type,
    to_fivetran_value,
)
from connectors.typemap.jsonschema import json_schema
from connectors.typemap.tags import value_type_name
from connectors.typemap.tree import (
    BOOLEAN_T,
    BYTES_T,
    CREATION_TIME_T,
    FLOAT64_T,
    INT64_T,
    NULL_T,
    STRING_T,
    ArrayType,
    ConvexType,
    CreationTimeType,
    FieldType,
    Float64Type,
    IdType,
    ObjectType,
    union_of,
)

__all__ = ["fivetran_destination_markdown", "type_mapping_markdown"]

# (label, type, a sample value of that type)
_ROWS: Final[tuple[tuple[str, ConvexType, values.Value], ...]] = (
    ("Null (only)", NULL_T, None),
    ("Int64", INT64_T, 1),
    ("Float64", FLOAT64_T, 1.5),
    ("Float64 with NaN, ±inf or -0.0", Float64Type(True), math.nan),
    ("Boolean", BOOLEAN_T, True),
    ("String", STRING_T, "text"),
    ("Id (`_id`)", IdType("<table>"), "j57000820c20a1g7104gm2rc1m70ynr8"),
    ("Bytes", BYTES_T, b"\x00"),
    ("`_creationTime`", CREATION_TIME_T, 1686799242010.5),
    ("Array of Int64", ArrayType(INT64_T), [1]),
    ("Object `{a: Int64}`", ObjectType((FieldType("a", INT64_T),)), {"a": 1}),
    ("String or null", union_of((STRING_T, NULL_T)), "text"),
    ("Mixed union (Int64 or String)", union_of((INT64_T, STRING_T)), 1),
    ("Empty object", ObjectType(()), {}),
)


def _code(x: Any) -> str:
    text = x if isinstance(x, str) else orjson.dumps(x).decode()
    return "`" + text.replace("|", "\\|") + "`"


def _fivetran_cell(t: ConvexType, sample: values.Value) -> str:
    fv = creation_time_to_fivetran(sample) if isinstance(t, CreationTimeType) else to_fivetran_value(sample)
    return f"{fivetran_column_type(t).name} (`{fv.member}`)"


def _arrow_cell(t: ConvexType) -> str:
    field = arrow_field("f", t)
    cell = f"`{field.type}`" + ("" if field.nullable else " not null")
    if field.metadata:
        cell += " " + ", ".join(f"`{k.decode()}: {v.decode()}`" for k, v in sorted(field.metadata.items()))
    if isinstance(t, CreationTimeType):
        cell += " + `_creationTime_ms` double"
    return cell


def type_mapping_markdown() -> str:
    """Convex type -> ``json_schemas`` (``convex_encoded_json``), Fivetran, Airbyte, Arrow, Avro; one row per
    type, each cell computed by the map."""
    lines = [
        "| Convex | JSON Schema (`convex_encoded_json`) | Fivetran | Airbyte | Arrow / Parquet | Avro |",
        "|---|---|---|---|---|---|",
    ]
    for label, t, sample in _ROWS:
        avro = avro_type(t)
        if isinstance(t, CreationTimeType):
            avro = [avro, "double"]  # the value and its exact companion field
        cells = [
            label,
            _code(json_schema(t, "convex_encoded_json")),
            _fivetran_cell(t, sample),
            _code(airbyte_json_schema(t)),
            _arrow_cell(t),
            _code(avro),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# A sample CSV cell per Fivetran type (fivetran-sdk.md §8.4).
_CSV_SAMPLES: Final = {
    FivetranDataType.BOOLEAN: "true",
    FivetranDataType.SHORT: "1",
    FivetranDataType.INT: "1",
    FivetranDataType.LONG: "1",
    FivetranDataType.DECIMAL: "1.50",
    FivetranDataType.FLOAT: "1.5",
    FivetranDataType.DOUBLE: "1.5",
    FivetranDataType.NAIVE_DATE: "2007-12-03",
    FivetranDataType.NAIVE_DATETIME: "2007-12-03T10:15:30",
    FivetranDataType.UTC_DATETIME: "2007-12-03T10:15:30.123Z",
    FivetranDataType.BINARY: "AA==",
    FivetranDataType.XML: "<a/>",
    FivetranDataType.STRING: "text",
    FivetranDataType.JSON: '{"a":1}',
    FivetranDataType.NAIVE_TIME: "10:15:30",
}


def fivetran_destination_markdown() -> str:
    """Fivetran ``DataType`` -> the Convex value a batch-file cell becomes and the suggested validator."""
    lines = ["| Fivetran | Convex value | Validator (nullable) |", "|---|---|---|"]
    for dt in FivetranDataType:
        sample = _CSV_SAMPLES.get(dt)
        convex = "— (rejected)" if sample is None else value_type_name(parse_fivetran_cell(sample, dt, "c"))
        lines.append(f"| {dt.name} | {convex} | `{schema_ts_for_fivetran_type(dt, True)}` |")
    return "\n".join(lines) + "\n"
