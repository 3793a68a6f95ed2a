"""Convex value types as tags: the tag of a Python value, the Convex type order and the type names.

Dependency-free (standard library only) because :mod:`connectors.values` and the engine's shape counter
import it on the write hot path. Value types follow ``values-and-ids.md`` §1: ``None``, ``int`` (Int64),
``float`` (Float64), ``bool``, ``str``, ``bytes``, ``list`` and ``dict``.
"""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = [
    "ARRAY",
    "BOOLEAN",
    "BYTES",
    "FLOAT64",
    "FLOAT64_SPECIAL",
    "INT64",
    "NULL",
    "OBJECT",
    "SCALAR_TAGS",
    "STRING",
    "TAGS",
    "TYPE_RANK",
    "UNION_ORDER",
    "is_normal_float",
    "value_tag",
    "value_type_name",
]

NULL: Final = "null"
INT64: Final = "int64"
FLOAT64: Final = "float64"  # finite and not -0.0 (0.0 included)
FLOAT64_SPECIAL: Final = "float64_special"  # NaN, +inf, -inf, -0.0
BOOLEAN: Final = "boolean"
STRING: Final = "string"
BYTES: Final = "bytes"
ARRAY: Final = "array"
OBJECT: Final = "object"

#: Every tag, in the Convex type order; float64 and float64_special describe one Float64 type.
TAGS: Final[tuple[str, ...]] = (NULL, INT64, FLOAT64, FLOAT64_SPECIAL, BOOLEAN, STRING, BYTES, ARRAY, OBJECT)
#: The Convex type order of union members (the two float tags form one member).
UNION_ORDER: Final[tuple[str, ...]] = (NULL, INT64, FLOAT64, BOOLEAN, STRING, BYTES, ARRAY, OBJECT)

#: Python value type -> its rank in the Convex total order (values-and-ids.md; 0 is kept for "missing").
TYPE_RANK: Final[dict[type, int]] = {
    type(None): 1,
    int: 2,
    float: 3,
    bool: 4,
    str: 5,
    bytes: 6,
    list: 7,
    dict: 8,
}

#: Tags found by exact type; bool is its own type, so True never counts as int64.
SCALAR_TAGS: Final[dict[type, str]] = {type(None): NULL, bool: BOOLEAN, int: INT64, str: STRING, bytes: BYTES}

_TYPE_NAMES: Final[dict[type, str]] = {**SCALAR_TAGS, float: FLOAT64, list: ARRAY, dict: OBJECT}
_copysign = math.copysign


def is_normal_float(x: float) -> bool:
    """Finite and not -0.0: the floats every JSON format writes as a plain number."""
    # x - x is 0.0 only for finite x; a zero is "normal" unless its sign bit is set.
    return x - x == 0.0 and (x != 0.0 or _copysign(1.0, x) > 0.0)


def value_tag(value: Any) -> str:
    """The type tag of one value (containers are not walked)."""
    t = type(value)
    tag = SCALAR_TAGS.get(t)
    if tag is not None:
        return tag
    if t is float:
        return FLOAT64 if is_normal_float(value) else FLOAT64_SPECIAL
    if t is dict:
        return OBJECT
    if t is list:
        return ARRAY
    raise TypeError(f"unsupported value type {t.__name__}")


def value_type_name(value: Any) -> str:
    """The Convex type name of a Python value (types only, for error messages; never the value)."""
    t = type(value)
    return _TYPE_NAMES.get(t, t.__name__)
