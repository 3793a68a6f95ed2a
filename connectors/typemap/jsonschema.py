"""Type tree <-> JSON Schema of ``GET /api/json_schemas`` (streaming-export.md §6.3, values-and-ids.md §3),
and type tree -> ``ValidatorJson`` (streaming-import.md §11.3).

:func:`table_json_schema` writes what the server answers; :func:`table_type_from_json_schema` reads it back,
so an HTTP reader gets the same tree as the local engine's :class:`~connectors.shapes.TableShape`. The
schemas of every format describe Int64, Bytes and special floats by a ``$description`` or a ``$integer`` /
``$float`` / ``$bytes`` property, so the tree read back is exact.
"""

from __future__ import annotations

from typing import Any, Final

from connectors.constants import (
    COMPONENT_KEY,
    CREATION_TIME_FIELD,
    DELETED_KEY,
    EXPORT_METADATA_KEYS,
    FORMAT_ALIASES,
    FORMAT_ENCODED_JSON,
    FORMAT_JSON,
    ID_FIELD,
    TABLE_KEY,
    TS_KEY,
)
from connectors.errors import BadRequestError
from connectors.typemap import tags as _tags
from connectors.typemap.tree import (
    ANY,
    BOOLEAN_T,
    BYTES_T,
    INT64_T,
    NEVER,
    NULL_T,
    STRING_T,
    AnyType,
    ArrayType,
    ConvexType,
    CreationTimeType,
    FieldType,
    Float64Type,
    IdType,
    ObjectType,
    ScalarType,
    TypeMapError,
    UnionType,
    table_type,
    union_of,
)

__all__ = [
    "DELTA_PROPERTIES",
    "JSON_SCHEMA_DRAFT",
    "json_schema",
    "normalize_format",
    "table_json_schema",
    "table_type_from_json_schema",
    "table_types_from_json_schemas",
    "type_from_json_schema",
    "validator_json",
]

JSON_SCHEMA_DRAFT: Final = "http://json-schema.org/draft-07/schema#"

_INT64_CLEAN_DESC: Final = "int64 represented as base10 string"
_INT64_DESC: Final = "int64"
_INT64_PAYLOAD_DESC: Final = "int64 -> little-endian -> base64"
_FLOAT64_DESC: Final = "float64"
_FLOAT64_PAYLOAD_DESC: Final = "float64 -> little-endian -> base64"
_BYTES_DESC: Final = "base64 bytes"

# The export metadata columns of a delta row (streaming-export.md §5), as JSON Schema properties.
DELTA_PROPERTIES: Final[dict[str, dict[str, str]]] = {
    TABLE_KEY: {"type": "string"},
    COMPONENT_KEY: {"type": "string"},
    TS_KEY: {"type": "integer"},
    DELETED_KEY: {"type": "boolean"},
}


def normalize_format(fmt: Any) -> str:
    """``ValueFormat`` member or its string (legacy aliases included) -> canonical format string."""
    value = getattr(fmt, "value", fmt)
    canonical = FORMAT_ALIASES.get(value) if isinstance(value, str) else None
    if canonical is None:
        raise BadRequestError("BadFormat", f"format param must be one of [`json`]. Got {value}")
    return canonical


# --- tree -> JSON Schema ----------------------------------------------------------------------------------


def _int64_schema(fmt: str) -> dict[str, Any]:
    if fmt == FORMAT_JSON:
        return {"$description": _INT64_CLEAN_DESC, "type": "string"}
    if fmt == FORMAT_ENCODED_JSON:
        return {
            "$description": _INT64_DESC,
            "type": "object",
            "properties": {"$integer": {"$description": _INT64_PAYLOAD_DESC, "type": "string"}},
        }
    return {"$description": _INT64_DESC, "type": "number"}


def _float64_schema(fmt: str, special: bool) -> dict[str, Any]:
    if not special:
        return {"type": "number"}
    if fmt == FORMAT_JSON:
        return {
            "$description": _FLOAT64_DESC,
            "anyOf": [{"type": "number"}, {"type": "string", "$description": "-inf, inf, or NaN"}],
        }
    # export_json writes -0.0 as a plain number, hence the shorter description (values-and-ids.md §3).
    desc = "-0, -inf, inf, or NaN" if fmt == FORMAT_ENCODED_JSON else "-inf, inf, or NaN"
    return {
        "$description": _FLOAT64_DESC,
        "anyOf": [
            {"type": "number"},
            {
                "type": "object",
                "$description": desc,
                "properties": {"$float": {"$description": _FLOAT64_PAYLOAD_DESC, "type": "string"}},
            },
        ],
    }


def _bytes_schema(fmt: str) -> dict[str, Any]:
    if fmt == FORMAT_JSON:
        return {"$description": _BYTES_DESC, "type": "string"}
    return {"type": "object", "$description": _BYTES_DESC, "properties": {"$bytes": {"type": "string"}}}


def _object_schema(t: ObjectType, fmt: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.name: _schema(f.type, fmt) for f in t.fields},
        "additionalProperties": False,
        "required": [f.name for f in t.fields if not f.optional],
    }


def _schema(t: ConvexType, fmt: str) -> Any:
    if isinstance(t, ScalarType):
        if t.tag == _tags.INT64:
            return _int64_schema(fmt)
        if t.tag == _tags.BYTES:
            return _bytes_schema(fmt)
        return {"type": t.tag}  # null, boolean, string
    if isinstance(t, Float64Type):
        return _float64_schema(fmt, t.special)
    if isinstance(t, CreationTimeType):
        return {"type": "number"}
    if isinstance(t, IdType):
        return {"$description": f"Id({t.table})", "type": "string"}
    if isinstance(t, ArrayType):
        return {"type": "array", "items": _schema(t.items, fmt)}
    if isinstance(t, ObjectType):
        return _object_schema(t, fmt)
    if isinstance(t, UnionType):
        if not t.members:
            return False  # "never": e.g. the items of arrays that were always empty
        return {"anyOf": [_schema(m, fmt) for m in t.members]}
    return {}  # AnyType


def json_schema(t: ConvexType, fmt: Any) -> Any:
    """The JSON Schema of a value of type ``t`` in wire format ``fmt`` (streaming-export.md §6.3)."""
    return _schema(t, normalize_format(fmt))


def table_json_schema(table: ObjectType, fmt: Any, delta_schema: bool = False) -> dict[str, Any]:
    """A table's schema for ``GET /api/json_schemas`` (streaming-export.md §6.2): properties sorted,
    ``required`` sorted, ``$schema`` last; ``deltaSchema`` adds the export metadata properties."""
    schema = _object_schema(table, normalize_format(fmt))
    schema["required"] = sorted(schema["required"])
    if delta_schema:
        schema["properties"].update(DELTA_PROPERTIES)
    schema["$schema"] = JSON_SCHEMA_DRAFT
    return schema


# --- JSON Schema -> tree ----------------------------------------------------------------------------------


def _where(path: str) -> str:
    return f" at {path}" if path else ""


def _payload_property(schema: dict[str, Any]) -> str | None:
    props = schema.get("properties")
    if isinstance(props, dict) and len(props) == 1:
        (name,) = props
        if name in ("$integer", "$float", "$bytes"):
            return str(name)
    return None


def type_from_json_schema(schema: Any, path: str = "") -> ConvexType:
    """The type tree of a value schema written by :func:`json_schema` in any format (``path`` only names
    the place in errors)."""
    if schema is False:
        return NEVER
    if not isinstance(schema, dict):
        raise TypeMapError(f"expected a JSON Schema object{_where(path)}, got {type(schema).__name__}")
    if not schema:
        return ANY
    desc = schema.get("$description")
    if "anyOf" in schema:
        members = schema["anyOf"]
        if not isinstance(members, list):
            raise TypeMapError(f"anyOf must be a list{_where(path)}")
        if desc == _FLOAT64_DESC:
            return Float64Type(True)
        return union_of(type_from_json_schema(m, path) for m in members)
    kind = schema.get("type")
    if kind == "null":
        return NULL_T
    if kind == "boolean":
        return BOOLEAN_T
    if kind == "number":
        return INT64_T if desc == _INT64_DESC else Float64Type(False)
    if kind == "string":
        if desc == _INT64_CLEAN_DESC:
            return INT64_T
        if desc == _BYTES_DESC:
            return BYTES_T
        if isinstance(desc, str) and desc.startswith("Id(") and desc.endswith(")"):
            return IdType(desc[3:-1])
        return STRING_T
    if kind == "array":
        return ArrayType(type_from_json_schema(schema.get("items", {}), f"{path}[]"))
    if kind == "object":
        payload = _payload_property(schema)
        if payload == "$integer":
            return INT64_T
        if payload == "$bytes":
            return BYTES_T
        if payload == "$float":
            return Float64Type(True)
        if isinstance(schema.get("additionalProperties"), dict):
            return ANY  # v.record(...) in the deployed schema: keys are data, not fields
        return _object_from_schema(schema, path)
    raise TypeMapError(f"unsupported JSON Schema{_where(path)}: type {kind!r}")


def _object_from_schema(
    schema: dict[str, Any], path: str, *, skip: frozenset[str] = frozenset()
) -> ObjectType:
    props = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(props, dict) or not isinstance(required, list):
        raise TypeMapError(f"an object schema needs a properties object and a required list{_where(path)}")
    fields = [
        FieldType(name, type_from_json_schema(sub, f"{path}.{name}" if path else name), name not in required)
        for name, sub in sorted(props.items())
        if name not in skip
    ]
    return ObjectType(tuple(fields))


def table_type_from_json_schema(schema: Any, table_name: str | None = None) -> ObjectType:
    """The table tree of one table schema of ``json_schemas`` (any format, ``deltaSchema`` or not; the
    export metadata and Airbyte's ``_ab_cdc_*`` properties are ignored). ``_id`` and ``_creationTime`` get
    their system types; the table name comes from ``_id``'s ``Id(<table>)`` unless given."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise TypeMapError("a table schema must be a JSON Schema object of type object")
    skip = frozenset(EXPORT_METADATA_KEYS | {ID_FIELD, CREATION_TIME_FIELD})
    body = _object_from_schema(schema, "", skip=skip)
    user = [f for f in body.fields if not f.name.startswith("_ab_cdc")]
    if table_name is None:
        id_type = type_from_json_schema(schema.get("properties", {}).get(ID_FIELD, {}), ID_FIELD)
        if not isinstance(id_type, IdType):
            raise TypeMapError('the table schema has no "_id" of the form Id(<table>); pass the table name')
        table_name = id_type.table
    return table_type(table_name, user)


def table_types_from_json_schemas(response: Any, by_component: bool) -> dict[tuple[str, str], ObjectType]:
    """A whole ``json_schemas`` answer -> ``{(component path, table): table tree}``. The flat form
    (``byComponent=false``) has no component paths, so every key is ``("", table)`` there."""
    if not isinstance(response, dict):
        raise TypeMapError("a json_schemas answer must be a JSON object")
    groups = response if by_component else {"": response}
    out: dict[tuple[str, str], ObjectType] = {}
    for component, tables in groups.items():
        if not isinstance(tables, dict):
            raise TypeMapError(f"the json_schemas entry of component {component!r} must be a JSON object")
        for table, schema in tables.items():
            try:
                out[(component, table)] = table_type_from_json_schema(schema, table)
            except TypeMapError as e:
                raise TypeMapError(f"table {table!r}: {e}") from None
    return out


# --- tree -> ValidatorJson (streaming-import.md §11.3) ------------------------------------------------------

_VALIDATOR_SCALARS: Final = {
    _tags.NULL: "null",
    _tags.INT64: "bigint",
    _tags.BOOLEAN: "boolean",
    _tags.STRING: "string",
    _tags.BYTES: "bytes",
}


def validator_json(t: ConvexType) -> dict[str, Any]:
    """The ``ValidatorJson`` of type ``t`` ("never" is the empty union, as upstream writes it)."""
    if isinstance(t, ScalarType):
        return {"type": _VALIDATOR_SCALARS[t.tag]}
    if isinstance(t, Float64Type | CreationTimeType):
        return {"type": "number"}
    if isinstance(t, IdType):
        return {"type": "id", "tableName": t.table}
    if isinstance(t, ArrayType):
        return {"type": "array", "value": validator_json(t.items)}
    if isinstance(t, ObjectType):
        return {
            "type": "object",
            "value": {
                f.name: {"fieldType": validator_json(f.type), "optional": f.optional} for f in t.fields
            },
        }
    if isinstance(t, UnionType):
        return {"type": "union", "value": [validator_json(m) for m in t.members]}
    assert isinstance(t, AnyType)
    return {"type": "any"}
