"""The Convex type tree: what the type map reads, built from a table's shape or a ``json_schemas`` schema.

A tree is made of frozen nodes. Scalars (:class:`ScalarType`: null, int64, boolean, string, bytes),
:class:`Float64Type` (remembers whether NaN, ±inf or -0.0 were seen, which the JSON Schemas describe),
:class:`IdType` (``_id``), :class:`CreationTimeType` (``_creationTime``: a Float64 in milliseconds that every
target types as a timestamp), :class:`ArrayType`, :class:`ObjectType` (fields sorted by name, each optional
or not), :class:`UnionType` (two or more members in the Convex type order; no member is "never") and
:class:`AnyType` (unknown: a ``v.record`` or ``{}`` schema). A table is an :class:`ObjectType` whose fields
include ``_id`` and ``_creationTime``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from connectors.constants import CREATION_TIME_FIELD, ID_FIELD
from connectors.typemap import tags as _tags

__all__ = [
    "ANY",
    "BOOLEAN_T",
    "BYTES_T",
    "CREATION_TIME_T",
    "FLOAT64_T",
    "INT64_T",
    "NEVER",
    "NULL_T",
    "STRING_T",
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
    "value_fits",
    "widen",
    "widen_object",
]


class TypeMapError(ValueError):
    """A type or value the map cannot handle; the message names where and what, never a value."""


class ConvexType(abc.ABC):
    """Base of the type-tree nodes."""

    __slots__ = ()

    @property
    @abc.abstractmethod
    def rank(self) -> int:
        """Position in the Convex type order (for union member order)."""


_SCALAR_RANKS: Final = {_tags.NULL: 1, _tags.INT64: 2, _tags.BOOLEAN: 4, _tags.STRING: 5, _tags.BYTES: 6}


@dataclass(frozen=True, slots=True)
class ScalarType(ConvexType):
    tag: str  # one of tags.NULL, INT64, BOOLEAN, STRING, BYTES

    def __post_init__(self) -> None:
        if self.tag not in _SCALAR_RANKS:
            raise TypeMapError(f"not a scalar type tag: {self.tag!r}")

    @property
    def rank(self) -> int:
        return _SCALAR_RANKS[self.tag]


@dataclass(frozen=True, slots=True)
class Float64Type(ConvexType):
    special: bool = False  # NaN, +inf, -inf or -0.0 may occur

    @property
    def rank(self) -> int:
        return 3


@dataclass(frozen=True, slots=True)
class CreationTimeType(ConvexType):
    """``_creationTime``: Float64 milliseconds since the Unix epoch (values-and-ids.md §1)."""

    @property
    def rank(self) -> int:
        return 3


@dataclass(frozen=True, slots=True)
class IdType(ConvexType):
    table: str

    @property
    def rank(self) -> int:
        return 5


@dataclass(frozen=True, slots=True)
class ArrayType(ConvexType):
    items: ConvexType

    @property
    def rank(self) -> int:
        return 7


@dataclass(frozen=True, slots=True)
class FieldType:
    name: str
    type: ConvexType
    optional: bool = False


@dataclass(frozen=True, slots=True)
class ObjectType(ConvexType):
    fields: tuple[FieldType, ...] = ()

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if names != sorted(set(names)):
            raise TypeMapError("object fields must be unique and sorted by name")

    @property
    def rank(self) -> int:
        return 8

    def field(self, name: str) -> FieldType | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True, slots=True)
class UnionType(ConvexType):
    members: tuple[ConvexType, ...]  # () is "never"; otherwise 2 or more, in Convex order (use union_of)

    @property
    def rank(self) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class AnyType(ConvexType):
    @property
    def rank(self) -> int:
        return 9


NULL_T: Final = ScalarType(_tags.NULL)
INT64_T: Final = ScalarType(_tags.INT64)
FLOAT64_T: Final = Float64Type(False)
BOOLEAN_T: Final = ScalarType(_tags.BOOLEAN)
STRING_T: Final = ScalarType(_tags.STRING)
BYTES_T: Final = ScalarType(_tags.BYTES)
CREATION_TIME_T: Final = CreationTimeType()
ANY: Final = AnyType()
NEVER: Final = UnionType(())


def union_of(types: Iterable[ConvexType]) -> ConvexType:
    """The union of ``types``: nested unions flattened, duplicates removed, the Float64 "special" flags
    merged, members in Convex order; one member is returned as itself, none is :data:`NEVER`."""
    flat: list[ConvexType] = []
    for t in types:
        flat.extend(t.members if isinstance(t, UnionType) else (t,))
    if any(isinstance(t, AnyType) for t in flat):
        return ANY
    out: list[ConvexType] = []
    for t in flat:
        if isinstance(t, Float64Type):
            prev = next((i for i, o in enumerate(out) if isinstance(o, Float64Type)), None)
            if prev is not None:
                out[prev] = Float64Type(out[prev].special or t.special)  # type: ignore[attr-defined]
                continue
        if t not in out:
            out.append(t)
    out.sort(key=lambda t: t.rank)
    if len(out) == 1:
        return out[0]
    return UnionType(tuple(out))


def split_nullable(t: ConvexType) -> tuple[ConvexType | None, bool]:
    """``(inner, nullable)``: ``union(null, X)`` -> ``(X, True)``, ``null`` -> ``(None, True)``, else
    ``(t, False)``. ``inner`` may still be a union when more than one non-null member remains."""
    if t == NULL_T:
        return None, True
    if isinstance(t, UnionType) and NULL_T in t.members:
        rest = [m for m in t.members if m != NULL_T]
        return (rest[0] if len(rest) == 1 else UnionType(tuple(rest))), True
    return t, False


def table_type(table_name: str, user_fields: Iterable[FieldType] = ()) -> ObjectType:
    """A table's document type: ``user_fields`` plus ``_id`` (Id of the table) and ``_creationTime``."""
    fields = {f.name: f for f in user_fields if f.name not in (ID_FIELD, CREATION_TIME_FIELD)}
    fields[ID_FIELD] = FieldType(ID_FIELD, IdType(table_name))
    fields[CREATION_TIME_FIELD] = FieldType(CREATION_TIME_FIELD, CREATION_TIME_T)
    return ObjectType(tuple(fields[n] for n in sorted(fields)))


def widen(a: ConvexType, b: ConvexType) -> ConvexType:
    """The narrowest type holding every value of ``a`` and of ``b``, keeping structure where both agree.

    Objects merge field by field (a field missing on one side becomes optional), arrays merge their items,
    null stays a nullable member, anything else becomes the union of both (which a typed target may carry as
    JSON text). Used when values turn out not to fit the type decided from a shape read earlier."""
    if a == b or b == NEVER:
        return a
    if a == NEVER:
        return b
    inner_a, null_a = split_nullable(a)
    inner_b, null_b = split_nullable(b)
    if null_a or null_b:
        if inner_a is None or inner_b is None:
            inner = inner_b if inner_a is None else inner_a
        else:
            inner = widen(inner_a, inner_b)
        return NULL_T if inner is None else union_of([NULL_T, inner])
    if isinstance(a, ObjectType) and isinstance(b, ObjectType) and a.fields and b.fields:
        return widen_object(a, b)
    if isinstance(a, ArrayType) and isinstance(b, ArrayType):
        return ArrayType(widen(a.items, b.items))
    if isinstance(a, Float64Type) and isinstance(b, Float64Type):
        return Float64Type(a.special or b.special)
    return union_of([a, b])


def widen_object(a: ObjectType, b: ObjectType) -> ObjectType:
    """Field-by-field :func:`widen` of two objects (or two tables); a field on one side only is optional."""
    fa = {f.name: f for f in a.fields}
    fb = {f.name: f for f in b.fields}
    out: list[FieldType] = []
    for name in sorted(fa.keys() | fb.keys()):
        x, y = fa.get(name), fb.get(name)
        if x is None or y is None:
            present = x if y is None else y
            assert present is not None
            out.append(FieldType(name, present.type, True))
        else:
            out.append(FieldType(name, widen(x.type, y.type), x.optional or y.optional))
    return ObjectType(tuple(out))


def value_fits(value: object, t: ConvexType) -> bool:
    """Whether the Convex value ``value`` (``None`` = null) is a value of type ``t`` (no coercion: an Int64
    is not a Float64, a bool is not an Int64, an object with a field ``t`` lacks does not fit)."""
    if isinstance(t, AnyType):
        return True
    if isinstance(t, UnionType):
        return any(value_fits(value, m) for m in t.members)
    vt = type(value)
    if isinstance(t, ScalarType):
        return _PY_TYPES[t.tag] is vt
    if isinstance(t, Float64Type | CreationTimeType):
        return vt is float
    if isinstance(t, IdType):
        return vt is str
    if isinstance(t, ArrayType):
        return vt is list and all(value_fits(x, t.items) for x in value)  # type: ignore[attr-defined]
    if isinstance(t, ObjectType):
        if vt is not dict:
            return False
        names = {f.name for f in t.fields}
        if any(k not in names for k in value):  # type: ignore[attr-defined]
            return False
        for f in t.fields:
            if f.name in value:  # type: ignore[operator]
                if not value_fits(value[f.name], f.type):  # type: ignore[index]
                    return False
            elif not f.optional:
                return False
        return True
    return False


_PY_TYPES: Final[dict[str, type]] = {
    _tags.NULL: type(None),
    _tags.INT64: int,
    _tags.BOOLEAN: bool,
    _tags.STRING: str,
    _tags.BYTES: bytes,
}
