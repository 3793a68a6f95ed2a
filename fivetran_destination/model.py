"""Table definitions, naming and document shape of the Fivetran destination (fivetran-destination.md §4-§6).

A :class:`TableDef` is the Fivetran definition of one table (columns with type, primary key and params). It
decides the Convex table name (``schema_table``), where each column lives in a document (top level,
``fivetran.<key>`` or ``fivetran.columns.<name>``), the two system indexes and the ``TableDefinitionJson``
posted to ``fivetran_create_table``. It also serializes to the JSON kept in the deployment's
``fivetran_destination_tables`` table, so DescribeTable can give back exactly what CreateTable/AlterTable got.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from connectors.constants import (
    FIVETRAN_ACTIVE_COLUMN,
    FIVETRAN_DELETED_COLUMN,
    FIVETRAN_END_COLUMN,
    FIVETRAN_ID_COLUMN,
    FIVETRAN_OBJECT,
    FIVETRAN_PRIMARY_KEY_INDEX,
    FIVETRAN_START_COLUMN,
    FIVETRAN_SYNCED_COLUMN,
    FIVETRAN_SYNCED_INDEX,
)
from connectors.identifiers import check_table_name, field_name_problem, is_identifier
from connectors.typemap.fivetran import (
    FivetranDataType,
    schema_ts_for_fivetran_type,
    validator_for_fivetran_type,
)
from protos import common_pb2

# The user table where the destination keeps each table's Fivetran definition (one document per table).
# A plain table, so it works against any Convex deployment and survives every backup/export as is.
METADATA_TABLE: Final = "fivetran_destination_tables"
METADATA_FORMAT: Final = 1

_SYSTEM_KEYS: Final = {
    FIVETRAN_SYNCED_COLUMN: "synced",
    FIVETRAN_DELETED_COLUMN: "deleted",
    FIVETRAN_ID_COLUMN: "id",
}


class DefinitionError(ValueError):
    """A table or column name or definition Convex cannot store; ``str()`` is the user-facing text."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a Fivetran column lives in a document: ``path`` of field names from the document root."""

    path: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def placement(column: str) -> Placement:
    """§4.2: system columns under ``fivetran``, other ``_`` columns under ``fivetran.columns``."""
    key = _SYSTEM_KEYS.get(column)
    if key is not None:
        return Placement((FIVETRAN_OBJECT, key))
    if column.startswith("_"):
        return Placement((FIVETRAN_OBJECT, "columns", column[1:]))
    return Placement((column,))


def convex_table_name(schema_name: str, table_name: str) -> str:
    """§4.1: ``schema.table`` -> ``schema_table``, checked with the strict table-name rule."""
    name = f"{schema_name}_{table_name}"
    try:
        check_table_name(name)
    except Exception as e:  # InvalidNameError, with the reason as its message
        reason = getattr(e, "message", str(e))
        raise DefinitionError(
            f"The name of table `{name}` isn\u2019t supported by Convex: {reason}"
        ) from None
    return name


@dataclass(frozen=True, slots=True)
class ColumnDef:
    name: str
    type: FivetranDataType
    primary_key: bool = False
    params: bytes | None = None  # serialized DataTypeParams, kept verbatim for DescribeTable

    @classmethod
    def from_proto(cls, column: common_pb2.Column) -> ColumnDef:
        params = column.params.SerializeToString() if column.HasField("params") else None
        return cls(column.name, FivetranDataType(int(column.type)), bool(column.primary_key), params)

    def to_proto(self) -> common_pb2.Column:
        column = common_pb2.Column(name=self.name, type=int(self.type), primary_key=self.primary_key)  # type: ignore[arg-type]
        if self.params is not None:
            column.params.ParseFromString(self.params)
        return column

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.name,
            "primaryKey": self.primary_key,
            "params": None if self.params is None else base64.b64encode(self.params).decode("ascii"),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ColumnDef:
        params = raw.get("params")
        return cls(
            str(raw["name"]),
            FivetranDataType[str(raw["type"])],
            bool(raw.get("primaryKey", False)),
            None if params is None else base64.b64decode(params),
        )


@dataclass(frozen=True, slots=True)
class TableDef:
    """One Fivetran table as the destination stores it."""

    convex_name: str
    columns: tuple[ColumnDef, ...]

    @classmethod
    def from_proto(cls, schema_name: str, table: common_pb2.Table) -> TableDef:
        name = convex_table_name(schema_name, table.name)
        definition = cls(name, tuple(ColumnDef.from_proto(c) for c in table.columns))
        definition.check()
        return definition

    def to_proto(self, fivetran_name: str) -> common_pb2.Table:
        return common_pb2.Table(name=fivetran_name, columns=[c.to_proto() for c in self.columns])

    def to_json(self) -> dict[str, Any]:
        return {"format": METADATA_FORMAT, "columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, convex_name: str, raw: Mapping[str, Any]) -> TableDef:
        return cls(convex_name, tuple(ColumnDef.from_json(c) for c in raw["columns"]))

    # --- derived facts ----------------------------------------------------------------------------------

    def column(self, name: str) -> ColumnDef | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns)

    @property
    def soft_deletes(self) -> bool:
        return FIVETRAN_DELETED_COLUMN in self.names

    @property
    def history_mode(self) -> bool:
        return FIVETRAN_START_COLUMN in self.names

    @property
    def primary_key(self) -> tuple[str, ...]:
        """Primary-key columns in byte order of their names (§5.2)."""
        return tuple(sorted((c.name for c in self.columns if c.primary_key), key=lambda n: n.encode()))

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The primary key without ``_fivetran_start``: what identifies a row across its history versions."""
        return tuple(n for n in self.primary_key if n != FIVETRAN_START_COLUMN)

    @property
    def primary_key_fields(self) -> list[str]:
        """Our ``_fivetran_by_primary_key``: the primary-key paths only — never ``fivetran.deleted`` first,
        so a soft-deleted row is still found by its key (fivetran-destination.md §13 item 11)."""
        return [placement(n).dotted for n in self.primary_key]

    @property
    def synced_fields(self) -> list[str]:
        fields = ["fivetran.synced"]
        return ["fivetran.deleted", *fields] if self.soft_deletes else fields

    def check(self) -> None:
        seen: set[str] = set()
        for c in self.columns:
            if c.name in seen:
                raise DefinitionError(f"The column `{c.name}` appears twice in table `{self.convex_name}`.")
            seen.add(c.name)
            if c.name == FIVETRAN_OBJECT:
                raise DefinitionError(
                    "The table in your data source contains a field named `fivetran`. This name isn\u2019t"
                    " supported in Convex, as it is used to store the Fivetran synchronization metadata."
                    " Please modify the name of the column in your data source."
                )
            for part in placement(c.name).path:
                problem = field_name_problem(part)
                if problem is not None or (c.primary_key and not is_identifier(part)):
                    raise DefinitionError(
                        f"The name of column `{c.name}` in table `{self.convex_name}` isn\u2019t supported by"
                        f" Convex: {problem or 'a primary-key column must be an identifier'}"
                    )
        if not self.primary_key:
            raise DefinitionError(
                f"The table `{self.convex_name}` has no primary key. Fivetran sends `_fivetran_id` as the"
                " primary key of tables without one; add it to the table definition."
            )

    def merged_with(self, desired: TableDef, drop_columns: bool) -> TableDef:
        """AlterTable: the desired definition; columns absent from it are kept unless ``drop_columns``."""
        if drop_columns:
            return desired
        kept = tuple(c for c in self.columns if desired.column(c.name) is None)
        # Kept columns are no longer part of the key: the request carries the full desired key.
        kept = tuple(replace(c, primary_key=False) for c in kept)
        return replace(desired, columns=desired.columns + kept)

    # --- the server's table definition (streaming-import.md §11.2) --------------------------------------

    def create_table_body(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        fivetran: dict[str, Any] = {}
        columns: dict[str, Any] = {}
        for c in self.columns:
            p = placement(c.name).path
            validator = validator_for_fivetran_type(c.type, nullable=True)
            if len(p) == 1:
                fields[p[0]] = {"fieldType": validator, "optional": True}
            elif len(p) == 2:
                nullable = p[1] not in ("synced", "deleted", "id")
                fivetran[p[1]] = {
                    "fieldType": validator_for_fivetran_type(c.type, nullable),
                    "optional": True,
                }
            else:
                columns[p[2]] = {"fieldType": validator, "optional": True}
        fivetran["columns"] = {"fieldType": {"type": "object", "value": columns}, "optional": not columns}
        fields[FIVETRAN_OBJECT] = {"fieldType": {"type": "object", "value": fivetran}, "optional": False}
        return {
            "tableName": self.convex_name,
            "indexes": sorted(
                [
                    {"indexDescriptor": FIVETRAN_PRIMARY_KEY_INDEX, "fields": self.primary_key_fields},
                    {"indexDescriptor": FIVETRAN_SYNCED_INDEX, "fields": self.synced_fields},
                ],
                key=lambda i: i["indexDescriptor"],
            ),
            "searchIndexes": [],
            "stagedDbIndexes": [],
            "stagedSearchIndexes": [],
            "vectorIndexes": [],
            "stagedVectorIndexes": [],
            "documentType": {"type": "object", "value": fields},
        }

    def schema_ts(self) -> str:
        """The ``convex/schema.ts`` table text to paste (fivetran-destination.md §11.2)."""
        top: dict[str, str] = {}
        meta: dict[str, str] = {}
        cols: dict[str, str] = {}
        for c in self.columns:
            p = placement(c.name).path
            if len(p) == 1:
                top[p[0]] = schema_ts_for_fivetran_type(c.type, nullable=True)
            elif len(p) == 2:
                meta[p[1]] = schema_ts_for_fivetran_type(
                    c.type, nullable=p[1] not in ("synced", "deleted", "id")
                )
            else:
                cols[p[2]] = schema_ts_for_fivetran_type(c.type, nullable=True)
        if cols:
            meta["columns"] = "v.object({" + ", ".join(f"{k}: {v}" for k, v in sorted(cols.items())) + "})"
        top[FIVETRAN_OBJECT] = "v.object({" + ", ".join(f"{k}: {v}" for k, v in sorted(meta.items())) + "})"
        fields = ", ".join(f"{k}: {v}" for k, v in sorted(top.items()))
        indexes = "".join(
            f'.index("{name}", [{", ".join(chr(34) + f + chr(34) for f in flds)}])'
            for name, flds in sorted(
                [
                    (FIVETRAN_PRIMARY_KEY_INDEX, self.primary_key_fields),
                    (FIVETRAN_SYNCED_INDEX, self.synced_fields),
                ]
            )
        )
        return f"`{self.convex_name}: defineTable({{ {fields} }}){indexes}`"


HISTORY_COLUMNS: Final = (FIVETRAN_START_COLUMN, FIVETRAN_END_COLUMN, FIVETRAN_ACTIVE_COLUMN)


def get_path(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    cur: Any = doc
    for part in path:
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def set_path(doc: dict[str, Any], path: Sequence[str], value: Any) -> None:
    cur = doc
    for part in path[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[path[-1]] = value


def merge_update(existing: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """The server's Update patch rules (streaming-import.md §10.2): top-level fields replace, ``fivetran``
    merges key by key, ``fivetran.columns`` merges too (our rows only carry the modified columns)."""
    merged = {k: v for k, v in existing.items() if k not in ("_id", "_creationTime")}
    for key, value in update.items():
        if key == FIVETRAN_OBJECT and isinstance(value, Mapping):
            meta = dict(merged.get(FIVETRAN_OBJECT) or {})
            for mk, mv in value.items():
                if mk == "columns" and isinstance(mv, Mapping):
                    meta["columns"] = {**(meta.get("columns") or {}), **mv}
                else:
                    meta[mk] = mv
            merged[FIVETRAN_OBJECT] = meta
        else:
            merged[key] = value
    return merged


def key_of(doc: Mapping[str, Any], columns: Iterable[str]) -> tuple[Any, ...]:
    """A hashable key of a document or converted row from the given Fivetran columns."""
    return tuple(_hashable(get_path(doc, placement(c).path)) for c in columns)


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    # Int64 and Float64 are distinct Convex values with equal Python hashes for integral floats.
    return (type(value).__name__, value)
