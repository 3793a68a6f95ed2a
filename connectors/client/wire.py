"""The client's wire types: exported documents and pages, and the bodies of the import calls.

Frozen records (named tuples where pages hold thousands); ``to_json`` gives the exact JSON the real clients
send (streaming-import.md §6, §10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from connectors.constants import ExportFormat, FivetranOperationType, TruncateDeleteType

__all__ = [
    "AirbyteMessage",
    "AirbyteStream",
    "DeltaPage",
    "ExportFormat",
    "ExportedValue",
    "FivetranOperation",
    "FivetranOperationType",
    "SnapshotPage",
    "TableColumns",
    "TruncateDeleteType",
    "encode_row",
]


# --- export --------------------------------------------------------------------------------------------


class ExportedValue(NamedTuple):
    """One exported document revision.

    ``document`` holds the document fields only (``_id``, ``_creationTime``, user fields). For the encoded
    formats the fields are decoded into Python Convex values (int = Int64, float = Float64, bytes = Bytes);
    for the clean ``json`` format they are the JSON as received. ``deleted`` is always False in snapshots.
    (A named tuple: pages hold thousands of these, and tuples are the cheapest immutable record.)
    """

    component: str
    table: str
    ts: int
    deleted: bool
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    values: list[ExportedValue]
    snapshot: int
    cursor: str | None
    has_more: bool


@dataclass(frozen=True, slots=True)
class DeltaPage:
    values: list[ExportedValue]
    cursor: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class TableColumns:
    name: str
    columns: tuple[str, ...]


# --- import --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AirbyteStream:
    """A ``tables`` entry of import_airbyte_records; ``primary_key`` None = append mode, else dedup."""

    primary_key: list[list[str]] | None
    json_schema: Any

    @property
    def appends(self) -> bool:
        """Append mode: every record is inserted, so a repeated request inserts it again."""
        return self.primary_key is None

    def to_json(self) -> dict[str, Any]:
        return {"primaryKey": self.primary_key, "jsonSchema": self.json_schema}


@dataclass(frozen=True, slots=True)
class AirbyteMessage:
    table_name: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"tableName": self.table_name, "data": self.data}


@dataclass(frozen=True, slots=True)
class FivetranOperation:
    """One BatchWriteRow; ``row`` is already Convex internal JSON (use ``encode_row`` to build it)."""

    table: str
    operation: FivetranOperationType
    row: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "operation": self.operation, "row": self.row}


def encode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Encode a row of Python Convex values into Convex internal JSON (values-and-ids.md §2.4)."""
    from connectors import values  # lazy: only import paths need it

    return {key: values.to_encoded_json(value) for key, value in row.items()}


# --- encoding helpers ----------------------------------------------------------------------------------


def rfc3339_utc(dt: datetime) -> str:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("delete_before must be timezone-aware (naive datetimes are ambiguous)")
    utc = dt.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def bool_param(value: bool) -> str:
    return "true" if value else "false"


def orjson_default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return list(obj)
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")
