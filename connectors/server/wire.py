"""Request parsing for the HTTP API: query strings and JSON bodies -> typed, frozen request objects.

Rules (streaming-export.md §2.3, streaming-import.md §2.3): unknown keys are ignored; ``null`` and a
missing optional key are equivalent; a wrong type or a missing required key is a 400 whose code says where
the arguments came from (``BadQueryArgs`` for a GET query string, ``BadJsonBody`` for a JSON body) and whose
message names the offending key. Messages describe types, never values, so no document data or key
material is echoed back.

Only document data (Airbyte ``data``, Fivetran ``row``, the Fivetran table definition) stays untyped JSON;
the domain layer validates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal

from connectors.backend.streaming_import import AirbyteRecord, AirbyteStream, FivetranOperation
from connectors.constants import FIVETRAN_OPERATIONS, TRUNCATE_DELETE_TYPES
from connectors.errors import BadRequestError
from connectors.selection import Selection, parse_selection_args
from connectors.values import INT64_MAX as I64_MAX
from connectors.values import INT64_MIN as I64_MIN
from connectors.values import ValueFormat, parse_format

__all__ = [
    "AddPrimaryKeyIndexesRequest",
    "Args",
    "ApplyFivetranOperationsRequest",
    "ClearTablesRequest",
    "DocumentDeltasRequest",
    "FivetranCreateTableRequest",
    "FivetranTruncateTableRequest",
    "ImportAirbyteRecordsRequest",
    "JsonSchemasRequest",
    "ListSnapshotRequest",
    "PrimaryKeyIndexesReadyRequest",
    "ReplaceTablesRequest",
]

BAD_JSON: Final = "BadJsonBody"
BAD_QUERY: Final = "BadQueryArgs"
_MISSING: Final = object()


def _kind(value: object) -> str:
    """A value's JSON type for messages (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _bad_json(message: str) -> BadRequestError:
    return BadRequestError(BAD_JSON, message)


# Key paths carry user-chosen keys (table names); messages show at most this many characters of one.
_PATH_MAX: Final = 160


def _where(path: str) -> str:
    """``path`` is a key path such as ``tables.users.primaryKey[0]``; empty for the whole body. A very long
    path (a huge key) is cut in the middle so both its start and the failing key stay visible."""
    if len(path) > _PATH_MAX:
        half = _PATH_MAX // 2
        path = path[:half] + "…" + path[-half:]
    return f"`{path}`" if path else "the request body"


def _expect_object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad_json(f"Invalid type for {_where(path)}: expected an object, got {_kind(value)}")
    return value


def _expect_array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad_json(f"Invalid type for {_where(path)}: expected an array, got {_kind(value)}")
    return value


def _expect_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _bad_json(f"Invalid type for {_where(path)}: expected a string, got {_kind(value)}")
    return value


def _expect_str_list(value: object, path: str) -> tuple[str, ...]:
    for i, item in enumerate(_expect_array(value, path)):
        _expect_str(item, f"{path}[{i}]")
    return tuple(value)  # type: ignore[arg-type]


def _field_paths(value: object, path: str) -> tuple[tuple[str, ...], ...]:
    """``[["a"], ["b", "c"]]``: field paths given as lists of components."""
    return tuple(_expect_str_list(p, f"{path}[{i}]") for i, p in enumerate(_expect_array(value, path)))


def _required(obj: Mapping[str, Any], key: str, parent: str = "") -> tuple[Any, str]:
    """The value of a required key (any JSON, null included) and its path."""
    path = f"{parent}.{key}" if parent else key
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        raise _bad_json(f"Missing field `{path}`")
    return value, path


# --- export arguments (GET query string or POST JSON object) ----------------------------------------


@dataclass(frozen=True)
class Args:
    """The arguments of one export call: a JSON object, or a query string (every value a string)."""

    values: Mapping[str, Any]
    from_query: bool

    @classmethod
    def from_json(cls, body: object) -> Args:
        return cls(_expect_object(body, ""), from_query=False)

    @classmethod
    def from_query_string(cls, params: Mapping[str, str]) -> Args:
        return cls(MappingProxyType(dict(params)), from_query=True)

    @property
    def error_code(self) -> str:
        return BAD_QUERY if self.from_query else BAD_JSON

    def _error(self, key: str, expected: str, value: object) -> BadRequestError:
        got = "an unparseable string" if self.from_query else _kind(value)
        return BadRequestError(self.error_code, f"Invalid value for `{key}`: expected {expected}, got {got}")

    def optional_i64(self, key: str) -> int | None:
        value = self.values.get(key)
        if value is None:
            return None
        if self.from_query:
            # Rust's i64 parser: optional sign, ASCII digits only.
            text = value[1:] if value[:1] in ("+", "-") else value
            if not (text.isascii() and text.isdigit()):
                raise self._error(key, "a 64-bit integer", value)
            # Bounded before int(): Python refuses (ValueError) to convert more than 4300 digits.
            value = int(value) if len(text) <= 20 else I64_MAX + 1
        elif type(value) is not int:
            raise self._error(key, "a 64-bit integer", value)
        if not I64_MIN <= value <= I64_MAX:
            raise BadRequestError(
                self.error_code, f"Invalid value for `{key}`: out of the 64-bit integer range"
            )
        return value

    def optional_str(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is not None and not isinstance(value, str):
            raise self._error(key, "a string", value)
        return value

    def optional_bool(self, key: str) -> bool | None:
        value = self.values.get(key)
        if value is None:
            return None
        if self.from_query:
            if value not in ("true", "false"):
                raise self._error(key, "`true` or `false`", value)
            return value == "true"
        if not isinstance(value, bool):
            raise self._error(key, "a boolean", value)
        return value

    def format(self) -> ValueFormat:
        return parse_format(self.optional_str("format"))

    def selection(self) -> Selection:
        return parse_selection_args(self.values, self.error_code)


@dataclass(frozen=True)
class ListSnapshotRequest:
    snapshot: int | None
    cursor: str | None
    format: ValueFormat
    selection: Selection

    @classmethod
    def parse(cls, args: Args) -> ListSnapshotRequest:
        return cls(
            snapshot=args.optional_i64("snapshot"),
            # An empty cursor string is what a client holding no cursor yet might send: start over.
            cursor=args.optional_str("cursor") or None,
            format=args.format(),
            selection=args.selection(),
        )


@dataclass(frozen=True)
class DocumentDeltasRequest:
    cursor: int | None  # required, but its absence is the domain's DocumentDeltasCursorRequired
    format: ValueFormat
    selection: Selection

    @classmethod
    def parse(cls, args: Args) -> DocumentDeltasRequest:
        return cls(cursor=args.optional_i64("cursor"), format=args.format(), selection=args.selection())


@dataclass(frozen=True)
class JsonSchemasRequest:
    delta_schema: bool
    format: ValueFormat
    by_component: bool

    @classmethod
    def parse(cls, args: Args) -> JsonSchemasRequest:
        return cls(
            delta_schema=bool(args.optional_bool("deltaSchema")),
            format=args.format(),
            by_component=bool(args.optional_bool("byComponent")),
        )


# --- import bodies (JSON) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportAirbyteRecordsRequest:
    tables: Mapping[str, AirbyteStream]
    messages: tuple[AirbyteRecord, ...]

    @classmethod
    def parse(cls, body: object) -> ImportAirbyteRecordsRequest:
        obj = _expect_object(body, "")
        tables: dict[str, AirbyteStream] = {}
        for name, entry in _expect_object(*_required(obj, "tables")).items():
            path = f"tables.{name}"
            entry = _expect_object(entry, path)
            # `jsonSchema` is ignored upstream but its key is still required (streaming-import.md §5.6).
            _required(entry, "jsonSchema", path)
            pk = entry.get("primaryKey")
            primary_key = None if pk is None else _field_paths(pk, f"{path}.primaryKey")
            tables[name] = AirbyteStream(primary_key=primary_key)
        messages = []
        for i, message in enumerate(_expect_array(*_required(obj, "messages"))):
            if type(message) is dict and type(message.get("tableName")) is str and "data" in message:
                # The well-formed message, checked without building error paths (this runs per record).
                messages.append(AirbyteRecord(table_name=message["tableName"], data=message["data"]))
                continue
            path = f"messages[{i}]"
            message = _expect_object(message, path)
            table = _expect_str(*_required(message, "tableName", path))
            # `data` must be present (any JSON); non-objects are the domain's plain error (§5.5).
            data, _ = _required(message, "data", path)
            messages.append(AirbyteRecord(table_name=table, data=data))
        return cls(MappingProxyType(tables), tuple(messages))


@dataclass(frozen=True)
class ClearTablesRequest:
    table_names: tuple[str, ...]

    @classmethod
    def parse(cls, body: object) -> ClearTablesRequest:
        return cls(_expect_str_list(*_required(_expect_object(body, ""), "tableNames")))


@dataclass(frozen=True)
class ReplaceTablesRequest:
    table_names: Mapping[str, str]

    @classmethod
    def parse(cls, body: object) -> ReplaceTablesRequest:
        names = _expect_object(*_required(_expect_object(body, ""), "tableNames"))
        for key, value in names.items():
            _expect_str(value, f"tableNames.{key}")
        return cls(MappingProxyType(dict(names)))


@dataclass(frozen=True)
class AddPrimaryKeyIndexesRequest:
    indexes: Mapping[str, tuple[tuple[str, ...], ...]]

    @classmethod
    def parse(cls, body: object) -> AddPrimaryKeyIndexesRequest:
        raw = _expect_object(*_required(_expect_object(body, ""), "indexes"))
        return cls(MappingProxyType({t: _field_paths(p, f"indexes.{t}") for t, p in raw.items()}))


@dataclass(frozen=True)
class PrimaryKeyIndexesReadyRequest:
    tables: tuple[str, ...]

    @classmethod
    def parse(cls, body: object) -> PrimaryKeyIndexesReadyRequest:
        return cls(_expect_str_list(*_required(_expect_object(body, ""), "tables")))


@dataclass(frozen=True)
class ApplyFivetranOperationsRequest:
    operations: tuple[FivetranOperation, ...]

    @classmethod
    def parse(cls, body: object) -> ApplyFivetranOperationsRequest:
        operations = []
        for i, item in enumerate(_expect_array(body, "")):
            if (
                type(item) is dict
                and type(item.get("table")) is str
                and item.get("operation") in FIVETRAN_OPERATIONS
                and type(item.get("row")) is dict
            ):
                # The well-formed row, checked without building error paths (this runs per row).
                operations.append(FivetranOperation(item["table"], item["operation"], item["row"]))
                continue
            path = f"[{i}]"
            item = _expect_object(item, path)
            table = _expect_str(*_required(item, "table", path))
            operation = _expect_str(*_required(item, "operation", path))
            if operation not in FIVETRAN_OPERATIONS:
                raise _bad_json(
                    f"Invalid value for `{path}.operation`: expected one of `Upsert`, `Update`, `HardDelete`"
                )
            row = _expect_object(*_required(item, "row", path))
            operations.append(FivetranOperation(table=table, operation=operation, row=row))
        return cls(tuple(operations))


@dataclass(frozen=True)
class FivetranCreateTableRequest:
    table_definition: Any  # a TableDefinitionJson; the schema module validates it

    @classmethod
    def parse(cls, body: object) -> FivetranCreateTableRequest:
        return cls(_expect_object(*_required(_expect_object(body, ""), "tableDefinition")))


@dataclass(frozen=True)
class FivetranTruncateTableRequest:
    table_name: str
    delete_before: datetime | None
    delete_type: Literal["SoftDelete", "HardDelete"]

    @classmethod
    def parse(cls, body: object) -> FivetranTruncateTableRequest:
        obj = _expect_object(body, "")
        table = _expect_str(*_required(obj, "tableName"))
        raw_before = obj.get("deleteBefore")
        before = None if raw_before is None else _rfc3339(raw_before, "deleteBefore")
        delete_type = _expect_str(*_required(obj, "deleteType"))
        if delete_type not in TRUNCATE_DELETE_TYPES:
            raise _bad_json("Invalid value for `deleteType`: expected `SoftDelete` or `HardDelete`")
        return cls(table, before, delete_type)  # type: ignore[arg-type]


def _rfc3339(value: object, path: str) -> datetime:
    """An RFC 3339 date-time with an offset (chrono's ``DateTime<Utc>`` input), returned in UTC."""
    text = _expect_str(value, path).upper()
    try:
        # The date-time separator is required: fromisoformat would also take a bare date.
        if len(text) < 20 or text[10] not in "T ":
            raise ValueError
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _bad_json(f"Invalid value for `{path}`: expected an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise _bad_json(f"Invalid value for `{path}`: the date-time needs a UTC offset such as `Z`")
    return parsed.astimezone(UTC)
