"""Does a page of documents fit the types decided from the table's shape? Checked column by column.

The shape is read before the snapshot is pinned, so a document written in between may hold a value its
column's type does not describe (an Int64 in a Float64 column would even be silently converted by Arrow).
Every page is checked before it is written; a page that does not fit makes the exporter widen the table's
type (:func:`connectors.typemap.tree.widen_object`) and retype what it already wrote.

The check is column-wise (``set(map(type, column))`` runs in C): a few tens of nanoseconds per value, the
nested ones included (an array column checks the flattened items, an object column its fields).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any, Final

from connectors.typemap.jsontext import needs_json_text
from connectors.typemap.tree import (
    ArrayType,
    ConvexType,
    CreationTimeType,
    FieldType,
    Float64Type,
    IdType,
    ObjectType,
    ScalarType,
    UnionType,
    split_nullable,
)

__all__ = ["MISSING", "ColumnCheck", "table_check"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
_LIST_ONLY: Final = {list}
_MISSING_T: Final = type(MISSING)
_NONE_T: Final = type(None)
_SCALAR_PY: Final = {"null": _NONE_T, "int64": int, "boolean": bool, "string": str, "bytes": bytes}

ColumnCheck = Callable[[list[Any]], bool]
"""Checks a column of values (``MISSING`` where a document lacks the field): True if every value fits."""


def _always(_col: list[Any]) -> bool:
    return True


def column_check(t: ConvexType, optional: bool) -> ColumnCheck:
    """The check of one column of type ``t`` (``optional``: the field may be missing)."""
    inner, nullable = split_nullable(t)
    allowed: set[type] = set()
    if nullable:
        allowed.add(_NONE_T)
    if optional:
        allowed.add(_MISSING_T)
    if needs_json_text(t):
        # Carried as JSON text: any value is written; only null/missing must be allowed.
        if isinstance(inner, UnionType):
            allowed.update(_py_types(m) for m in inner.members if not isinstance(m, ArrayType | ObjectType))
            if any(isinstance(m, ArrayType) for m in inner.members):
                allowed.add(list)
            if any(isinstance(m, ObjectType) for m in inner.members):
                allowed.add(dict)
        else:
            allowed.update((int, float, bool, str, bytes, list, dict))
        frozen = frozenset(allowed)
        return lambda col: set(map(type, col)) <= frozen
    if inner is None:
        frozen = frozenset(allowed)
        return lambda col: set(map(type, col)) <= frozen
    if isinstance(inner, ArrayType):
        allowed.add(list)
        frozen = frozenset(allowed)
        items = column_check(inner.items, False)

        def check_array(col: list[Any]) -> bool:
            types = set(map(type, col))
            if not types <= frozen:
                return False
            arrays = col if types == _LIST_ONLY else [v for v in col if type(v) is list]
            return items(list(chain.from_iterable(arrays)))

        return check_array
    if isinstance(inner, ObjectType):
        allowed.add(dict)
        frozen = frozenset(allowed)
        fields = object_check(inner.fields)

        def check_object(col: list[Any]) -> bool:
            if not set(map(type, col)) <= frozen:
                return False
            return fields([v for v in col if type(v) is dict])

        return check_object
    allowed.add(_py_types(inner))
    frozen = frozenset(allowed)
    return lambda col: set(map(type, col)) <= frozen


def _py_types(t: ConvexType) -> type:
    if isinstance(t, ScalarType):
        return _SCALAR_PY[t.tag]
    if isinstance(t, Float64Type | CreationTimeType):
        return float
    if isinstance(t, IdType):
        return str
    raise TypeError(f"not a scalar type: {t!r}")  # never: callers pass scalars only


def object_check(fields: tuple[FieldType, ...]) -> Callable[[list[dict[str, Any]]], bool]:
    """The check of a list of objects with these fields (no other key allowed)."""
    names = frozenset(f.name for f in fields)
    checks = [(f.name, column_check(f.type, f.optional)) for f in fields]

    def check(objs: list[dict[str, Any]]) -> bool:
        if not objs:
            return True
        if not set().union(*objs) <= names:
            return False
        return all(column([o.get(name, MISSING) for o in objs]) for name, column in checks)

    return check


PageColumns = dict[str, list[Any]]
"""A page cut into columns: field name -> the field's value in each document (``None`` when missing)."""


def page_columns(table: ObjectType, docs: list[dict[str, Any]]) -> PageColumns:
    """Cut a page into the columns of ``table`` (each list is read once and shared by check and writer)."""
    return {f.name: [d.get(f.name) for d in docs] for f in table.fields}


def table_check(table: ObjectType) -> Callable[[list[dict[str, Any]], PageColumns], bool]:
    """The check of a page of documents of a table tree, given its :func:`page_columns`.

    Top-level columns hold ``None`` for a missing field as well as for null; where the two differ (a field
    optional but not nullable, or nullable but not optional) the documents themselves decide."""
    names = frozenset(f.name for f in table.fields)
    checks = []
    for f in table.fields:
        nullable = split_nullable(f.type)[1]
        scalar = _top_level_types(f.type)
        nested = None if scalar is not None else column_check(f.type, True)
        checks.append((f.name, scalar, nested, f.optional, nullable))

    def check(docs: list[dict[str, Any]], columns: PageColumns) -> bool:
        if not docs:
            return True
        if not set().union(*docs) <= names:
            return False
        for name, scalar, nested, optional, nullable in checks:
            col = columns[name]
            if scalar is not None:
                types = set(map(type, col))
                if not types <= scalar:
                    return False
                has_none = _NONE_T in types
            else:
                has_none = None in col
                if not nested([v for v in col if v is not None]):  # type: ignore[misc]
                    return False
            if not has_none or (optional and nullable):
                continue
            if not optional and not nullable:
                return False
            if optional:  # not nullable: every None must be a missing field
                if any(name in d for d, v in zip(docs, col, strict=True) if v is None):
                    return False
            elif any(name not in d for d, v in zip(docs, col, strict=True) if v is None):
                return False  # nullable, not optional: every None must be a null
        return True

    return check


def _top_level_types(t: ConvexType) -> frozenset[type] | None:
    """The Python types of a column whose values are scalars (``NoneType`` included), None when nested."""
    inner, _nullable = split_nullable(t)
    out: set[type] = {_NONE_T}
    if inner is None:
        return frozenset(out)
    if needs_json_text(t) and not isinstance(inner, UnionType):
        return None  # any value at all: the nested check (which accepts everything) decides
    members = inner.members if isinstance(inner, UnionType) else (inner,)
    for m in members:
        if isinstance(m, ArrayType | ObjectType):
            return None
        out.add(_py_types(m))
    return frozenset(out)
