"""Exact table shapes maintained from per-(path, type) counts.

The storage engine keeps, per table, a counter ``(path_key, type_tag) -> count`` that every write updates
through :func:`add_shape_counts` (insert ``+1``, delete ``-1``, replace ``-1`` old ``+1`` new). Because the
counts are exact, a field that only a deleted document had disappears, and a field becomes optional exactly
while some live object lacks it. :class:`TableShape` turns the counts into the answers of
``json_schemas`` (``streaming-export.md`` §6), ``get_table_column_names`` (§10) and an inferred
``ValidatorJson`` (``streaming-import.md`` §11.3) without scanning documents.

Path keys: the document is ``""``; field ``f`` of the object at path ``P`` is ``P + "\\x00" + f``; the
elements of the array at path ``P`` share the key ``P + "\\x01"``. Field names never contain control
characters (``values-and-ids.md`` §6.3), so the encoding is unambiguous.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from connectors.errors import BadRequestError

__all__ = [
    "ELEMENTS_SEP",
    "FIELD_SEP",
    "TAGS",
    "ShapeKey",
    "TableShape",
    "add_shape_counts",
    "normalize_format",
    "shape_counts",
    "value_tag",
]

FIELD_SEP = "\x00"
ELEMENTS_SEP = "\x01"

NULL = "null"
INT64 = "int64"
FLOAT64 = "float64"  # finite and not -0.0 (0.0 included)
FLOAT64_SPECIAL = "float64_special"  # NaN, +inf, -inf, -0.0
BOOLEAN = "boolean"
STRING = "string"
BYTES = "bytes"
ARRAY = "array"
OBJECT = "object"

#: Every tag, in the Convex type order; float64 and float64_special describe one Float64 type.
TAGS: tuple[str, ...] = (NULL, INT64, FLOAT64, FLOAT64_SPECIAL, BOOLEAN, STRING, BYTES, ARRAY, OBJECT)

ShapeKey = tuple[str, str]

_ROOT_KEY: ShapeKey = ("", OBJECT)
# Tags found by exact type; bool is its own type, so True never counts as int64.
_SCALAR_TAGS: dict[type, str] = {type(None): NULL, bool: BOOLEAN, int: INT64, str: STRING, bytes: BYTES}
_copysign = math.copysign


def value_tag(value: Any) -> str:
    """The type tag of one value (containers are not walked)."""
    t = type(value)
    tag = _SCALAR_TAGS.get(t)
    if tag is not None:
        return tag
    if t is float:
        return FLOAT64 if _is_normal_float(value) else FLOAT64_SPECIAL
    if t is dict:
        return OBJECT
    if t is list:
        return ARRAY
    raise TypeError(f"unsupported value type {t.__name__}")


def _is_normal_float(x: float) -> bool:
    # x - x is 0.0 only for finite x; a zero is "normal" unless its sign bit is set.
    return x - x == 0.0 and (x != 0.0 or _copysign(1.0, x) > 0.0)


def add_shape_counts(doc: dict[str, Any], sign: int, counts: MutableMapping[ShapeKey, int]) -> None:
    """Add ``sign`` to ``counts[(path_key, tag)]`` for the document and every value inside it.

    Entries that reach zero are removed so the counter does not accumulate stale paths. Hot path (one call
    per written document): plain loops, no per-value allocation beyond the path strings and tuple keys.
    """
    get = counts.get
    n = get(_ROOT_KEY, 0) + sign
    if n:
        counts[_ROOT_KEY] = n
    else:
        del counts[_ROOT_KEY]
    _add_object(doc, FIELD_SEP, sign, counts, get)


def _add_object(obj: dict[str, Any], prefix: str, sign: int, counts: Any, get: Any) -> None:
    # ``prefix`` is the object's path plus FIELD_SEP, so each field costs a single concatenation.
    for k, v in obj.items():
        p = prefix + k
        t = type(v)
        # The common scalar types first; the rest via one dict lookup.
        if t is str:
            key = (p, STRING)
        elif t is float:
            key = (p, FLOAT64 if (v - v == 0.0 and (v or _copysign(1.0, v) > 0.0)) else FLOAT64_SPECIAL)
        else:
            tag = _SCALAR_TAGS.get(t)
            if tag is None:
                if t is dict:
                    tag = OBJECT
                    _add_object(v, p + FIELD_SEP, sign, counts, get)
                elif t is list:
                    tag = ARRAY
                    _add_array(v, p + ELEMENTS_SEP, sign, counts, get)
                else:
                    tag = _slow_tag(v, p, sign, counts, get)
            key = (p, tag)
        n = get(key, 0) + sign
        if n:
            counts[key] = n
        else:
            del counts[key]


def _add_array(arr: list[Any], p: str, sign: int, counts: Any, get: Any) -> None:
    # All elements share the path key ``p`` (the array's path plus ELEMENTS_SEP).
    for v in arr:
        t = type(v)
        if t is str:
            key = (p, STRING)
        elif t is float:
            key = (p, FLOAT64 if (v - v == 0.0 and (v or _copysign(1.0, v) > 0.0)) else FLOAT64_SPECIAL)
        else:
            tag = _SCALAR_TAGS.get(t)
            if tag is None:
                if t is dict:
                    tag = OBJECT
                    _add_object(v, p + FIELD_SEP, sign, counts, get)
                elif t is list:
                    tag = ARRAY
                    _add_array(v, p + ELEMENTS_SEP, sign, counts, get)
                else:
                    tag = _slow_tag(v, p, sign, counts, get)
            key = (p, tag)
        n = get(key, 0) + sign
        if n:
            counts[key] = n
        else:
            del counts[key]


def _slow_tag(v: Any, p: str, sign: int, counts: Any, get: Any) -> str:
    """Subclasses of the value types (rare; e.g. an ``IntEnum`` or a ``str`` subclass)."""
    if isinstance(v, bool):
        return BOOLEAN
    if isinstance(v, int):
        return INT64
    if isinstance(v, float):
        return FLOAT64 if _is_normal_float(v) else FLOAT64_SPECIAL
    if isinstance(v, str):
        return STRING
    if isinstance(v, bytes | bytearray | memoryview):
        return BYTES
    if isinstance(v, Mapping):
        _add_object(dict(v), p + FIELD_SEP, sign, counts, get)
        return OBJECT
    if isinstance(v, list | tuple):
        _add_array(list(v), p + ELEMENTS_SEP, sign, counts, get)
        return ARRAY
    # Only the type name: never echo a value.
    raise TypeError(f"unsupported value type {type(v).__name__}")


def shape_counts(docs: Iterable[dict[str, Any]]) -> dict[ShapeKey, int]:
    """The counts of a set of documents, computed from scratch."""
    counts: dict[ShapeKey, int] = {}
    for doc in docs:
        add_shape_counts(doc, 1, counts)
    return counts


# --- JSON Schema fragments (values-and-ids.md §3, streaming-export.md §6.3) -----------------------------

_FMT_JSON = "json"
_FMT_ENCODED = "convex_encoded_json"
_FMT_EXPORT = "export_json"
_FORMAT_ALIASES = {
    "json": _FMT_JSON,
    "convex_clean_json": _FMT_JSON,
    "convex_encoded_json": _FMT_ENCODED,
    "convex_json": _FMT_ENCODED,
    "export_json": _FMT_EXPORT,
}

JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"


def normalize_format(fmt: Any) -> str:
    """``ValueFormat`` member or its string (legacy aliases included) -> canonical format string."""
    value = getattr(fmt, "value", fmt)
    canonical = _FORMAT_ALIASES.get(value) if isinstance(value, str) else None
    if canonical is None:
        raise BadRequestError("BadFormat", f"format param must be one of [`json`]. Got {value}")
    return canonical


def _int64_schema(fmt: str) -> dict[str, Any]:
    if fmt == _FMT_JSON:
        return {"$description": "int64 represented as base10 string", "type": "string"}
    if fmt == _FMT_ENCODED:
        return {
            "$description": "int64",
            "type": "object",
            "properties": {
                "$integer": {"$description": "int64 -> little-endian -> base64", "type": "string"}
            },
        }
    return {"$description": "int64", "type": "number"}


def _float64_schema(fmt: str, special: bool) -> dict[str, Any]:
    if not special:
        return {"type": "number"}
    if fmt == _FMT_JSON:
        return {
            "$description": "float64",
            "anyOf": [{"type": "number"}, {"type": "string", "$description": "-inf, inf, or NaN"}],
        }
    # export_json writes -0.0 as a plain number, hence the shorter description (values-and-ids.md §3).
    desc = "-0, -inf, inf, or NaN" if fmt == _FMT_ENCODED else "-inf, inf, or NaN"
    return {
        "$description": "float64",
        "anyOf": [
            {"type": "number"},
            {
                "type": "object",
                "$description": desc,
                "properties": {
                    "$float": {"$description": "float64 -> little-endian -> base64", "type": "string"}
                },
            },
        ],
    }


def _bytes_schema(fmt: str) -> dict[str, Any]:
    if fmt == _FMT_JSON:
        return {"$description": "base64 bytes", "type": "string"}
    return {"type": "object", "$description": "base64 bytes", "properties": {"$bytes": {"type": "string"}}}


def _id_schema(table_name: str) -> dict[str, Any]:
    return {"$description": f"Id({table_name})", "type": "string"}


_DELTA_PROPERTIES: dict[str, dict[str, str]] = {
    "_table": {"type": "string"},
    "_component": {"type": "string"},
    "_ts": {"type": "integer"},
    "_deleted": {"type": "boolean"},
}

# Type order for unions (Convex order; the two float tags form one member).
_UNION_ORDER = (NULL, INT64, FLOAT64, BOOLEAN, STRING, BYTES, ARRAY, OBJECT)

_VALIDATOR_SCALARS = {
    NULL: {"type": "null"},
    INT64: {"type": "bigint"},
    FLOAT64: {"type": "number"},
    BOOLEAN: {"type": "boolean"},
    STRING: {"type": "string"},
    BYTES: {"type": "bytes"},
}


class TableShape:
    """The inferred shape of one table, derived from its ``(path_key, tag) -> count`` counter."""

    __slots__ = ("_children", "_tags")

    def __init__(self, tags: dict[str, dict[str, int]], children: dict[str, list[str]]) -> None:
        self._tags = tags  # path -> {tag: count > 0}; float64_special folded in by the readers
        self._children = children  # object path -> sorted field names

    @classmethod
    def from_counts(cls, counts: Mapping[ShapeKey, int]) -> TableShape:
        tags: dict[str, dict[str, int]] = {}
        for (path, tag), n in counts.items():
            if n > 0:
                tags.setdefault(path, {})[tag] = n
        children: dict[str, list[str]] = {}
        for path in tags:
            if not path or path[-1] == ELEMENTS_SEP:
                continue
            # Field names contain no control characters, so the last FIELD_SEP starts the field name.
            i = path.rfind(FIELD_SEP)
            children.setdefault(path[:i], []).append(path[i + 1 :])
        for names in children.values():
            names.sort()
        return cls(tags, children)

    @classmethod
    def from_documents(cls, docs: Iterable[dict[str, Any]]) -> TableShape:
        return cls.from_counts(shape_counts(docs))

    # --- basic facts --------------------------------------------------------------------------------

    @property
    def document_count(self) -> int:
        return self._tags.get("", {}).get(OBJECT, 0)

    def _count(self, path: str) -> int:
        return sum(self._tags.get(path, {}).values())

    def _fields(self, path: str) -> list[tuple[str, str, bool]]:
        """(name, child path, optional) of the object at ``path``: a field is optional iff fewer values
        exist at its path than objects at its parent path."""
        objects = self._tags.get(path, {}).get(OBJECT, 0)
        out = []
        for name in self._children.get(path, ()):
            child = path + FIELD_SEP + name
            n = self._count(child)
            if n > 0:
                out.append((name, child, n < objects))
        return out

    def top_level_fields(self) -> list[str]:
        """Sorted top-level field names (``get_table_column_names``); always includes the system fields."""
        if self.document_count == 0:
            return ["_creationTime", "_id"]
        names = {name for name, _, _ in self._fields("")}
        names.update(("_creationTime", "_id"))
        return sorted(names)

    # --- JSON Schema ------------------------------------------------------------------------------------

    def json_schema(self, table_name: str, fmt: Any, delta_schema: bool = False) -> dict[str, Any]:
        """The table's JSON Schema for ``GET /api/json_schemas`` (streaming-export.md §6.2/§6.3)."""
        f = normalize_format(fmt)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, child, optional in self._fields("") if self.document_count else ():
            properties[name] = self._value_schema(child, f)
            if not optional:
                required.append(name)
        # System fields have fixed schemas and are always present.
        properties["_id"] = _id_schema(table_name)
        properties["_creationTime"] = {"type": "number"}
        required = sorted(set(required) | {"_id", "_creationTime"})
        properties = dict(sorted(properties.items()))
        if delta_schema:
            properties.update(_DELTA_PROPERTIES)
        return {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
            "required": required,
            "$schema": JSON_SCHEMA_DRAFT,
        }

    def _value_schema(self, path: str, fmt: str) -> Any:
        tags = self._tags.get(path)
        if not tags:
            return False  # "never": e.g. the items of arrays that were always empty
        members: list[Any] = []
        for tag in _UNION_ORDER:
            if tag == FLOAT64:
                if FLOAT64 in tags or FLOAT64_SPECIAL in tags:
                    members.append(_float64_schema(fmt, FLOAT64_SPECIAL in tags))
            elif tag in tags:
                members.append(self._tag_schema(path, tag, fmt))
        return members[0] if len(members) == 1 else {"anyOf": members}

    def _tag_schema(self, path: str, tag: str, fmt: str) -> Any:
        if tag == NULL:
            return {"type": "null"}
        if tag == INT64:
            return _int64_schema(fmt)
        if tag == BOOLEAN:
            return {"type": "boolean"}
        if tag == STRING:
            return {"type": "string"}
        if tag == BYTES:
            return _bytes_schema(fmt)
        if tag == ARRAY:
            return {"type": "array", "items": self._value_schema(path + ELEMENTS_SEP, fmt)}
        # OBJECT (nested objects carry no "$schema")
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, child, optional in self._fields(path):
            properties[name] = self._value_schema(child, fmt)
            if not optional:
                required.append(name)
        return {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
            "required": required,
        }

    # --- ValidatorJson ------------------------------------------------------------------------------------

    def validator_json(self, table_name: str | None = None) -> dict[str, Any]:
        """The inferred shape as a ``ValidatorJson`` object validator (streaming-import.md §11.3).

        Without ``table_name`` only user fields are described (what a deployed ``schema.ts`` holds, since
        top-level system fields are filtered from document types). With it, ``_id`` (``v.id(table_name)``)
        and ``_creationTime`` (``v.float64()``) are included as required fields.
        """
        fields: dict[str, Any] = {}
        if self.document_count:
            for name, child, optional in self._fields(""):
                if name in ("_id", "_creationTime"):
                    continue
                fields[name] = {"fieldType": self._value_validator(child), "optional": optional}
        if table_name is not None:
            fields["_id"] = {"fieldType": {"type": "id", "tableName": table_name}, "optional": False}
            fields["_creationTime"] = {"fieldType": {"type": "number"}, "optional": False}
            fields = dict(sorted(fields.items()))
        return {"type": "object", "value": fields}

    def _value_validator(self, path: str) -> dict[str, Any]:
        tags = self._tags.get(path)
        members: list[dict[str, Any]] = []
        if tags:
            for tag in _UNION_ORDER:
                if tag == FLOAT64:
                    if FLOAT64 in tags or FLOAT64_SPECIAL in tags:
                        members.append({"type": "number"})
                elif tag in tags:
                    members.append(self._tag_validator(path, tag))
        # No member ("never", e.g. items of always-empty arrays) is the empty union, as upstream does.
        return members[0] if len(members) == 1 else {"type": "union", "value": members}

    def _tag_validator(self, path: str, tag: str) -> dict[str, Any]:
        if tag == ARRAY:
            return {"type": "array", "value": self._value_validator(path + ELEMENTS_SEP)}
        if tag == OBJECT:
            return {
                "type": "object",
                "value": {
                    name: {"fieldType": self._value_validator(child), "optional": optional}
                    for name, child, optional in self._fields(path)
                },
            }
        return dict(_VALIDATOR_SCALARS[tag])

    def __repr__(self) -> str:
        return f"TableShape(documents={self.document_count}, paths={len(self._tags)})"
