"""Exact table shapes maintained from per-(path, type) counts.

The storage engine keeps, per table, a counter ``(path_key, type_tag) -> count`` that every write updates
through :func:`add_shape_counts` (insert ``+1``, delete ``-1``, replace ``-1`` old ``+1`` new). Because the
counts are exact, a field that only a deleted document had disappears, and a field becomes optional exactly
while some live object lacks it. :class:`TableShape` turns the counts into a type tree
(:meth:`TableShape.type_tree`, read by :mod:`connectors.typemap`, which renders ``json_schemas``
(``streaming-export.md`` §6) and the inferred ``ValidatorJson`` (``streaming-import.md`` §11.3) from it) and
answers ``get_table_column_names`` (§10), without scanning documents. Type tags and their order are the
type map's (:mod:`connectors.typemap.tags`).

Path keys: the document is ``""``; field ``f`` of the object at path ``P`` is ``P + "\\x00" + f``; the
elements of the array at path ``P`` share the key ``P + "\\x01"``. Field names never contain control
characters (``values-and-ids.md`` §6.3), so the encoding is unambiguous.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from connectors.constants import CREATION_TIME_FIELD, ID_FIELD
from connectors.typemap import tree as _tree
from connectors.typemap.jsonschema import normalize_format, table_json_schema, validator_json
from connectors.typemap.tags import (
    ARRAY,
    BOOLEAN,
    BYTES,
    FLOAT64,
    FLOAT64_SPECIAL,
    INT64,
    NULL,
    OBJECT,
    SCALAR_TAGS,
    STRING,
    TAGS,
    UNION_ORDER,
    is_normal_float,
    value_tag,
)

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

ShapeKey = tuple[str, str]

_ROOT_KEY: ShapeKey = ("", OBJECT)
# Tags and the float test come from the type map; local names keep the hot loops to one global lookup.
_SCALAR_TAGS = SCALAR_TAGS
_is_normal_float = is_normal_float
_copysign = math.copysign


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


# Scalar tags -> type-tree nodes (the two float tags are folded by ``_value_type``).
_SCALAR_TYPES: dict[str, _tree.ConvexType] = {
    NULL: _tree.NULL_T,
    INT64: _tree.INT64_T,
    BOOLEAN: _tree.BOOLEAN_T,
    STRING: _tree.STRING_T,
    BYTES: _tree.BYTES_T,
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

    # --- the type tree ---------------------------------------------------------------------------------

    def type_tree(self, table_name: str) -> _tree.ObjectType:
        """The table's document type for the type map: user fields from the counts, ``_id`` as
        ``Id(table_name)`` and ``_creationTime`` as its system type (both always present)."""
        user = self._object_type("").fields if self.document_count else ()
        return _tree.table_type(table_name, user)

    def _value_type(self, path: str) -> _tree.ConvexType:
        tags = self._tags.get(path)
        if not tags:
            return _tree.NEVER  # e.g. the items of arrays that were always empty
        members: list[_tree.ConvexType] = []
        for tag in UNION_ORDER:
            if tag == FLOAT64:
                if FLOAT64 in tags or FLOAT64_SPECIAL in tags:
                    members.append(_tree.Float64Type(FLOAT64_SPECIAL in tags))
            elif tag == ARRAY:
                if ARRAY in tags:
                    members.append(_tree.ArrayType(self._value_type(path + ELEMENTS_SEP)))
            elif tag == OBJECT:
                if OBJECT in tags:
                    members.append(self._object_type(path))
            elif tag in tags:
                members.append(_SCALAR_TYPES[tag])
        # Members are already in Convex order and distinct.
        return members[0] if len(members) == 1 else _tree.UnionType(tuple(members))

    def _object_type(self, path: str) -> _tree.ObjectType:
        return _tree.ObjectType(
            tuple(
                _tree.FieldType(name, self._value_type(child), optional)
                for name, child, optional in self._fields(path)
            )
        )

    # --- JSON Schema and ValidatorJson (rendered by the type map) ----------------------------------------

    def json_schema(self, table_name: str, fmt: Any, delta_schema: bool = False) -> dict[str, Any]:
        """The table's JSON Schema for ``GET /api/json_schemas`` (streaming-export.md §6.2/§6.3)."""
        normalize_format(fmt)  # a bad format fails before any work
        return table_json_schema(self.type_tree(table_name), fmt, delta_schema)

    def validator_json(self, table_name: str | None = None) -> dict[str, Any]:
        """The inferred shape as a ``ValidatorJson`` object validator (streaming-import.md §11.3).

        Without ``table_name`` only user fields are described (what a deployed ``schema.ts`` holds, since
        top-level system fields are filtered from document types). With it, ``_id`` (``v.id(table_name)``)
        and ``_creationTime`` (``v.float64()``) are included as required fields.
        """
        if table_name is not None:
            return validator_json(self.type_tree(table_name))
        user = self._object_type("").fields if self.document_count else ()
        system = (ID_FIELD, CREATION_TIME_FIELD)
        return validator_json(_tree.ObjectType(tuple(f for f in user if f.name not in system)))

    def __repr__(self) -> str:
        return f"TableShape(documents={self.document_count}, paths={len(self._tags)})"
