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
