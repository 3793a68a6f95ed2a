"""The active schema (``DatabaseSchemaJson``) and document validation against it.

Wire formats: ``streaming-import.md`` §11 (``DatabaseSchemaJson``, ``TableDefinitionJson``, ``ValidatorJson``).
Parsing is strict (errors are ``BadRequestError`` with code ``InvalidSchema`` naming the table and the
problem); ``to_json()`` always writes every key, tables sorted by name and indexes sorted by descriptor (the
upstream server keeps both in sorted maps).

:func:`validate_document` checks the user fields of a document against a table's ``documentType`` and raises
``SchemaValidationError`` whose message names the table, the field path and the expected and actual *types*;
it never includes field values.
"""

from __future__ import annotations

import abc
import base64
import binascii
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, TypeGuard

from connectors.constants import MAX_FIELDS_PER_INDEX as MAX_INDEX_FIELDS
from connectors.constants import MAX_INDEXES_PER_TABLE, SYSTEM_FIELDS_ORDERED
from connectors.errors import BadRequestError, SchemaValidationError
from connectors.typemap.tags import value_type_name

__all__ = [
    "AnyValidator",
    "ArrayValidator",
    "BooleanValidator",
    "BytesValidator",
    "DatabaseSchema",
    "FieldValidator",
    "Float64Validator",
    "IdValidator",
    "IndexSchema",
    "Int64Validator",
    "InvalidSchemaError",
    "LiteralValidator",
    "NullValidator",
    "ObjectValidator",
    "RecordValidator",
    "SearchIndexSchema",
    "StringValidator",
    "TableDefinition",
    "UnionValidator",
    "Validator",
    "VectorIndexSchema",
    "check_value",
    "parse_database_schema",
    "parse_table_definition",
    "parse_validator",
    "validate_document",
    "value_type_name",
]

MIN_VECTOR_DIMENSIONS = 2
MAX_VECTOR_DIMENSIONS = 4096

SYSTEM_FIELDS = SYSTEM_FIELDS_ORDERED


class InvalidSchemaError(BadRequestError):
    """400 ``InvalidSchema``: a schema, table definition or validator JSON is malformed."""

    def __init__(self, message: str) -> None:
        super().__init__("InvalidSchema", message)


# --- Names (values-and-ids.md §6) ---------------------------------------------------------------------

_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _is_identifier(s: object) -> TypeGuard[str]:
    return isinstance(s, str) and _IDENTIFIER_RE.fullmatch(s) is not None and s.strip("_") != ""


def _is_field_path(s: Any) -> bool:
    return isinstance(s, str) and all(_is_identifier(part) for part in s.split("."))


# --- Value helpers -----------------------------------------------------------------------------------------


def _float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _literal_display(value: str | float | int | bool) -> str:
    """Literal values come from the schema, never from documents, so showing them is fine."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}n"  # JavaScript bigint notation
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_ids_is_valid: Any = None


def _is_valid_id(s: str) -> bool:
    """IdV6 check: ``connectors.ids.is_valid_id`` when available (written concurrently), else a length and
    alphabet check (never rejects a valid id)."""
    global _ids_is_valid
    if _ids_is_valid is None:
        try:
            from connectors.ids import is_valid_id
        except ImportError:
            is_valid_id = _id_shape_ok
        _ids_is_valid = is_valid_id
    return bool(_ids_is_valid(s))


_ID_ALPHABET = frozenset("0123456789abcdefghjkmnpqrstvwxyz")


def _id_shape_ok(s: object) -> bool:
    return isinstance(s, str) and 31 <= len(s) <= 37 and len(s) not in (33, 35) and _ID_ALPHABET.issuperset(s)


# --- Validation failures (paths are built only on failure, while unwinding) ----------------------------


class _Mismatch:
    __slots__ = ("detail", "segments")

    def __init__(self, detail: Any) -> None:
        # ``detail(subject)`` renders the message; ``subject`` is "field .a.b" or "the document".
        self.detail = detail
        self.segments: list[str] = []

    def at(self, segment: str) -> _Mismatch:
        self.segments.append(segment)
        return self

    def render(self) -> str:
        path = "".join(reversed(self.segments))
        return self.detail(f"field {path}" if path else "the document")


def _type_mismatch(validator: Validator, value: Any) -> _Mismatch:
    got = value_type_name(value)
    return _Mismatch(lambda subject: f"{subject} must be {validator.words()} ({validator}), got {got}")


def _missing_field(expected: Validator) -> _Mismatch:
    return _Mismatch(lambda subject: f"required {subject} is missing (expected {expected})")


# --- Validators (ValidatorJson, streaming-import.md §11.3) ---------------------------------------------


@dataclass(frozen=True)
class Validator(abc.ABC):
    """Base of every validator. ``str(v)`` is the ``v.*()`` notation used in messages."""

    type_name: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type_name}

    def words(self) -> str:
        """Short name of the expected type, for messages."""
        return self.type_name

    @abc.abstractmethod
    def accepts_type(self, value: Any) -> bool:
        """Whether ``value`` has a type this validator can accept (contents not checked)."""

    def _check(self, value: Any) -> _Mismatch | None:
        return None if self.accepts_type(value) else _type_mismatch(self, value)

    def __str__(self) -> str:
        return f"v.{self.type_name}()"


@dataclass(frozen=True)
class NullValidator(Validator):
    type_name: ClassVar[str] = "null"

    def accepts_type(self, value: Any) -> bool:
        return value is None


@dataclass(frozen=True)
class Float64Validator(Validator):
    """``{"type":"number"}`` = ``v.float64()``."""

    type_name: ClassVar[str] = "number"

    def words(self) -> str:
        return "float64"

    def accepts_type(self, value: Any) -> bool:
        return type(value) is float

    def __str__(self) -> str:
        return "v.float64()"


@dataclass(frozen=True)
class Int64Validator(Validator):
    """``{"type":"bigint"}`` = ``v.int64()``."""

    type_name: ClassVar[str] = "bigint"

    def words(self) -> str:
        return "int64"

    def accepts_type(self, value: Any) -> bool:
        return type(value) is int

    def __str__(self) -> str:
        return "v.int64()"


@dataclass(frozen=True)
class BooleanValidator(Validator):
    type_name: ClassVar[str] = "boolean"

    def accepts_type(self, value: Any) -> bool:
        return type(value) is bool


@dataclass(frozen=True)
class StringValidator(Validator):
    type_name: ClassVar[str] = "string"

    def accepts_type(self, value: Any) -> bool:
        return type(value) is str


@dataclass(frozen=True)
class BytesValidator(Validator):
    type_name: ClassVar[str] = "bytes"

    def accepts_type(self, value: Any) -> bool:
        return type(value) is bytes


@dataclass(frozen=True)
class AnyValidator(Validator):
    """``v.any()``; the legacy ``map`` and ``set`` validators parse to this too."""

    type_name: ClassVar[str] = "any"

    def accepts_type(self, value: Any) -> bool:
        return True

    def _check(self, value: Any) -> _Mismatch | None:
        return None


@dataclass(frozen=True, eq=False)
class LiteralValidator(Validator):
    """``v.literal(x)`` for a string, Float64 (``float``), Int64 (``int``) or boolean."""

    value: str | float | int | bool
    type_name: ClassVar[str] = "literal"

    def _key(self) -> tuple[type, Any]:
        # Type-aware and bitwise for floats: literal(1.0) != literal(True), literal(-0.0) != literal(0.0).
        v = self.value
        return (type(v), _float_bits(v) if type(v) is float else v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LiteralValidator) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def to_json(self) -> dict[str, Any]:
        v = self.value
        if type(v) is int:
            encoded: Any = {"$integer": base64.b64encode(struct.pack("<q", v)).decode("ascii")}
        else:
            encoded = v
        return {"type": "literal", "value": encoded}

    def words(self) -> str:
        return _literal_display(self.value)

    def accepts_type(self, value: Any) -> bool:
        return type(value) is type(self.value)

    def _check(self, value: Any) -> _Mismatch | None:
        if type(value) is not type(self.value):
            return _type_mismatch(self, value)
        equal = _float_bits(value) == _float_bits(self.value) if isinstance(value, float) and isinstance(self.value, float) else value == self.value
        if equal:
            return None
        got = value_type_name(value)
        return _Mismatch(lambda subject: f"{subject} must be {self.words()} ({self}), got a different {got}")

    def __str__(self) -> str:
        return f"v.literal({_literal_display(self.value)})"


@dataclass(frozen=True)
class IdValidator(Validator):
    """``v.id("table")``: a String holding a valid IdV6 (the table it points to is not checked)."""

    table_name: str
    type_name: ClassVar[str] = "id"

    def to_json(self) -> dict[str, Any]:
        return {"type": "id", "tableName": self.table_name}

    def words(self) -> str:
        return f'id("{self.table_name}")'

    def accepts_type(self, value: Any) -> bool:
        return type(value) is str

    def _check(self, value: Any) -> _Mismatch | None:
        if type(value) is not str:
            return _type_mismatch(self, value)
        if _is_valid_id(value):
            return None
        return _Mismatch(
            lambda subject: (
                f'{subject} must be an id of table "{self.table_name}" ({self}), '
                "got a string that is not a valid document ID"
            )
        )

    def __str__(self) -> str:
        return f'v.id("{self.table_name}")'


@dataclass(frozen=True)
class ArrayValidator(Validator):
    element: Validator
    type_name: ClassVar[str] = "array"

    def to_json(self) -> dict[str, Any]:
        return {"type": "array", "value": self.element.to_json()}

    def accepts_type(self, value: Any) -> bool:
        return type(value) is list

    def _check(self, value: Any) -> _Mismatch | None:
        if type(value) is not list:
            return _type_mismatch(self, value)
        check = self.element._check
        for i, item in enumerate(value):
            m = check(item)
            if m is not None:
                return m.at(f"[{i}]")
        return None

    def __str__(self) -> str:
        return f"v.array({self.element})"


@dataclass(frozen=True)
class FieldValidator:
    """``{"fieldType": V, "optional": bool}``."""

    field_type: Validator
    optional: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"fieldType": self.field_type.to_json(), "optional": self.optional}

    def __str__(self) -> str:
        return f"v.optional({self.field_type})" if self.optional else str(self.field_type)


@dataclass(frozen=True)
class RecordValidator(Validator):
    """``v.record(K, V)``: an object whose keys match ``keys`` and values match ``values.field_type``.
    Mismatch paths use the upstream ``.keys()`` / ``.values()`` notation (record keys are data)."""

    keys: Validator
    values: FieldValidator
    type_name: ClassVar[str] = "record"

    def to_json(self) -> dict[str, Any]:
        return {"type": "record", "keys": self.keys.to_json(), "values": self.values.to_json()}

    def accepts_type(self, value: Any) -> bool:
        return type(value) is dict

    def _check(self, value: Any) -> _Mismatch | None:
        if type(value) is not dict:
            return _type_mismatch(self, value)
        check_key = self.keys._check
        check_value = self.values.field_type._check
        for k, v in value.items():
            m = check_key(k)
            if m is not None:
                return m.at(".keys()")
            m = check_value(v)
            if m is not None:
                return m.at(".values()")
        return None

    def __str__(self) -> str:
        return f"v.record({self.keys}, {self.values.field_type})"


@dataclass(frozen=True)
class ObjectValidator(Validator):
    """``v.object({...})``. ``fields`` is kept sorted by name; look fields up with :meth:`get`."""

    fields: tuple[tuple[str, FieldValidator], ...] = ()
    _by_name: dict[str, FieldValidator] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    type_name: ClassVar[str] = "object"

    def __post_init__(self) -> None:
        by_name = dict(self.fields)
        object.__setattr__(self, "fields", tuple(sorted(by_name.items())))
        object.__setattr__(self, "_by_name", by_name)

    @classmethod
    def of(cls, fields: Mapping[str, FieldValidator | Validator]) -> ObjectValidator:
        """Convenience constructor; a bare ``Validator`` means a required field."""
        return cls(
            tuple(
                (name, fv if isinstance(fv, FieldValidator) else FieldValidator(fv))
                for name, fv in fields.items()
            )
        )

    def get(self, name: str) -> FieldValidator | None:
        return self._by_name.get(name)

    def field_names(self) -> list[str]:
        return [name for name, _ in self.fields]

    def to_json(self) -> dict[str, Any]:
        return {"type": "object", "value": {name: fv.to_json() for name, fv in self.fields}}

    def accepts_type(self, value: Any) -> bool:
        return type(value) is dict

    def _check(self, value: Any) -> _Mismatch | None:
        return self._check_object(value, False)

    def _check_object(self, value: Any, skip_system: bool) -> _Mismatch | None:
        if type(value) is not dict:
            return _type_mismatch(self, value)
        by_name = self._by_name
        for name, fv in self.fields:
            if name in value:
                m = fv.field_type._check(value[name])
                if m is not None:
                    return m.at("." + name)
            elif not fv.optional:
                return _missing_field(fv.field_type).at("." + name)
        for k in value:
            if k not in by_name and not (skip_system and k in SYSTEM_FIELDS):
                return _Mismatch(lambda subject: f"{subject} is not in the schema (extra field)").at("." + k)
        return None

    def __str__(self) -> str:
        # Upstream notation (also used by the Fivetran destination's schema.ts suggestions).
        return "v.object({" + ", ".join(f"{name}: {fv}" for name, fv in self.fields) + "})"


@dataclass(frozen=True)
class UnionValidator(Validator):
    members: tuple[Validator, ...] = ()
    type_name: ClassVar[str] = "union"

    def to_json(self) -> dict[str, Any]:
        return {"type": "union", "value": [m.to_json() for m in self.members]}

    def words(self) -> str:
        if not self.members:
            return "nothing (empty union)"
        return " | ".join(dict.fromkeys(m.words() for m in self.members))

    def accepts_type(self, value: Any) -> bool:
        return any(m.accepts_type(value) for m in self.members)

    def _check(self, value: Any) -> _Mismatch | None:
        return self._check_members(value, False)

    def _check_members(self, value: Any, skip_system: bool) -> _Mismatch | None:
        candidates = [m for m in self.members if m.accepts_type(value)]
        errors = []
        for m in candidates:
            err = (
                m._check_object(value, True)
                if skip_system and isinstance(m, ObjectValidator)
                else m._check(value)
            )
            if err is None:
                return None
            errors.append(err)
        if len(errors) == 1:
            # Only one member has the value's type: its precise error (e.g. a nested field) helps most.
            return errors[0]
        if not errors:
            return _type_mismatch(self, value)
        got = value_type_name(value)
        article = "an" if got[0] in "aeio" else "a"
        return _Mismatch(
            lambda subject: (
                f"{subject} must be {self.words()} ({self}), "
                f"got {article} {got} that matches none of the union members"
            )
        )

    def __str__(self) -> str:
        return "v.union(" + ", ".join(str(m) for m in self.members) + ")"


def check_value(validator: Validator, value: Any) -> str | None:
    """``None`` if ``value`` matches, else a message like ``field .a[0] must be int64 (v.int64()), got
    string`` (types and names only)."""
    m = validator._check(value)
    return None if m is None else m.render()


# --- Validator JSON parsing --------------------------------------------------------------------------------

_SIMPLE: dict[str, Validator] = {
    "null": NullValidator(),
    "number": Float64Validator(),
    "bigint": Int64Validator(),
    "boolean": BooleanValidator(),
    "string": StringValidator(),
    "bytes": BytesValidator(),
    "any": AnyValidator(),
    "map": AnyValidator(),
    "set": AnyValidator(),
}


def _fail(ctx: str, what: str) -> NoReturn:
    raise InvalidSchemaError(f"{ctx}: {what}.")


def _where(ctx: str, loc: str) -> str:
    return f"{ctx}: at {loc}" if loc else ctx


def parse_validator(obj: Any) -> Validator:
    """Parse one ``ValidatorJson``. Raises ``InvalidSchemaError`` (code ``InvalidSchema``)."""
    return _parse_validator(obj, "Invalid validator", "")


def _parse_validator(obj: Any, ctx: str, loc: str) -> Validator:
    if not isinstance(obj, dict):
        _fail(_where(ctx, loc), 'a validator must be a JSON object with a "type"')
    kind = obj.get("type")
    simple = _SIMPLE.get(kind) if isinstance(kind, str) else None
    if simple is not None:
        return simple
    if kind == "literal":
        if "value" not in obj:
            _fail(_where(ctx, loc), 'literal validator is missing "value"')
        return LiteralValidator(_parse_literal(obj["value"], ctx, loc))
    if kind == "id":
        table = obj.get("tableName")
        if not _is_identifier(table):
            _fail(_where(ctx, loc), 'id validator needs a valid "tableName"')
        return IdValidator(table)
    if kind == "array":
        if "value" not in obj:
            _fail(_where(ctx, loc), 'array validator is missing "value"')
        return ArrayValidator(_parse_validator(obj["value"], ctx, f"{loc}[]"))
    if kind == "record":
        return _parse_record(obj, ctx, loc)
    if kind == "object":
        value = obj.get("value")
        if not isinstance(value, dict):
            _fail(_where(ctx, loc), 'object validator needs a "value" object of fields')
        fields = []
        for name, fv in value.items():
            if not _is_identifier(name):
                _fail(_where(ctx, loc), f"invalid field name {name!r} in object validator")
            fields.append((name, _parse_field(fv, ctx, f"{loc}.{name}")))
        return ObjectValidator(tuple(fields))
    if kind == "union":
        members = obj.get("value")
        if not isinstance(members, list):
            _fail(_where(ctx, loc), 'union validator needs a "value" list')
        return UnionValidator(
            tuple(_parse_validator(m, ctx, f"{loc} (union member {i})") for i, m in enumerate(members))
        )
    if isinstance(kind, str):
        _fail(_where(ctx, loc), f'unknown validator type "{kind}"')
    _fail(_where(ctx, loc), 'a validator needs a string "type"')


def _parse_field(obj: Any, ctx: str, loc: str) -> FieldValidator:
    if not isinstance(obj, dict) or "fieldType" not in obj:
        _fail(_where(ctx, loc), 'a field must be {"fieldType": <validator>, "optional": <bool>}')
    optional = obj.get("optional", False)
    if not isinstance(optional, bool):
        _fail(_where(ctx, loc), '"optional" must be a boolean')
    return FieldValidator(_parse_validator(obj["fieldType"], ctx, loc), optional)


def _is_string_key_validator(v: Validator) -> bool:
    if isinstance(v, StringValidator | IdValidator):
        return True
    return isinstance(v, UnionValidator) and all(_is_string_key_validator(m) for m in v.members)


def _parse_record(obj: dict[str, Any], ctx: str, loc: str) -> RecordValidator:
    if "keys" not in obj or "values" not in obj:
        _fail(_where(ctx, loc), 'record validator needs "keys" and "values"')
    keys = _parse_validator(obj["keys"], ctx, f"{loc}.keys()")
    # Upstream: keys must be a subtype of v.string() without string literals (InvalidRecordType).
    if not _is_string_key_validator(keys):
        _fail(_where(ctx, loc), f"records can only have string or id keys, got {keys}")
    values = _parse_field(obj["values"], ctx, f"{loc}.values()")
    if values.optional:
        _fail(_where(ctx, loc), "records cannot have optional values")
    return RecordValidator(keys, values)


def _parse_literal(raw: Any, ctx: str, loc: str) -> str | float | int | bool:
    # Convex internal JSON (values-and-ids.md §2.4): numbers are Float64; Int64 only as {"$integer": b64}.
    if isinstance(raw, bool | str):
        return raw
    if isinstance(raw, int | float):
        try:
            f = float(raw)
        except OverflowError:
            f = math.inf
        if math.isfinite(f):
            return f
        _fail(_where(ctx, loc), "literal numbers must be finite")
    if isinstance(raw, dict) and len(raw) == 1 and isinstance(raw.get("$integer"), str):
        try:
            data = base64.b64decode(raw["$integer"], validate=True)
        except (binascii.Error, ValueError):
            data = b""
        if len(data) != 8:
            _fail(_where(ctx, loc), "Int64 must be exactly eight bytes")
        return int(struct.unpack("<q", data)[0])
    _fail(_where(ctx, loc), "a literal must be a string, a finite number, a boolean or an Int64")


# --- Indexes and table definitions (streaming-import.md §11.2) ----------------------------------------


@dataclass(frozen=True)
class IndexSchema:
    index_descriptor: str
    fields: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"indexDescriptor": self.index_descriptor, "fields": list(self.fields)}


@dataclass(frozen=True)
class SearchIndexSchema:
    index_descriptor: str
    search_field: str
    filter_fields: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "indexDescriptor": self.index_descriptor,
            "searchField": self.search_field,
            "filterFields": sorted(set(self.filter_fields)),
        }


@dataclass(frozen=True)
class VectorIndexSchema:
    index_descriptor: str
    vector_field: str
    dimensions: int
    filter_fields: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "indexDescriptor": self.index_descriptor,
            "vectorField": self.vector_field,
            "dimensions": self.dimensions,
            "filterFields": sorted(set(self.filter_fields)),
        }


def _sorted_json(indexes: Iterable[Any]) -> list[dict[str, Any]]:
    return [i.to_json() for i in sorted(indexes, key=lambda i: i.index_descriptor)]


@dataclass(frozen=True)
class TableDefinition:
    table_name: str
    indexes: tuple[IndexSchema, ...] = ()
    staged_db_indexes: tuple[IndexSchema, ...] = ()
    search_indexes: tuple[SearchIndexSchema, ...] = ()
    staged_search_indexes: tuple[SearchIndexSchema, ...] = ()
    vector_indexes: tuple[VectorIndexSchema, ...] = ()
    staged_vector_indexes: tuple[VectorIndexSchema, ...] = ()
    # An ObjectValidator, a UnionValidator of objects, AnyValidator, or None (no document type).
    document_type: Validator | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tableName": self.table_name,
            "indexes": _sorted_json(self.indexes),
            "stagedDbIndexes": _sorted_json(self.staged_db_indexes),
            "searchIndexes": _sorted_json(self.search_indexes),
            "stagedSearchIndexes": _sorted_json(self.staged_search_indexes),
            "vectorIndexes": _sorted_json(self.vector_indexes),
            "stagedVectorIndexes": _sorted_json(self.staged_vector_indexes),
            "documentType": None if self.document_type is None else self.document_type.to_json(),
        }

    def index(self, descriptor: str) -> IndexSchema | None:
        for idx in self.indexes:
            if idx.index_descriptor == descriptor:
                return idx
        return None


@dataclass(frozen=True)
class DatabaseSchema:
    tables: tuple[TableDefinition, ...] = ()
    schema_validation: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": [t.to_json() for t in sorted(self.tables, key=lambda t: t.table_name)],
            "schemaValidation": self.schema_validation,
        }

    def table(self, table_name: str) -> TableDefinition | None:
        for t in self.tables:
            if t.table_name == table_name:
                return t
        return None


def _index_name_ok(name: object) -> TypeGuard[str]:
    # Names starting with "_" are reserved; "_fivetran*" are accepted as reserved names (upstream).
    return _is_identifier(name) and (not name.startswith("_") or name.startswith("_fivetran"))


def _list_of(obj: dict[str, Any], key: str, ctx: str, required: bool = False) -> list[Any]:
    if key not in obj or (obj[key] is None and not required):
        if required:
            _fail(ctx, f'"{key}" is required')
        return []
    value = obj[key]
    if not isinstance(value, list):
        _fail(ctx, f'"{key}" must be a list')
    return value


def _field_path(value: Any, ctx: str, what: str) -> str:
    if not _is_field_path(value):
        _fail(ctx, f"{what} {value!r} is not a valid field path")
    return value


def _parse_db_indexes(raw: list[Any], ctx: str, key: str) -> tuple[IndexSchema, ...]:
    out = []
    for item in raw:
        if not isinstance(item, dict):
            _fail(ctx, f'every entry of "{key}" must be an object')
        name = item.get("indexDescriptor")
        if not _index_name_ok(name):
            _fail(ctx, f"invalid index name {name!r}")
        fields = item.get("fields")
        if not isinstance(fields, list) or not fields:
            _fail(ctx, f'index "{name}" must have a non-empty "fields" list')
        if len(fields) > MAX_INDEX_FIELDS:
            _fail(ctx, f'index "{name}" has more than {MAX_INDEX_FIELDS} fields')
        paths = tuple(_field_path(f, ctx, f'field of index "{name}"') for f in fields)
        if len(set(paths)) != len(paths):
            _fail(ctx, f'index "{name}" lists a field twice')
        out.append(IndexSchema(name, paths))
    return tuple(out)


def _parse_search_indexes(raw: list[Any], ctx: str, key: str) -> tuple[SearchIndexSchema, ...]:
    out = []
    for item in raw:
        if not isinstance(item, dict):
            _fail(ctx, f'every entry of "{key}" must be an object')
        name = item.get("indexDescriptor")
        if not _index_name_ok(name):
            _fail(ctx, f"invalid index name {name!r}")
        search_field = _field_path(item.get("searchField"), ctx, f'searchField of index "{name}"')
        filters = _list_of(item, "filterFields", ctx)
        paths = {_field_path(f, ctx, f'filter field of index "{name}"') for f in filters}
        out.append(SearchIndexSchema(name, search_field, tuple(sorted(paths))))
    return tuple(out)


def _parse_vector_indexes(raw: list[Any], ctx: str, key: str) -> tuple[VectorIndexSchema, ...]:
    out = []
    for item in raw:
        if not isinstance(item, dict):
            _fail(ctx, f'every entry of "{key}" must be an object')
        name = item.get("indexDescriptor")
        if not _index_name_ok(name):
            _fail(ctx, f"invalid index name {name!r}")
        vector_field = _field_path(item.get("vectorField"), ctx, f'vectorField of index "{name}"')
        # "dimension" is the legacy spelling upstream still reads.
        dims = item.get("dimensions", item.get("dimension"))
        if type(dims) is not int or not MIN_VECTOR_DIMENSIONS <= dims <= MAX_VECTOR_DIMENSIONS:
            _fail(
                ctx,
                f'vector index "{name}" needs "dimensions" between {MIN_VECTOR_DIMENSIONS} '
                f"and {MAX_VECTOR_DIMENSIONS}",
            )
        filters = _list_of(item, "filterFields", ctx)
        paths = {_field_path(f, ctx, f'filter field of index "{name}"') for f in filters}
        out.append(VectorIndexSchema(name, vector_field, dims, tuple(sorted(paths))))
    return tuple(out)


def _filter_system_fields(obj: ObjectValidator) -> ObjectValidator:
    # Upstream drops every top-level "_" field of a document type (system fields are implicit).
    if not any(name.startswith("_") for name, _ in obj.fields):
        return obj
    return ObjectValidator(tuple((n, fv) for n, fv in obj.fields if not n.startswith("_")))


def _document_type(raw: Any, ctx: str) -> Validator | None:
    if raw is None:
        return None
    v = _parse_validator(raw, ctx, "documentType")
    if isinstance(v, AnyValidator):
        return v
    if isinstance(v, ObjectValidator):
        return _filter_system_fields(v)
    if isinstance(v, UnionValidator) and all(isinstance(m, ObjectValidator) for m in v.members):
        members = tuple(_filter_system_fields(m) for m in v.members if isinstance(m, ObjectValidator))
        # A union of one object is that object (upstream writes it back that way).
        return members[0] if len(members) == 1 else UnionValidator(members)
    _fail(ctx, f"documentType must be v.object(...), a union of objects or v.any(), got {v}")


def parse_table_definition(obj: Any) -> TableDefinition:
    """Parse a ``TableDefinitionJson`` (camelCase keys; ``tableName`` and ``indexes`` required)."""
    if not isinstance(obj, dict):
        _fail("Invalid schema", "a table definition must be a JSON object")
    name = obj.get("tableName")
    if not isinstance(name, str):
        _fail("Invalid schema", '"tableName" must be a string')
    ctx = f'Invalid schema for table "{name}"'
    if not _is_identifier(name):
        _fail(ctx, "the table name is not a valid identifier")
    if name.startswith("_"):
        _fail(ctx, "table names starting with _ are reserved for system tables")
    indexes = _parse_db_indexes(_list_of(obj, "indexes", ctx, required=True), ctx, "indexes")
    staged_db = _parse_db_indexes(_list_of(obj, "stagedDbIndexes", ctx), ctx, "stagedDbIndexes")
    search = _parse_search_indexes(_list_of(obj, "searchIndexes", ctx), ctx, "searchIndexes")
    staged_search = _parse_search_indexes(
        _list_of(obj, "stagedSearchIndexes", ctx), ctx, "stagedSearchIndexes"
    )
    vector = _parse_vector_indexes(_list_of(obj, "vectorIndexes", ctx), ctx, "vectorIndexes")
    staged_vector = _parse_vector_indexes(
        _list_of(obj, "stagedVectorIndexes", ctx), ctx, "stagedVectorIndexes"
    )

    all_names = [
        i.index_descriptor
        for group in (indexes, staged_db, search, staged_search, vector, staged_vector)
        for i in group
    ]
    if len(all_names) > MAX_INDEXES_PER_TABLE:
        _fail(ctx, f"a table can have at most {MAX_INDEXES_PER_TABLE} indexes")
    seen: set[str] = set()
    for index_name in all_names:
        if index_name in seen:
            _fail(ctx, f'index name "{index_name}" is used twice')
        seen.add(index_name)
    # Two database indexes over the same fields are redundant (upstream rejects them too).
    by_fields: dict[tuple[str, ...], str] = {}
    for idx in (*indexes, *staged_db):
        other = by_fields.setdefault(idx.fields, idx.index_descriptor)
        if other != idx.index_descriptor:
            _fail(ctx, f'indexes "{other}" and "{idx.index_descriptor}" have the same fields')

    return TableDefinition(
        table_name=name,
        indexes=indexes,
        staged_db_indexes=staged_db,
        search_indexes=search,
        staged_search_indexes=staged_search,
        vector_indexes=vector,
        staged_vector_indexes=staged_vector,
        document_type=_document_type(obj.get("documentType"), ctx),
    )


def parse_database_schema(obj: Any) -> DatabaseSchema:
    """Parse a ``DatabaseSchemaJson``. A missing ``schemaValidation`` means false (upstream: schemas
    written before schema validation existed)."""
    if not isinstance(obj, dict):
        _fail("Invalid schema", "the schema must be a JSON object")
    tables_raw = obj.get("tables")
    if not isinstance(tables_raw, list):
        _fail("Invalid schema", '"tables" must be a list')
    validation = obj.get("schemaValidation")
    if validation is None:
        validation = False
    if not isinstance(validation, bool):
        _fail("Invalid schema", '"schemaValidation" must be a boolean')
    tables = [parse_table_definition(t) for t in tables_raw]
    names: set[str] = set()
    for t in tables:
        if t.table_name in names:
            _fail(f'Invalid schema for table "{t.table_name}"', "the table is defined twice")
        names.add(t.table_name)
    return DatabaseSchema(tuple(sorted(tables, key=lambda t: t.table_name)), validation)


# --- Document validation -----------------------------------------------------------------------------


def validate_document(table_def: TableDefinition, doc: dict[str, Any]) -> None:
    """Check ``doc``'s user fields against ``table_def.document_type`` (``_id`` and ``_creationTime`` are
    ignored). Raises ``SchemaValidationError``; the message names the table, the field path and the types."""
    document_type = table_def.document_type
    if document_type is None or isinstance(document_type, AnyValidator):
        return
    if isinstance(document_type, ObjectValidator):
        m = document_type._check_object(doc, True)
    elif isinstance(document_type, UnionValidator):
        m = document_type._check_members(doc, True)
    else:
        m = document_type._check(doc)
    if m is not None:
        raise SchemaValidationError(
            f'Document in table "{table_def.table_name}" does not match the schema: {m.render()}.'
        )
