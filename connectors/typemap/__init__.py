"""The one type map: how a Convex type (and a table's inferred shape) becomes each target's type, and back.

Light modules (no third-party imports; the engine's write path and :mod:`connectors.values` use them):

* :mod:`~connectors.typemap.tags`: value tags, the Convex type order, type names.
* :mod:`~connectors.typemap.tree`: the type tree (``TableShape.type_tree`` builds one).

Targets, imported by their consumers (so the engine never loads pyarrow or fastavro):

* :mod:`~connectors.typemap.jsonschema`: ``json_schemas`` JSON Schema per format, and back; ``ValidatorJson``.
* :mod:`~connectors.typemap.fivetran`: Fivetran ``DataType``, ``ValueType`` members, CSV cells -> Convex,
  validators <-> Fivetran types.
* :mod:`~connectors.typemap.airbyte`: Airbyte stream schemas and record values, Airbyte JSON -> Convex.
* :mod:`~connectors.typemap.arrow`, :mod:`~connectors.typemap.avro`: snapshot-export schemas and converters.
* :mod:`~connectors.typemap.jsontext`: the one rule for values a target cannot type (JSON text, marked).
* :mod:`~connectors.typemap.legacy_shape`: the legacy backup ZIP's shape syntax.
* :mod:`~connectors.typemap.markdown`: the mapping table for the READMEs, generated from the map.
"""

from connectors.typemap.tags import TYPE_RANK, value_tag, value_type_name
from connectors.typemap.tree import (
    ANY,
    NEVER,
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
    split_nullable,
    table_type,
    union_of,
)

__all__ = [
    "ANY",
    "NEVER",
    "TYPE_RANK",
    "AnyType",
    "ArrayType",
    "ConvexType",
    "CreationTimeType",
    "FieldType",
    "Float64Type",
    "IdType",
    "ObjectType",
    "ScalarType",
    "TypeMapError",
    "UnionType",
    "split_nullable",
    "table_type",
    "union_of",
    "value_tag",
    "value_type_name",
]
