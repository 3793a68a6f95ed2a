"""``Migrate`` (fivetran-sdk.md §11): the operations that map onto a document store.

Supported (each rewrites documents through ``apply_fivetran_operations`` Upserts keyed by the primary key, reading
the table through the sync engine's snapshot reader, and updates the stored definition):

- ``drop.drop_table``: the table is emptied (``fivetran_truncate_table`` hard, no date) and forgotten
  (DescribeTable answers ``not_found``); Convex keeps the empty table and its indexes.
- ``add.add_column_with_default_value`` (re-sent for an existing column: the values are set again),
  ``update_column_value`` (``NULL`` — and ``""`` for non-text types — sets null),
  ``rename.rename_column`` (not of a primary-key column), ``copy.copy_column``,
  ``copy.copy_table``, ``rename.rename_table`` (copy, then drop the source).
- ``table_sync_mode_migration`` SOFT_DELETE_TO_HISTORY and HISTORY_TO_SOFT_DELETE, and
  ``copy.copy_table_to_history_mode`` (copy, then SOFT_DELETE_TO_HISTORY on the copy), with the standard
  ``_fivetran_deleted`` column only. A change of primary key goes through a staging table
  ``<table>_fivetran_migration``, left empty afterwards.

Everything else (history-mode column add/drop, the *_TO_LIVE / LIVE_TO_* modes) answers
``unsupported``, so Fivetran falls back where it can.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Final

from connectors.batching import BatchLimits
from connectors.client import ConvexClient
from connectors.constants import (
    FIVETRAN_ACTIVE_COLUMN,
    FIVETRAN_DELETED_COLUMN,
    FIVETRAN_END_COLUMN,
    FIVETRAN_START_COLUMN,
    FIVETRAN_SYNCED_COLUMN,
    FIVETRAN_UPSERT,
)
from connectors.sync import HttpReader, Rows, SyncMode, SyncSelection, SyncState, TableRef, run_sync
from connectors.typemap.fivetran import FivetranCellError, FivetranDataType, parse_fivetran_cell
from fivetran_destination.metadata import MetadataStore
from fivetran_destination.model import (
    ColumnDef,
    TableDef,
    convex_table_name,
    get_path,
    key_of,
    placement,
    set_path,
)
from fivetran_destination.rows import encode_doc
from fivetran_destination.writer import OperationSink, operation, run_pipeline
from protos import destination_sdk_pb2

# The largest UTC_DATETIME Fivetran writes for an open history version (9999-12-31T23:59:59.999Z).
MAX_TIMESTAMP_MS: Final = 253402300799999.0
_TEXT_TYPES: Final = frozenset(
    {FivetranDataType.STRING, FivetranDataType.XML, FivetranDataType.DECIMAL, FivetranDataType.JSON}
)


class MigrationError(Exception):
    """The migration cannot run; ``str()`` is the Task message."""


def documents(client: ConvexClient, name: str) -> Iterator[dict[str, Any]]:
    """The table's documents (encoded, without ``_id``/``_creationTime``) from one consistent snapshot."""
    events = run_sync(
        HttpReader(client),
        SyncSelection.of_tables([TableRef("", name)]),
        SyncState.fresh(),
        SyncMode.SNAPSHOT_ONLY,
    )
    try:
        for event in events:
            if isinstance(event, Rows):
                for doc in event.documents:
                    yield encode_doc({k: v for k, v in doc.items() if k not in ("_id", "_creationTime")})
    finally:
        events.close()


def _rewrite(
    client: ConvexClient,
    source: str,
    target: str,
    transform: Callable[[dict[str, Any]], dict[str, Any] | None],
    limits: BatchLimits,
) -> None:
    def produce(add: Callable[[Any, int], None]) -> None:
        for doc in documents(client, source):
            new = transform(doc)
            if new is not None:
                add(*operation(target, FIVETRAN_UPSERT, new))

    run_pipeline(produce, OperationSink(client), limits)


def _setter(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(doc: dict[str, Any]) -> dict[str, Any]:
        set_path(doc, path, value)
        return doc

    return apply


def _value(text: str, column: ColumnDef) -> Any:
    if text.upper() == "NULL" or (text == "" and column.type not in _TEXT_TYPES):
        return None
    try:
        return encode_doc({"v": parse_fivetran_cell(text, column.type, column.name)})["v"]
    except FivetranCellError as e:
        raise MigrationError(f"The value given for column `{column.name}` does not parse: {e}") from None


def migrate(client: ConvexClient, details: destination_sdk_pb2.MigrationDetails, limits: BatchLimits) -> bool:
    """Run one migration; False when it is not supported."""
    store = MetadataStore(client)
    name = convex_table_name(details.schema, details.table) if details.table else ""
    op = details.WhichOneof("operation")

    def load(convex_name: str) -> TableDef:
        table = store.get(convex_name)
        if table is None:
            raise MigrationError(
                f"The table `{convex_name}` was not created by this destination (no stored definition), so it"
                " cannot be migrated. Let Fivetran re-sync the table."
            )
        return table

    def drop(convex_name: str) -> None:
        client.fivetran_truncate_table(convex_name, None, "HardDelete")
        store.delete(convex_name)

    def create(table: TableDef) -> None:
        client.fivetran_create_table(table.create_table_body())
        store.put(table)

    if op == "drop":
        if details.drop.WhichOneof("entity") != "drop_table" or not details.drop.drop_table:
            return False
        if store.get(name) is not None:
            drop(name)
        return True
    if op == "add" and details.add.WhichOneof("entity") == "add_column_with_default_value":
        add = details.add.add_column_with_default_value
        table = load(name)
        column: ColumnDef = table.column(add.column) or ColumnDef(
            add.column, FivetranDataType(int(add.column_type))
        )
        value = _value(add.default_value, column)
        if table.column(add.column) is None:
            table = replace(table, columns=(*table.columns, column))
            create(table)
        path = placement(column.name).path
        _rewrite(client, name, name, _setter(path, value), limits)
        return True
    if op == "update_column_value":
        upd = details.update_column_value
        table = load(name)
        target_column = table.column(upd.column)
        if target_column is None:
            raise MigrationError(f"The table `{name}` has no column `{upd.column}` to update.")
        value = _value(upd.value, target_column)
        path = placement(target_column.name).path
        _rewrite(client, name, name, _setter(path, value), limits)
        return True
    if op == "copy" and details.copy.WhichOneof("entity") == "copy_column":
        cc = details.copy.copy_column
        table = load(name)
        source_column = table.column(cc.from_column)
        if source_column is None:
            raise MigrationError(f"The table `{name}` has no column `{cc.from_column}` to copy.")
        if table.column(cc.to_column) is None:
            table = replace(
                table,
                columns=(
                    *table.columns,
                    ColumnDef(cc.to_column, source_column.type, False, source_column.params),
                ),
            )
            create(table)
        src, dst = placement(cc.from_column).path, placement(cc.to_column).path
        _rewrite(client, name, name, lambda d: _setter(dst, get_path(d, src))(d), limits)
        return True
    if op == "rename" and details.rename.WhichOneof("entity") == "rename_column":
        rc = details.rename.rename_column
        table = load(name)
        renamed = table.column(rc.from_column)
        if renamed is None:
            raise MigrationError(f"The table `{name}` has no column `{rc.from_column}` to rename.")
        if renamed.primary_key:
            return False  # the primary-key index would change under the documents: let Fivetran re-sync
        table = replace(
            table,
            columns=tuple(
                replace(c, name=rc.to_column) if c.name == rc.from_column else c for c in table.columns
            ),
        )
        table.check()
        src, dst = placement(rc.from_column).path, placement(rc.to_column).path

        def move(d: dict[str, Any]) -> dict[str, Any]:
            value = get_path(d, src)
            parent = d if len(src) == 1 else get_path(d, src[:-1])
            if isinstance(parent, dict):
                parent.pop(src[-1], None)
            set_path(d, dst, value)
            return d

        create(table)
        _rewrite(client, name, name, move, limits)
        return True
    if (op == "copy" and details.copy.WhichOneof("entity") == "copy_table") or (
        op == "rename" and details.rename.WhichOneof("entity") == "rename_table"
    ):
        entity = details.copy.copy_table if op == "copy" else details.rename.rename_table
        source = convex_table_name(details.schema, entity.from_table)
        target = convex_table_name(details.schema, entity.to_table)
        table = load(source)
        target_table = replace(table, convex_name=target)
        target_table.check()
        if op == "copy" and store.get(target) is not None:
            client.fivetran_truncate_table(target, None, "HardDelete")  # a re-sent copy starts over
        create(target_table)
        _rewrite(client, source, target, lambda d: d, limits)
        if op == "rename":
            drop(source)
        return True
    if op == "copy" and details.copy.WhichOneof("entity") == "copy_table_to_history_mode":
        ch = details.copy.copy_table_to_history_mode
        if ch.soft_deleted_column not in ("", FIVETRAN_DELETED_COLUMN):
            return False
        origin = load(convex_table_name(details.schema, ch.from_table))
        copy = replace(origin, convex_name=convex_table_name(details.schema, ch.to_table))
        copy.check()
        if store.get(copy.convex_name) is not None:
            client.fivetran_truncate_table(copy.convex_name, None, "HardDelete")
        create(copy)
        _rewrite(client, origin.convex_name, copy.convex_name, lambda d: d, limits)
        _soft_delete_to_history(client, copy, create, limits)
        return True
    if op == "table_sync_mode_migration":
        mode = details.table_sync_mode_migration.type
        if mode == destination_sdk_pb2.SOFT_DELETE_TO_HISTORY:
            _soft_delete_to_history(client, load(name), create, limits)
            return True
        if mode == destination_sdk_pb2.HISTORY_TO_SOFT_DELETE:
            _history_to_soft_delete(client, load(name), create, limits)
            return True
    return False


def _soft_delete_to_history(
    client: ConvexClient, table: TableDef, create: Callable[[TableDef], None], limits: BatchLimits
) -> None:
    if table.history_mode:
        return
    name = table.convex_name
    synced = placement(FIVETRAN_SYNCED_COLUMN).path
    latest = max(
        (v for d in documents(client, name) if isinstance(v := get_path(d, synced), int | float)), default=0.0
    )
    columns = [c for c in table.columns if c.name != FIVETRAN_DELETED_COLUMN]
    columns += [
        ColumnDef(FIVETRAN_START_COLUMN, FivetranDataType.UTC_DATETIME, True),
        ColumnDef(FIVETRAN_END_COLUMN, FivetranDataType.UTC_DATETIME),
        ColumnDef(FIVETRAN_ACTIVE_COLUMN, FivetranDataType.BOOLEAN),
    ]
    history = replace(table, columns=tuple(columns))
    # Documents are keyed by the old primary key until rewritten: empty the table, then write the versions.
    start, end, active = (
        placement(c).path for c in (FIVETRAN_START_COLUMN, FIVETRAN_END_COLUMN, FIVETRAN_ACTIVE_COLUMN)
    )

    def to_version(d: dict[str, Any]) -> dict[str, Any]:
        deleted = get_path(d, ("fivetran", "deleted")) is True
        d.get("fivetran", {}).pop("deleted", None)
        set_path(d, active, not deleted)
        set_path(d, start, 0.0 if deleted else latest)
        set_path(d, end, 0.0 if deleted else MAX_TIMESTAMP_MS)
        return d

    _swap_rewrite(client, table, history, name, to_version, create, limits)


def _history_to_soft_delete(
    client: ConvexClient, table: TableDef, create: Callable[[TableDef], None], limits: BatchLimits
) -> None:
    if not table.history_mode:
        return
    name = table.convex_name
    start, end, active = (
        placement(c).path for c in (FIVETRAN_START_COLUMN, FIVETRAN_END_COLUMN, FIVETRAN_ACTIVE_COLUMN)
    )
    key_columns = table.key_columns
    # The latest version per key: only keys and starts are kept while scanning.

    latest: dict[tuple[Any, ...], float] = {}
    for d in documents(client, name):
        key = key_of(d, key_columns)
        s = get_path(d, start)
        s = float(s) if isinstance(s, int | float) else 0.0
        latest[key] = max(s, latest.get(key, -1.0))
    columns = [
        c
        for c in table.columns
        if c.name not in (FIVETRAN_START_COLUMN, FIVETRAN_END_COLUMN, FIVETRAN_ACTIVE_COLUMN)
    ]
    columns = [replace(c, primary_key=c.primary_key) for c in columns]
    if all(c.name != FIVETRAN_DELETED_COLUMN for c in columns):
        columns.append(ColumnDef(FIVETRAN_DELETED_COLUMN, FivetranDataType.BOOLEAN))
    soft = replace(table, columns=tuple(columns))

    def to_row(d: dict[str, Any]) -> dict[str, Any] | None:
        s = get_path(d, start)
        s = float(s) if isinstance(s, int | float) else 0.0
        if s != latest.get(key_of(d, key_columns)):
            return None
        is_active = get_path(d, active) is True
        meta = d.setdefault("fivetran", {})
        cols = meta.get("columns") or {}
        for p in (start, end, active):
            cols.pop(p[-1], None)
        if cols:
            meta["columns"] = cols
        else:
            meta.pop("columns", None)
        meta["deleted"] = not is_active
        return d

    _swap_rewrite(client, table, soft, name, to_row, create, limits)


def _swap_rewrite(
    client: ConvexClient,
    old: TableDef,
    new: TableDef,
    name: str,
    transform: Callable[[dict[str, Any]], dict[str, Any] | None],
    create: Callable[[TableDef], None],
    limits: BatchLimits,
) -> None:
    """Rewrite a table whose primary key changes: copy the transformed documents to a staging table, empty
    the table, recreate its indexes for the new key, copy back, drop the staging table."""
    staging = f"{name}_fivetran_migration"
    client.fivetran_truncate_table(staging, None, "HardDelete")
    client.fivetran_create_table(replace(new, convex_name=staging).create_table_body())
    _rewrite(client, name, staging, transform, limits)
    client.fivetran_truncate_table(name, None, "HardDelete")
    create(new)
    _rewrite(client, staging, name, lambda d: d, limits)
    client.fivetran_truncate_table(staging, None, "HardDelete")
