"""``Migrate`` (fivetran-sdk.md §11; Fivetran's "schema migration helper" semantics) on a document store.

Every operation rewrites documents through ``apply_fivetran_operations`` (Upsert / HardDelete keyed by the
primary key), reading the table through the sync engine's snapshot reader (one consistent snapshot per pass,
never the whole table in memory), and updates the stored definition (what DescribeTable answers).

Supported:

- ``drop.drop_table``: the table is emptied (``fivetran_truncate_table`` hard, no date) and forgotten
  (DescribeTable answers ``not_found``); Convex keeps the empty table and its indexes.
- ``add.add_column_with_default_value`` (re-sent for an existing column: the values are set again),
  ``update_column_value`` (``NULL`` — and ``""`` for non-text types — sets null), ``rename.rename_column``
  (a primary-key column too), ``copy.copy_column``, ``copy.copy_table``, ``rename.rename_table`` (copy, then
  drop the source).
- ``add.add_column_in_history_mode`` / ``drop.drop_column_in_history_mode``: a new version (starting at
  ``operation_timestamp``) of every active row, the old one closed at ``operation_timestamp - 1 ms``.
- ``table_sync_mode_migration``: all six modes, and ``copy.copy_table_to_history_mode``.

A change of primary key (to or from history mode, renaming a key column) happens in place, in three steps
that keep the documents unique under whichever key index is current: (1) under the old key, add the new
key's fields to every document and delete the rows the new key would duplicate; (2) switch the indexes and
the stored definition; (3) under the new key, drop the fields the new definition no longer has. A failure
in any step leaves every row in the table (step 1 only adds fields the old definition does not describe)
and the Task says which step stopped; re-sending the migration completes it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

from connectors.batching import BatchLimits
from connectors.client import ConvexClient
from connectors.constants import (
    FIVETRAN_ACTIVE_COLUMN,
    FIVETRAN_DELETED_COLUMN,
    FIVETRAN_END_COLUMN,
    FIVETRAN_HARD_DELETE,
    FIVETRAN_START_COLUMN,
    FIVETRAN_SYNCED_COLUMN,
    FIVETRAN_UPSERT,
    FivetranOperationType,
)
from connectors.errors import ConvexError
from connectors.sync import HttpReader, Rows, SyncMode, SyncSelection, SyncState, TableRef, run_sync
from connectors.typemap.fivetran import FivetranCellError, FivetranDataType, parse_fivetran_cell
from fivetran_destination.metadata import MetadataStore
from fivetran_destination.model import (
    HISTORY_COLUMNS,
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
# Fivetran's "min timestamp" for the start and end of a version that was already deleted.
MIN_TIMESTAMP_MS: Final = 0.0
_TEXT_TYPES: Final = frozenset(
    {FivetranDataType.STRING, FivetranDataType.XML, FivetranDataType.DECIMAL, FivetranDataType.JSON}
)
_START: Final = placement(FIVETRAN_START_COLUMN).path
_END: Final = placement(FIVETRAN_END_COLUMN).path
_ACTIVE: Final = placement(FIVETRAN_ACTIVE_COLUMN).path
_SYNCED: Final = placement(FIVETRAN_SYNCED_COLUMN).path

Doc = dict[str, Any]
Op = tuple[FivetranOperationType, Doc]


class MigrationError(Exception):
    """The migration cannot run; ``str()`` is the Task message."""


def documents(client: ConvexClient, name: str) -> Iterator[Doc]:
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


def _value(text: str, column: ColumnDef) -> Any:
    if text.upper() == "NULL" or (text == "" and column.type not in _TEXT_TYPES):
        return None
    try:
        return encode_doc({"v": parse_fivetran_cell(text, column.type, column.name)})["v"]
    except FivetranCellError as e:
        raise MigrationError(f"The value given for column `{column.name}` does not parse: {e}") from None


def _timestamp_ms(text: str, what: str) -> float:
    try:
        value = parse_fivetran_cell(text, FivetranDataType.UTC_DATETIME, what)
    except FivetranCellError:
        raise MigrationError(
            f"The {what} of the migration is not a UTC datetime (RFC 3339, e.g. `2024-01-15T10:30:00Z`)."
        ) from None
    if not isinstance(value, float):  # parse_fivetran_cell gives UTC_DATETIME as Float64 milliseconds
        raise MigrationError(f"The {what} of the migration is not a UTC datetime.")
    return value


def _start_of(doc: Doc) -> float:
    value = get_path(doc, _START)
    return float(value) if isinstance(value, int | float) else MIN_TIMESTAMP_MS


def _without(doc: Doc, paths: Iterable[tuple[str, ...]]) -> bool:
    """Remove the fields at ``paths`` (an emptied ``fivetran.columns`` goes too); True if any was there."""
    removed = False
    for path in paths:
        parent = doc if len(path) == 1 else get_path(doc, path[:-1])
        if isinstance(parent, dict) and path[-1] in parent:
            del parent[path[-1]]
            removed = True
    meta = doc.get("fivetran")
    if isinstance(meta, dict) and meta.get("columns") == {}:
        del meta["columns"]
    return removed


@dataclass
class _Migration:
    client: ConvexClient
    store: MetadataStore
    limits: BatchLimits

    # --- table definitions ---------------------------------------------------------------------------

    def load(self, convex_name: str) -> TableDef:
        table = self.store.get(convex_name)
        if table is None:
            raise MigrationError(
                f"The table `{convex_name}` was not created by this destination (no stored definition), so it"
                " cannot be migrated. Let Fivetran re-sync the table."
            )
        return table

    def create(self, table: TableDef) -> None:
        """Indexes first, then the stored definition: DescribeTable never describes indexes not there yet."""
        self.client.fivetran_create_table(table.create_table_body())
        self.store.put(table)

    def drop(self, convex_name: str) -> None:
        self.client.fivetran_truncate_table(convex_name, None, "HardDelete")
        self.store.delete(convex_name)

    # --- rewriting documents -------------------------------------------------------------------------

    def rewrite(self, source: str, target: str, transform: Callable[[Doc], Iterable[Op]]) -> None:
        """Stream ``source`` and apply ``transform``'s operations to ``target`` (bounded memory)."""

        def produce(add: Callable[[Any, int], None]) -> None:
            for doc in documents(self.client, source):
                for kind, row in transform(doc):
                    add(*operation(target, kind, row))

        run_pipeline(produce, OperationSink(self.client), self.limits)

    def update_each(self, name: str, change: Callable[[Doc], Doc | None]) -> None:
        """Upsert every document ``change`` returns (None: leave the document as it is)."""

        def transform(doc: Doc) -> Iterable[Op]:
            new = change(doc)
            return () if new is None else ((FIVETRAN_UPSERT, new),)

        self.rewrite(name, name, transform)

    def step(self, name: str, number: int, what: str, state: str, run: Callable[[], None]) -> None:
        """Run one step of a multi-step migration; a deployment error says where it stopped."""
        try:
            run()
        except ConvexError as e:
            raise MigrationError(
                f"The migration of `{name}` stopped at step {number} ({what}): An error occurred on the Convex"
                f" deployment: {e.user_message} {state} Re-sending the migration completes it."
            ) from None

    def change_key(
        self,
        old: TableDef,
        new: TableDef,
        prepare: Callable[[Doc], Iterable[Op]],
        finish: Callable[[Doc], Doc | None],
        prepared_state: str = "Every row is still in the table, under its old definition.",
    ) -> None:
        """The three steps of a primary-key change (module docstring). ``prepare`` runs under the old key
        and must leave every document with the new key's fields and unique under the new key."""
        name = old.convex_name
        new.check()
        self.step(
            name,
            1,
            "preparing the rows under the old key",
            prepared_state,
            lambda: self.rewrite(name, name, prepare),
        )
        self.step(
            name,
            2,
            "switching the key index",
            "Every row is in the table and carries the fields of both definitions.",
            lambda: self.create(new),
        )
        self.step(
            name,
            3,
            "removing the fields of the old definition",
            "The table has its new definition; some rows still carry fields of the old one.",
            lambda: self.update_each(name, finish),
        )

    # --- sync modes ----------------------------------------------------------------------------------

    def to_history(self, table: TableDef, soft_column: str | None, live_start: float | None) -> None:
        """SOFT_DELETE_TO_HISTORY (``soft_column`` marks the deleted rows; active rows start at
        ``MAX(_fivetran_synced)``) or LIVE_TO_HISTORY (every row active from ``live_start``)."""
        name = table.convex_name
        if table.history_mode:
            # Already done, or a re-sent migration whose step 3 stopped: finish removing the soft flag
            # (history tables never have `_fivetran_deleted`).
            flag = [placement(FIVETRAN_DELETED_COLUMN).path]
            self.update_each(name, lambda d: d if _without(d, flag) else None)
            return
        dropped = (FIVETRAN_DELETED_COLUMN,) if table.soft_deletes else ()
        strip = [placement(c).path for c in dropped]
        soft_path = placement(soft_column).path if soft_column and table.column(soft_column) else None
        start_active = live_start
        if start_active is None:
            synced = (get_path(d, _SYNCED) for d in documents(self.client, name))
            start_active = max(
                (float(v) for v in synced if isinstance(v, int | float)), default=MIN_TIMESTAMP_MS
            )
        columns = [c for c in table.columns if c.name not in dropped]
        columns += [
            ColumnDef(FIVETRAN_START_COLUMN, FivetranDataType.UTC_DATETIME, True),
            ColumnDef(FIVETRAN_END_COLUMN, FivetranDataType.UTC_DATETIME),
            ColumnDef(FIVETRAN_ACTIVE_COLUMN, FivetranDataType.BOOLEAN),
        ]
        history = replace(table, columns=tuple(columns))

        def prepare(d: Doc) -> Iterable[Op]:
            deleted = soft_path is not None and get_path(d, soft_path) is True
            set_path(d, _ACTIVE, not deleted)
            set_path(d, _START, MIN_TIMESTAMP_MS if deleted else start_active)
            set_path(d, _END, MIN_TIMESTAMP_MS if deleted else MAX_TIMESTAMP_MS)
            return ((FIVETRAN_UPSERT, d),)

        self.change_key(table, history, prepare, lambda d: d if _without(d, strip) else None)

    def from_history(self, table: TableDef, soft_column: str | None, keep_deleted_rows: bool) -> None:
        """HISTORY_TO_SOFT_DELETE (``soft_column`` set: the latest version of every key, flagged deleted
        when inactive) or HISTORY_TO_LIVE (the active versions, plus the latest version of deleted keys
        when ``keep_deleted_rows``). One row per key either way: the primary key must stay unique."""
        name = table.convex_name
        strip = [placement(c).path for c in HISTORY_COLUMNS]
        if not table.history_mode:
            # Already done, or a re-sent migration whose step 3 stopped: finish removing the history fields.
            self.update_each(name, lambda d: d if _without(d, strip) else None)
            return
        key_columns = table.key_columns
        # The latest start per key, keyed by a 128-bit digest of the key (never documents): memory grows
        # with the number of keys only, ~150 bytes each.
        latest: dict[bytes, float] = {}
        for d in documents(self.client, name):
            digest = _key_digest(key_of(d, key_columns))
            latest[digest] = max(_start_of(d), latest.get(digest, -1.0))
        columns = [
            replace(c, primary_key=False) if c.name == FIVETRAN_START_COLUMN else c for c in table.columns
        ]
        columns = [c for c in columns if c.name not in HISTORY_COLUMNS]
        soft_path = None
        if soft_column is not None:
            soft_path = placement(soft_column).path
            if all(c.name != soft_column for c in columns):
                columns.append(ColumnDef(soft_column, FivetranDataType.BOOLEAN))
        target = replace(table, columns=tuple(columns))

        def prepare(d: Doc) -> Iterable[Op]:
            active = get_path(d, _ACTIVE) is True
            keep = _start_of(d) == latest.get(_key_digest(key_of(d, key_columns))) and (
                active or soft_path is not None or keep_deleted_rows
            )
            if not keep:
                return ((FIVETRAN_HARD_DELETE, _key_row(d, table)),)
            if soft_path is None:
                return ()  # kept as is until step 3
            set_path(d, soft_path, not active)
            return ((FIVETRAN_UPSERT, d),)

        self.change_key(
            table,
            target,
            prepare,
            lambda d: d if _without(d, strip) else None,
            "The table is still in history mode; the older versions of some keys may already be deleted.",
        )

    def soft_delete_to_live(self, table: TableDef, soft_column: str) -> None:
        """Delete the rows flagged in ``soft_column``; ``_fivetran_deleted`` itself is dropped. The primary
        key does not change: rows first, then the definition (a re-send finishes a partial run)."""
        name = table.convex_name
        soft_path = placement(soft_column).path
        drop_flag = soft_column == FIVETRAN_DELETED_COLUMN

        def transform(d: Doc) -> Iterable[Op]:
            if get_path(d, soft_path) is True:
                return ((FIVETRAN_HARD_DELETE, _key_row(d, table)),)
            if drop_flag and _without(d, [soft_path]):
                return ((FIVETRAN_UPSERT, d),)
            return ()

        self.rewrite(name, name, transform)
        if drop_flag and table.soft_deletes:
            self.create(replace(table, columns=tuple(c for c in table.columns if c.name != soft_column)))

    def live_to_soft_delete(self, table: TableDef, soft_column: str) -> None:
        """Add ``soft_column`` (BOOLEAN) and set it to false where it is null or absent. The definition
        first, so the sync index already has ``fivetran.deleted`` when the rows get it."""
        name = table.convex_name
        if table.column(soft_column) is None:
            self.create(
                replace(table, columns=(*table.columns, ColumnDef(soft_column, FivetranDataType.BOOLEAN)))
            )
        soft_path = placement(soft_column).path

        def change(d: Doc) -> Doc | None:
            if get_path(d, soft_path) is not None:
                return None
            set_path(d, soft_path, False)
            return d

        self.update_each(name, change)

    # --- history-mode columns ------------------------------------------------------------------------

    def new_versions(
        self, table: TableDef, op_ts: float, path: tuple[str, ...], value: Any, only_if_set: bool
    ) -> None:
        """ADD/DROP_COLUMN_IN_HISTORY_MODE: every active version that started before ``op_ts`` (and, when
        ``only_if_set``, has a non-null value at ``path``) gets a successor starting at ``op_ts`` with
        ``value`` at ``path`` and is closed at ``op_ts - 1 ms``; versions starting at ``op_ts`` (a re-sent
        migration) get ``value``. The successor is written before the old version is closed, so a failure
        never leaves a key without its active version."""
        name = table.convex_name
        too_late = 0
        for d in documents(self.client, name):
            if get_path(d, _ACTIVE) is True and _start_of(d) > op_ts:
                too_late += 1
        if too_late:
            raise MigrationError(
                f"The table `{name}` has {too_late} active row(s) whose `{FIVETRAN_START_COLUMN}` is later than"
                " the migration's operation_timestamp, so the column change cannot be recorded in the history."
                " Re-send the migration with a later operation_timestamp, or re-sync the table."
            )

        def transform(d: Doc) -> Iterable[Op]:
            if get_path(d, _ACTIVE) is not True:
                return ()
            start = _start_of(d)
            if start == op_ts:
                if get_path(d, path) == value:
                    return ()
                set_path(d, path, value)
                return ((FIVETRAN_UPSERT, d),)
            if only_if_set and get_path(d, path) is None:
                return ()
            successor = _deep_copy(d)
            set_path(successor, path, value)
            set_path(successor, _START, op_ts)
            set_path(successor, _END, MAX_TIMESTAMP_MS)
            set_path(successor, _ACTIVE, True)
            set_path(d, _END, op_ts - 1.0)
            set_path(d, _ACTIVE, False)
            return ((FIVETRAN_UPSERT, successor), (FIVETRAN_UPSERT, d))

        self.rewrite(name, name, transform)


def _key_digest(key: tuple[Any, ...]) -> bytes:
    # key_of's tuples hold (type name, value) pairs of Convex-JSON values, so their repr is deterministic.
    return hashlib.blake2b(repr(key).encode(), digest_size=16).digest()


def _deep_copy(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _deep_copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_deep_copy(v) for v in doc]
    return doc


def _key_row(doc: Doc, table: TableDef) -> Doc:
    """A row holding only the primary-key fields of ``doc`` (and the ``fivetran`` object they live in)."""
    row: Doc = {"fivetran": {}}
    for column in table.primary_key:
        path = placement(column).path
        set_path(row, path, get_path(doc, path))
    return row


def _soft_column(name: str) -> str:
    return name or FIVETRAN_DELETED_COLUMN


def migrate(client: ConvexClient, details: destination_sdk_pb2.MigrationDetails, limits: BatchLimits) -> bool:
    """Run one migration; False when it is not supported."""
    m = _Migration(client, MetadataStore(client), limits)
    name = convex_table_name(details.schema, details.table) if details.table else ""
    op = details.WhichOneof("operation")
    entity = getattr(details, op).WhichOneof("entity") if op in ("add", "drop", "copy", "rename") else None

    if op == "drop" and entity == "drop_table":
        if not details.drop.drop_table:
            return False
        if m.store.get(name) is not None:
            m.drop(name)
        return True
    if op == "drop" and entity == "drop_column_in_history_mode":
        dc = details.drop.drop_column_in_history_mode
        table = _history_table(m.load(name))
        _non_key_column(table, name, dc.column, "to drop", "it cannot be set to null.")
        op_ts = _timestamp_ms(dc.operation_timestamp, "operation_timestamp")
        # The column stays in the definition (and in old versions): new versions hold null.
        m.new_versions(table, op_ts, placement(dc.column).path, None, only_if_set=True)
        return True
    if op == "add" and entity == "add_column_in_history_mode":
        ac = details.add.add_column_in_history_mode
        op_ts = _timestamp_ms(ac.operation_timestamp, "operation_timestamp")
        table, column, value = _with_column(
            m, _history_table(m.load(name)), ac.column, ac.column_type, ac.default_value
        )
        m.new_versions(table, op_ts, placement(column.name).path, value, only_if_set=False)
        return True
    if op == "add" and entity == "add_column_with_default_value":
        add = details.add.add_column_with_default_value
        table, column, value = _with_column(m, m.load(name), add.column, add.column_type, add.default_value)
        m.update_each(name, _setter(placement(column.name).path, value))
        return True
    if op == "update_column_value":
        upd = details.update_column_value
        table = m.load(name)
        target_column = _non_key_column(
            table,
            name,
            upd.column,
            "to update",
            "setting every row to one value would merge the rows. Re-sync the table instead.",
        )
        m.update_each(name, _setter(placement(target_column.name).path, _value(upd.value, target_column)))
        return True
    if op == "copy" and entity == "copy_column":
        cc = details.copy.copy_column
        table = m.load(name)
        source_column = table.column(cc.from_column)
        if source_column is None:
            raise MigrationError(f"The table `{name}` has no column `{cc.from_column}` to copy.")
        if table.column(cc.to_column) is None:
            copied = ColumnDef(cc.to_column, source_column.type, False, source_column.params)
            table = replace(table, columns=(*table.columns, copied))
            table.check()
            m.create(table)
        src, dst = placement(cc.from_column).path, placement(cc.to_column).path
        m.update_each(name, lambda d: _setter(dst, get_path(d, src))(d))
        return True
    if op == "rename" and entity == "rename_column":
        _rename_column(m, name, details.rename.rename_column)
        return True
    if (op == "copy" and entity == "copy_table") or (op == "rename" and entity == "rename_table"):
        ct = details.copy.copy_table if op == "copy" else details.rename.rename_table
        source = convex_table_name(details.schema, ct.from_table)
        target = convex_table_name(details.schema, ct.to_table)
        table = m.load(source)
        target_table = replace(table, convex_name=target)
        target_table.check()
        _fresh_copy(m, table, target_table)
        if op == "rename":
            m.drop(source)
        return True
    if op == "copy" and entity == "copy_table_to_history_mode":
        ch = details.copy.copy_table_to_history_mode
        origin = m.load(convex_table_name(details.schema, ch.from_table))
        if origin.history_mode:
            raise MigrationError(f"The table `{origin.convex_name}` is already in history mode.")
        copy = replace(origin, convex_name=convex_table_name(details.schema, ch.to_table))
        copy.check()
        _fresh_copy(m, origin, copy)
        # Fivetran: SOFT_DELETE_TO_HISTORY with the given column, or LIVE_TO_HISTORY without one.
        if ch.soft_deleted_column:
            m.to_history(copy, ch.soft_deleted_column, None)
        else:
            m.to_history(copy, None, _now_ms())
        return True
    if op == "table_sync_mode_migration":
        sm = details.table_sync_mode_migration
        table = m.load(name)
        soft_column = _soft_column(sm.soft_deleted_column)
        if sm.type == destination_sdk_pb2.SOFT_DELETE_TO_HISTORY:
            m.to_history(table, soft_column, None)
        elif sm.type == destination_sdk_pb2.LIVE_TO_HISTORY:
            m.to_history(table, None, _now_ms())
        elif sm.type == destination_sdk_pb2.HISTORY_TO_SOFT_DELETE:
            m.from_history(table, soft_column, keep_deleted_rows=True)
        elif sm.type == destination_sdk_pb2.HISTORY_TO_LIVE:
            m.from_history(table, None, keep_deleted_rows=sm.keep_deleted_rows)
        elif sm.type == destination_sdk_pb2.SOFT_DELETE_TO_LIVE:
            _not_history(table, "SOFT_DELETE_TO_LIVE")
            m.soft_delete_to_live(table, soft_column)
        elif sm.type == destination_sdk_pb2.LIVE_TO_SOFT_DELETE:
            _not_history(table, "LIVE_TO_SOFT_DELETE")
            m.live_to_soft_delete(table, soft_column)
        else:
            return False
        return True
    return False


def _non_key_column(table: TableDef, name: str, column_name: str, purpose: str, why_not_key: str) -> ColumnDef:
    """The column ``column_name`` of ``table``; a MigrationError if it is missing or part of the primary key."""
    column = table.column(column_name)
    if column is None:
        raise MigrationError(f"The table `{name}` has no column `{column_name}` {purpose}.")
    if column.primary_key:
        raise MigrationError(f"The column `{column_name}` is part of the primary key of `{name}`; {why_not_key}")
    return column


def _with_column(
    m: _Migration, table: TableDef, name: str, column_type: int, default_text: str
) -> tuple[TableDef, ColumnDef, Any]:
    """The table with column ``name`` added to its stored definition if it is not there yet (so a re-sent
    migration converges), the column, and its default value converted to the column's type."""
    existing = table.column(name)
    column = existing or ColumnDef(name, FivetranDataType(int(column_type)))
    value = _value(default_text, column)
    if existing is None:
        table = replace(table, columns=(*table.columns, column))
        table.check()
        m.create(table)
    return table, column, value


def _now_ms() -> float:
    return float(int(time.time() * 1000))


def _history_table(table: TableDef) -> TableDef:
    if not table.history_mode:
        raise MigrationError(
            f"The table `{table.convex_name}` is not in history mode (no `{FIVETRAN_START_COLUMN}` column), so"
            " a history-mode column change does not apply to it."
        )
    return table


def _not_history(table: TableDef, mode: str) -> None:
    if table.history_mode:
        raise MigrationError(
            f"The table `{table.convex_name}` is in history mode; {mode} applies to a table that is not."
        )


def _setter(path: tuple[str, ...], value: Any) -> Callable[[Doc], Doc]:
    def apply(doc: Doc) -> Doc:
        set_path(doc, path, value)
        return doc

    return apply


def _fresh_copy(m: _Migration, source: TableDef, target: TableDef) -> None:
    """``target`` as a copy of ``source``; a re-sent copy starts over (the target is emptied first)."""
    if m.store.get(target.convex_name) is not None:
        m.client.fivetran_truncate_table(target.convex_name, None, "HardDelete")
    m.create(target)
    m.rewrite(source.convex_name, target.convex_name, lambda d: ((FIVETRAN_UPSERT, d),))


def _rename_column(m: _Migration, name: str, rc: destination_sdk_pb2.RenameColumn) -> None:
    table = m.load(name)
    src, dst = placement(rc.from_column).path, placement(rc.to_column).path

    def move(d: Doc) -> Doc | None:
        # Only documents that still hold the old field: a re-sent rename never overwrites moved values.
        parent = d if len(src) == 1 else get_path(d, src[:-1])
        if not isinstance(parent, dict) or src[-1] not in parent:
            return None
        value = parent.pop(src[-1])
        set_path(d, dst, value)
        _without(d, [])
        return d

    renamed = table.column(rc.from_column)
    if renamed is None:
        if table.column(rc.to_column) is not None:
            m.update_each(name, move)  # a re-sent rename: finish moving what an interrupted run left
            return
        raise MigrationError(f"The table `{name}` has no column `{rc.from_column}` to rename.")
    if table.column(rc.to_column) is not None:
        raise MigrationError(f"The table `{name}` already has a column `{rc.to_column}`.")
    new = replace(
        table,
        columns=tuple(
            replace(c, name=rc.to_column) if c.name == rc.from_column else c for c in table.columns
        ),
    )
    new.check()
    if not renamed.primary_key:
        # Rows first, then the definition: an interrupted run is finished by a re-send.
        m.update_each(name, move)
        m.create(new)
        return

    def copy_key(d: Doc) -> Iterable[Op]:
        set_path(d, dst, get_path(d, src))
        return ((FIVETRAN_UPSERT, d),)

    m.change_key(table, new, copy_key, move)
