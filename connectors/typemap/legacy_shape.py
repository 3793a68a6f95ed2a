"""The legacy backup ZIP's shape syntax: ``generated_schema.jsonl`` of ``GeneratedSchema::LegacyInferred``.

The first line of a legacy table's ``generated_schema.jsonl`` holds the table's inferred shape in the syntax
of ``crates/shape_inference/src/pretty.rs`` (``{"_id": id<10001>, "n": int64 | string}``, ``array<..>``,
``record<k, v>``, ``"literal"``, ``unknown`` ...). :func:`parse_legacy_shape` reads it; the helpers tell the
backup importer which shapes a nested value may have and how a clean-JSON string under them must be read
(``export_context.rs``); :func:`legacy_shape_type` turns a shape into the type map's tree.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

from connectors.typemap import tree as _tree
from connectors.typemap.tree import TypeMapError

__all__ = [
    "UNKNOWN_SHAPE",
    "LegacyShape",
    "LegacyShapeError",
    "array_element_shapes",
    "inferred_string_context",
    "legacy_shape_type",
    "object_field_shapes",
    "parse_legacy_shape",
    "shape_options",
]


class LegacyShapeError(TypeMapError):
    """The shape text cannot be parsed; the message gives the character position."""


# Legacy shapes: tuples whose first item is the kind. ("object", {field: shape}, optional names), ("array", elem),
# ("record", key, value), ("set", elem), ("map", key, value), ("union", (shape, ...)), else (kind,).
LegacyShape: TypeAlias = tuple[Any, ...]

_SHAPE_UNITS: Final = (
    "never",
    "null",
    "int64",
    "float64",
    "-inf",
    "inf",
    "NaN",
    "normalfloat64",
    "boolean",
    "field_name",
    "string",
    "bytes",
    "unknown",
    "-0",
)
UNKNOWN_SHAPE: Final[LegacyShape] = ("unknown",)


class _Parser:
    """Parses the shape syntax of ``shape_inference/src/pretty.rs`` (the inverse of its Display)."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def parse(self) -> LegacyShape:
        shape = self.union()
        if self.i != len(self.s):
            raise LegacyShapeError(f"cannot parse the shape at character {self.i}")
        return shape

    def expect(self, token: str) -> None:
        if not self.s.startswith(token, self.i):
            raise LegacyShapeError(f"cannot parse the shape at character {self.i}: expected {token!r}")
        self.i += len(token)

    def until(self, token: str) -> str:
        j = self.s.find(token, self.i)
        if j < 0:
            raise LegacyShapeError(f"cannot parse the shape at character {self.i}: expected {token!r}")
        out = self.s[self.i : j]
        self.i = j + len(token)
        return out

    def union(self) -> LegacyShape:
        options = [self.single()]
        while self.s.startswith(" | ", self.i):
            self.i += 3
            options.append(self.single())
        return options[0] if len(options) == 1 else ("union", tuple(options))

    def single(self) -> LegacyShape:
        s, i = self.s, self.i
        for unit in _SHAPE_UNITS:
            if s.startswith(unit, i):
                self.i += len(unit)
                return (unit,)
        if s.startswith("{", i):
            self.i += 1
            fields: dict[str, LegacyShape] = {}
            optional: set[str] = set()
            while not self.s.startswith("}", self.i):
                key = self.until(": ")
                if key.endswith("?"):
                    key = key[:-1]
                    optional.add(key[1:-1])
                if len(key) < 2 or key[0] != '"' or key[-1] != '"':
                    raise LegacyShapeError(f"cannot parse an object key in the shape at character {self.i}")
                fields[key[1:-1]] = self.union()
                if self.s.startswith(", ", self.i):
                    self.i += 2
                elif not self.s.startswith("}", self.i):
                    raise LegacyShapeError(f"cannot parse the shape at character {self.i}")
            self.i += 1
            return ("object", fields, frozenset(optional))
        for opener, kind in (("id<", "id"), ("array<", "array"), ("set<", "set")):
            if s.startswith(opener, i):
                self.i += len(opener)
                if kind == "id":
                    self.until(">")
                    return ("id",)
                inner = self.union()
                self.expect(">")
                return (kind, inner)
        for opener, kind in (("map<", "map"), ("record<", "record")):
            if s.startswith(opener, i):
                self.i += len(opener)
                key_shape = self.union()
                self.expect(", ")
                value_shape = self.union()
                self.expect(">")
                return (kind, key_shape, value_shape)
        if s.startswith('"', i):
            self.i += 1
            self.until('"')
            return ("literal",)
        raise LegacyShapeError(f"cannot parse the shape at character {i}")


def shape_options(shape: LegacyShape) -> tuple[LegacyShape, ...]:
    return shape[1] if shape[0] == "union" else (shape,)


def array_element_shapes(shapes: list[LegacyShape]) -> list[LegacyShape]:
    out: list[LegacyShape] = []
    for shape in shapes:
        for o in shape_options(shape):
            if o[0] == "array":
                out.append(o[1])
            elif o[0] == "unknown":
                out.append(o)
    return out


def object_field_shapes(shapes: list[LegacyShape], key: str) -> list[LegacyShape]:
    out: list[LegacyShape] = []
    for shape in shapes:
        for o in shape_options(shape):
            if o[0] == "object":
                if key in o[1]:
                    out.append(o[1][key])
            elif o[0] == "record":
                out.append(o[2])
            elif o[0] == "unknown":
                out.append(o)
    return out


_ALL_STRING_CONTEXTS: Final = frozenset({"infer", "float64inf", "nan", "int64", "bytes"})
_STRING_CONTEXTS: Final[dict[str, frozenset[str]]] = {
    "int64": frozenset({"int64"}),
    "-inf": frozenset({"float64inf"}),
    "inf": frozenset({"float64inf"}),
    # Many NaN payloads and kinds of float: never inferable (export_context.rs).
    "NaN": frozenset({"nan", "float64inf"}),
    "float64": frozenset({"nan", "float64inf"}),
    "literal": frozenset({"infer"}),
    "id": frozenset({"infer"}),
    "field_name": frozenset({"infer"}),
    "string": frozenset({"infer"}),
    "bytes": frozenset({"bytes"}),
    "unknown": _ALL_STRING_CONTEXTS,
}


def inferred_string_context(shapes: list[LegacyShape]) -> str | None:
    """How a JSON string must be read when the shapes allow exactly one way, else None."""
    found: set[str] = set()
    for shape in shapes:
        for o in shape_options(shape):
            found |= _STRING_CONTEXTS.get(o[0], frozenset())
            if len(found) > 1:
                return None
    return next(iter(found)) if found else None


def parse_legacy_shape(text: str) -> LegacyShape:
    """Parse the shape syntax of ``pretty.rs`` (the inverse of its Display)."""
    return _Parser(text).parse()


_UNIT_TYPES: Final[dict[str, _tree.ConvexType]] = {
    "never": _tree.NEVER,
    "null": _tree.NULL_T,
    "int64": _tree.INT64_T,
    "float64": _tree.Float64Type(True),
    "-inf": _tree.Float64Type(True),
    "inf": _tree.Float64Type(True),
    "NaN": _tree.Float64Type(True),
    "-0": _tree.Float64Type(True),
    "normalfloat64": _tree.FLOAT64_T,
    "boolean": _tree.BOOLEAN_T,
    "field_name": _tree.STRING_T,
    "string": _tree.STRING_T,
    "literal": _tree.STRING_T,  # string literals are the only literals the syntax writes
    "bytes": _tree.BYTES_T,
    "unknown": _tree.ANY,
}


def legacy_shape_type(shape: LegacyShape, table_name: str | None = None) -> _tree.ConvexType:
    """The type tree of a parsed legacy shape. ``record``, ``set`` and ``map`` become "any" (their keys are
    data); ``id<..>`` becomes an Id of ``table_name`` when given, else a string. With ``table_name`` and an
    object shape, the result is the table tree (system fields typed)."""
    kind = shape[0]
    if kind == "union":
        return _tree.union_of(legacy_shape_type(o, None) for o in shape[1])
    if kind == "object":
        fields = tuple(
            _tree.FieldType(name, legacy_shape_type(sub, None), name in shape[2])
            for name, sub in sorted(shape[1].items())
        )
        if table_name is not None:
            return _tree.table_type(table_name, fields)
        return _tree.ObjectType(fields)
    if kind == "array":
        return _tree.ArrayType(legacy_shape_type(shape[1], None))
    if kind in ("record", "set", "map"):
        return _tree.ANY
    if kind == "id":
        return _tree.IdType(table_name) if table_name is not None else _tree.STRING_T
    return _UNIT_TYPES[kind]
