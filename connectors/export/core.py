"""The snapshot export: one consistent snapshot (or the changes after a cursor) of selected tables, through
the sync engine, written per table as Parquet, Avro or JSON Lines part files plus ``_manifest.json``, or as
the Convex backup ZIP.

Layout: ``OUT/<component>/<table>/part-00000.<ext>``, ``<component>`` being ``_root`` for the root component
and the component path with ``/`` replaced by ``.`` otherwise (``parent.child``); each table directory is one
dataset for pyarrow.dataset, DuckDB or Spark. ``OUT/_manifest.json`` is written last: its presence says the
export is complete.

Types come from each table's shape (``json_schemas``, the same answer over HTTP and locally) through the type
map, decided before the first row is written. The shape is read a moment before the snapshot is pinned, so a
page may hold a value its column's type does not describe; every page is checked
(:mod:`~connectors.export.fit`), and a page that does not fit widens the table's type and rewrites what was
written of it, instead of failing halfway or converting silently.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import orjson

from connectors.backup import BackupTableSpec, BackupZipWriter
from connectors.client import DeltaPage
from connectors.constants import ID_FIELD
from connectors.export.fit import PageColumns, page_columns, table_check
from connectors.export.output import Output, OutputError, temp_path
from connectors.export.writers import PartSettings, TableWriter, column_types, writer_class
from connectors.identifiers import is_system_name
from connectors.selection import ComponentSelection, Selection, TableSelection
from connectors.shapes import TableShape
from connectors.sync import (
    Checkpoint,
    CursorExpired,
    Deletes,
    ExportReader,
    LocalReader,
    Rows,
    SnapshotComplete,
    SyncMode,
    SyncSelection,
    SyncState,
    TableRef,
    run_sync,
)
from connectors.typemap.jsonschema import table_types_from_json_schemas
from connectors.typemap.tree import (
    BOOLEAN_T,
    INT64_T,
    FieldType,
    ObjectType,
    TypeMapError,
    table_type,
    widen_object,
)

__all__ = [
    "MANIFEST_NAME",
    "ExportError",
    "ReadOnlyLocalReader",
    "ExportFormat",
    "ExportOptions",
    "ExportProgress",
    "ExportResult",
    "TableResult",
    "build_selection",
    "read_manifest_cursor",
    "run_export",
    "table_directory",
]

MANIFEST_NAME: Final = "_manifest.json"
MANIFEST_VERSION: Final = 1
ROOT_DIRECTORY: Final = "_root"
TS_COLUMN: Final = "_ts"
DELETED_COLUMN: Final = "_deleted"


class ExportFormat(enum.Enum):
    PARQUET = "parquet"
    AVRO = "avro"
    JSONL = "jsonl"
    ZIP = "zip"


DEFAULT_COMPRESSION: Final = {
    ExportFormat.PARQUET: "zstd",
    ExportFormat.AVRO: "zstd",
    ExportFormat.JSONL: "none",
    ExportFormat.ZIP: "deflate",
}


class ExportError(Exception):
    """An export that cannot run or finish; the message says what, where and what to do (never data)."""


@dataclass(frozen=True)
class ExportOptions:
    out: str
    format: ExportFormat
    tables: tuple[TableRef, ...] = ()
    components: tuple[str, ...] = ()
    excluded_columns: Mapping[TableRef, tuple[str, ...]] = field(default_factory=dict)
    compression: str | None = None  # None: the format's default
    since: int | None = None  # export the changes after this document_deltas cursor
    part_bytes: int = 256 << 20
    row_group_rows: int = 64 * 1024  # Parquet row groups (at most 32 MiB of Arrow data each, too)

    def __post_init__(self) -> None:
        if self.compression is None:
            object.__setattr__(self, "compression", DEFAULT_COMPRESSION[self.format])
        if self.format is ExportFormat.ZIP:
            if self.since is not None:
                raise ExportError(
                    "--since exports changes, which a backup ZIP cannot hold: use parquet, avro or jsonl."
                )
            if self.compression != "deflate":
                raise ExportError("--compression does not apply to zip: a Convex backup is always Deflate.")
        elif self.format is ExportFormat.JSONL and self.compression == "snappy":
            raise ExportError(
                "snappy has no streaming file format: use --compression zstd, gzip or none for jsonl."
            )
        if self.part_bytes <= 0:
            raise ExportError("the part size must be positive")


@dataclass(frozen=True)
class TableResult:
    table: TableRef
    directory: str  # relative to OUT ("" for the ZIP)
    rows: int
    deletes: int
    files: tuple[str, ...]
    columns: tuple[dict[str, Any], ...]
    widened: bool = False
    tree: ObjectType | None = None  # the type the rows were written with (readers map values back with it)


@dataclass(frozen=True)
class ExportResult:
    out: str
    format: ExportFormat
    snapshot_ts: int
    cursor: int
    since: int | None
    tables: tuple[TableResult, ...]
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def deletes(self) -> int:
        return sum(t.deletes for t in self.tables)


class ExportProgress(Protocol):
    def started(self, expected_rows: int | None) -> None: ...

    def advanced(self, label: str, rows: int) -> None:
        """``rows`` more rows (or delete markers) of the table ``label`` were written."""

    def finished(self) -> None: ...


def table_directory(ref: TableRef) -> str:
    component = ROOT_DIRECTORY if not ref.component else ref.component.replace("/", ".")
    return f"{component}/{ref.table}"


def table_label(ref: TableRef) -> str:
    return ref.table if not ref.component else f"{ref.component}:{ref.table}"


def build_selection(
    tables: Iterable[TableRef],
    components: Iterable[str],
    excluded_columns: Mapping[TableRef, Iterable[str]],
) -> SyncSelection:
    """``--table``/``--component``/``--exclude-column`` -> the sync selection (nothing given = everything).

    A table listed is selected with all its columns; a component listed with all its tables, present and
    future; an excluded column removes that column from its table (which must be selected)."""
    tables, components = list(tables), list(components)
    restrict = bool(tables or components)
    whole = set(components)
    by_component: dict[str, dict[str, TableSelection]] = {}
    for ref in tables:
        by_component.setdefault(ref.component, {})[ref.table] = TableSelection({}, True)
    for ref, columns in excluded_columns.items():
        if restrict and ref.component not in whole and ref not in tables:
            raise ExportError(
                f"--exclude-column names table {ref.key!r}, which is not selected: add --table {ref.key}."
            )
        by_component.setdefault(ref.component, {})[ref.table] = TableSelection(
            dict.fromkeys(columns, False), True
        )
    entries = {
        path: ComponentSelection(by_component.get(path, {}), path in whole or not restrict)
        for path in whole | by_component.keys()
    }
    try:
        return SyncSelection(Selection(entries, not restrict))
    except Exception as exc:
        raise ExportError(f"Invalid selection: {getattr(exc, 'message', None) or exc}") from None


def read_manifest_cursor(out_uri: str) -> int:
    """The ``cursor`` of an earlier export's manifest (``--since-manifest``)."""
    out = Output(out_uri)
    path = out.path(MANIFEST_NAME)
    try:
        with out.open_input(path) as f:
            manifest = orjson.loads(f.read())
    except FileNotFoundError:
        raise ExportError(
            f"{out_uri} has no {MANIFEST_NAME}: it is not a complete export (an interrupted one has none)."
        ) from None
    except orjson.JSONDecodeError:
        raise ExportError(f"{path} is not valid JSON; give the directory of an earlier export.") from None
    cursor = manifest.get("cursor") if isinstance(manifest, dict) else None
    if type(cursor) is not int:
        raise ExportError(f"{path} has no integer 'cursor'; give the directory of an earlier export.")
    return cursor


# --- the run ------------------------------------------------------------------------------------------------


def _delta_tree(tree: ObjectType) -> ObjectType:
    """A change-export row: every field optional but ``_id`` (a delete marker has only ``_id``), plus the
    revision timestamp ``_ts`` and ``_deleted``."""
    fields = {f.name: FieldType(f.name, f.type, f.optional or f.name != ID_FIELD) for f in tree.fields}
    fields[TS_COLUMN] = FieldType(TS_COLUMN, INT64_T)
    fields[DELETED_COLUMN] = FieldType(DELETED_COLUMN, BOOLEAN_T)
    return ObjectType(tuple(fields[n] for n in sorted(fields)))


def _check_excluded_columns(
    excluded: Mapping[TableRef, Iterable[str]], columns_of: Mapping[TableRef, tuple[str, ...]]
) -> None:
    """A misspelt ``--exclude-column`` column would export the column it meant to leave out, so a column the
    table does not have is refused. A table without user columns yet (empty) cannot be checked and is not."""
    for ref, names in excluded.items():
        known = columns_of.get(ref, ())
        if not any(not c.startswith("_") for c in known):
            continue
        unknown = [c for c in names if c not in known]
        if unknown:
            shown = ", ".join(sorted(known)[:30]) + (", …" if len(known) > 30 else "")
            raise ExportError(
                f"--exclude-column: table {ref.key!r} has no column {', '.join(map(repr, unknown))}. Its "
                f"columns are: {shown}. Check the spelling (columns are case-sensitive)."
            )


def _select_columns(tree: ObjectType, selection: SyncSelection, ref: TableRef) -> ObjectType:
    columns = selection.column_filter(ref)
    if columns is None:
        return tree
    return ObjectType(tuple(f for f in tree.fields if columns.includes(f.name)))


def _batch_tree(ref: TableRef, docs: list[dict[str, Any]]) -> ObjectType:
    """The type of a page by itself (only the fields it has)."""
    present = set().union(*docs)
    tree = TableShape.from_documents(docs).type_tree(ref.table)
    return ObjectType(tuple(f for f in tree.fields if f.name in present))


class _Table:
    """One table being exported: its type, the page check and its writer."""

    def __init__(self, ref: TableRef, tree: ObjectType, writer: TableWriter | None) -> None:
        self.ref = ref
        self.tree = tree
        self.check = table_check(tree)
        self.writer = writer
        self.rows = 0
        self.deletes = 0
        self.widened = False

    def fit(self, docs: list[dict[str, Any]]) -> PageColumns:
        """Check the page against the table's type (widening it when it does not fit); return its columns."""
        columns = page_columns(self.tree, docs)
        if self.check(docs, columns):
            return columns
        self.tree = widen_object(self.tree, _batch_tree(self.ref, docs))
        self.check = table_check(self.tree)
        self.widened = True
        if self.writer is not None:
            self.writer.retype(self.tree)
        return page_columns(self.tree, docs)


class _Exporter:
    def __init__(
        self,
        reader: ExportReader,
        options: ExportOptions,
        progress: ExportProgress | None,
        table_numbers: Mapping[TableRef, int] | None,
        expected_rows: int | None,
        zip_metadata: bytes | None = None,
    ) -> None:
        self.zip_metadata = zip_metadata
        self.reader = reader
        self.options = options
        self.progress = progress
        self.table_numbers = table_numbers or {}
        self.expected_rows = expected_rows
        self.out = Output(options.out)
        self.fmt = options.format
        self.since = options.since
        self.selection = build_selection(options.tables, options.components, options.excluded_columns)
        self.tables: dict[TableRef, _Table] = {}
        self.notes: list[str] = []
        assert options.compression is not None
        self.settings = PartSettings(options.compression, options.part_bytes, options.row_group_rows)
        self.zip: BackupZipWriter | None = None
        self._zip_stream: Any = None

    # --- types ---------------------------------------------------------------------------------------------

    def catalog(self) -> dict[TableRef, ObjectType]:
        try:
            trees = table_types_from_json_schemas(
                self.reader.json_schemas(delta_schema=False), by_component=True
            )
        except TypeMapError as exc:
            raise ExportError(f"The deployment's table schemas cannot be mapped: {exc}") from None
        out: dict[TableRef, ObjectType] = {}
        for (component, name), tree in trees.items():
            out[TableRef(component, name)] = tree
        columns_of: dict[TableRef, tuple[str, ...]] = {}
        for component, tables in self.reader.table_columns().items():
            for t in tables:
                out.setdefault(TableRef(component, t.name), table_type(t.name))
                columns_of[TableRef(component, t.name)] = t.columns
        selected = {}
        for ref in sorted(out):
            if is_system_name(ref.table) or not self.selection.accepts(ref):
                continue
            selected[ref] = _select_columns(out[ref], self.selection, ref)
        missing = [ref.key for ref in self.options.tables if ref not in out]
        missing += [c for c in self.options.components if not any(ref.component == c for ref in out)]
        # A misspelt --exclude-column table would otherwise export the column it meant to leave out.
        missing += [ref.key for ref in self.options.excluded_columns if ref not in out]
        if missing:
            known = sorted({ref.key for ref in out if not is_system_name(ref.table)})
            shown = ", ".join(known[:20]) + (", …" if len(known) > 20 else "")
            raise ExportError(
                f"No such table or component: {', '.join(missing)}. The deployment has: {shown or 'no tables'} "
                "(give tables outside the root component as COMPONENT/TABLE)."
            )
        _check_excluded_columns(self.options.excluded_columns, columns_of)
        return selected

    def _new_table(self, ref: TableRef, tree: ObjectType) -> _Table:
        if self.since is not None:
            tree = _delta_tree(tree)
        writer = None
        if self.fmt is not ExportFormat.ZIP:
            writer = writer_class(self.fmt.value)(
                self.out, self.out.path(table_directory(ref)), tree, self.settings
            )
        table = _Table(ref, tree, writer)
        self.tables[ref] = table
        return table

    def _table(self, ref: TableRef, docs: list[dict[str, Any]]) -> _Table:
        table = self.tables.get(ref)
        if table is None:  # created after the shapes were read
            table = self._new_table(ref, _batch_tree(ref, docs))
        return table

    # --- events --------------------------------------------------------------------------------------------

    def _write(self, table: _Table, docs: list[dict[str, Any]]) -> None:
        if self.zip is not None:  # the backup's JSON needs no types
            self.zip.write(table.ref.component, table.ref.table, docs)
        else:
            assert table.writer is not None
            table.writer.write(docs, table.fit(docs))
        if self.progress is not None:
            self.progress.advanced(table_label(table.ref), len(docs))

    def run(self) -> ExportResult:
        started = time.monotonic()
        catalog = self.catalog()
        if self.fmt is ExportFormat.ZIP:
            self._open_zip(catalog)
        else:
            self.out.prepare_directory()
        for ref, tree in catalog.items():
            self._new_table(ref, tree)
        if self.progress is not None:
            self.progress.started(self.expected_rows)
        if self.since is None:
            state, mode = SyncState.fresh(), SyncMode.SNAPSHOT_ONLY
        else:
            state, mode = SyncState.deltas_from(self.since), SyncMode.INCREMENTAL
        snapshot_ts: int | None = None
        cursor: int | None = self.since
        events = run_sync(self.reader, self.selection, state, mode)
        try:
            for event in events:
                kind = type(event)
                if kind is Rows:
                    rows: Rows = event  # type: ignore[assignment]
                    if self.since is None:
                        docs = rows.documents
                    else:
                        docs = [{**v.document, TS_COLUMN: v.ts, DELETED_COLUMN: False} for v in rows.values]
                    table = self._table(rows.table, docs)
                    self._write(table, docs)
                    table.rows += len(docs)
                elif kind is Deletes:
                    deletes: Deletes = event  # type: ignore[assignment]
                    docs = [
                        {ID_FIELD: v.document[ID_FIELD], TS_COLUMN: v.ts, DELETED_COLUMN: True}
                        for v in deletes.values
                    ]
                    table = self._table(deletes.table, docs)
                    self._write(table, docs)
                    table.deletes += len(docs)
                elif kind is SnapshotComplete:
                    snapshot_ts = event.snapshot_ts  # type: ignore[union-attr]
                elif kind is Checkpoint:
                    if event.state.delta_cursor is not None:  # type: ignore[union-attr]
                        cursor = event.state.delta_cursor  # type: ignore[union-attr]
                elif kind is CursorExpired:
                    raise ExportError(
                        f"The deployment can no longer serve changes from cursor {self.since}: "
                        f"{event.message} Take a full export (without --since) instead."  # type: ignore[union-attr]
                    )
            if cursor is None:
                raise ExportError("The deployment's export ended without a snapshot timestamp.")
            if snapshot_ts is None:
                snapshot_ts = cursor
            result = self._commit(snapshot_ts, cursor, started)
        except BaseException:
            events.close()
            self._abort()
            raise
        finally:
            if self.progress is not None:
                self.progress.finished()
        return result

    # --- ZIP -----------------------------------------------------------------------------------------------

    def _open_zip(self, catalog: Mapping[TableRef, ObjectType]) -> None:
        info = self.out.info(self.out.root)
        if info.type.name == "Directory":
            raise OutputError(f"{self.out.uri} is a directory; give the path of the .zip file to write.")
        if info.type.name == "File":
            raise OutputError(f"{self.out.uri} already exists; choose a new file name or remove it.")
        specs = [BackupTableSpec(ref.component, ref.table, self.table_numbers.get(ref)) for ref in catalog]
        components = {ref.component for ref in catalog}
        self._zip_stream = self.out.open_output(temp_path(self.out.root))
        self.zip = BackupZipWriter(
            self._zip_stream, time.time_ns(), specs, components, metadata=self.zip_metadata
        )

    # --- the end -------------------------------------------------------------------------------------------

    def _commit(self, snapshot_ts: int, cursor: int, started: float) -> ExportResult:
        results: list[TableResult] = []
        if self.zip is not None:
            written = {(t.component, t.name): t for t in self.zip.finish()}
            self._zip_stream.close()
            self.out.move(temp_path(self.out.root), self.out.root)
            for ref, table in sorted(self.tables.items()):
                count = (
                    written[(ref.component, ref.table)].documents
                    if (ref.component, ref.table) in written
                    else 0
                )
                results.append(
                    TableResult(
                        ref, "", count, 0, (), tuple(column_types(table.tree)), table.widened, table.tree
                    )
                )
            return self._result(snapshot_ts, cursor, started, results)
        renames: list[tuple[str, str]] = []
        for ref, table in sorted(self.tables.items()):
            assert table.writer is not None
            parts = table.writer.finish()
            renames.extend(parts)
            directory = table_directory(ref)
            files = tuple(final.rsplit("/", 1)[1] for _tmp, final in parts)
            columns = tuple(table.writer.columns())
            results.append(
                TableResult(
                    ref, directory, table.rows, table.deletes, files, columns, table.widened, table.tree
                )
            )
            if table.widened:
                self.notes.append(
                    f"{table_label(ref)}: documents written while the export started did not fit the table's "
                    "shape; its column types were widened."
                )
        for tmp, final in renames:
            self.out.move(tmp, final)
        result = self._result(snapshot_ts, cursor, started, results)
        manifest = self.out.path(MANIFEST_NAME)
        with self.out.open_output(temp_path(manifest)) as f:
            f.write(orjson.dumps(_manifest(result, self.options), option=orjson.OPT_INDENT_2) + b"\n")
        self.out.move(temp_path(manifest), manifest)
        return result

    def _result(
        self, snapshot_ts: int, cursor: int, started: float, results: list[TableResult]
    ) -> ExportResult:
        return ExportResult(
            self.options.out,
            self.fmt,
            snapshot_ts,
            cursor,
            self.since,
            tuple(results),
            time.monotonic() - started,
            tuple(self.notes),
        )

    def _abort(self) -> None:
        for table in self.tables.values():
            if table.writer is not None:
                table.writer.abort()
        if self.zip is not None:
            self.zip.abort()
            # The export already failed; its error is the one reported.
            with contextlib.suppress(Exception):
                self._zip_stream.close()
                self.out.delete(temp_path(self.out.root))


def _manifest(result: ExportResult, options: ExportOptions) -> dict[str, Any]:
    return {
        "version": MANIFEST_VERSION,
        "format": result.format.value,
        "compression": options.compression,
        "snapshot_ts": result.snapshot_ts,
        "snapshot_time": datetime.fromtimestamp(result.snapshot_ts / 1e9, UTC).isoformat(),
        "since": result.since,
        "cursor": result.cursor,
        "layout": "<component or _root>/<table>/part-NNNNN.<ext>",
        "tables": [
            {
                "component": t.table.component,
                "table": t.table.table,
                "path": t.directory,
                "rows": t.rows,
                "deletes": t.deletes,
                "files": list(t.files),
                "columns": list(t.columns),
            }
            for t in result.tables
        ],
    }


class ReadOnlyLocalReader(LocalReader):
    """``LocalReader`` over a read-only open, which sees the commits up to its last one. A cursor handed out
    by a server (its clock runs ahead of its last commit) may be later than that: no change after it is
    visible then, and the change feed is empty instead of "in the future"."""

    def delta_pages(self, selection: Selection, cursor: int) -> Iterator[DeltaPage]:
        if cursor > self.deployment.read_timestamp():
            return iter([DeltaPage([], cursor, False)])
        return super().delta_pages(selection, cursor)


def run_export(
    reader: ExportReader,
    options: ExportOptions,
    *,
    progress: ExportProgress | None = None,
    table_numbers: Mapping[TableRef, int] | None = None,
    expected_rows: int | None = None,
    zip_metadata: bytes | None = None,
) -> ExportResult:
    """Run one export (see the module docstring). ``table_numbers`` (local deployments) lets the ZIP list
    empty tables with their numbers, ``zip_metadata`` (``backup.backup_metadata``) carries their indexes;
    ``expected_rows`` is the progress bar's total."""
    with _bulk_gc():
        return _Exporter(reader, options, progress, table_numbers, expected_rows, zip_metadata).run()


_BULK_GC_THRESHOLD: Final = 200_000


@contextlib.contextmanager
def _bulk_gc() -> Iterator[None]:
    """Cheaper cyclic garbage collection while the export runs. Each page allocates hundreds of thousands
    of (acyclic) containers, which refcounting frees; with the default thresholds the collector would scan
    them, and every object the process had before, again and again (a third of the run time). The objects
    that exist before the export are frozen (never scanned) and the first generation collects every 200k
    allocations instead of every 700; memory stays bounded by the pages in flight. Exports running at the
    same time (threads) share one setting, restored when the last one ends."""
    global _bulk_depth, _saved_thresholds
    with _bulk_lock:
        if _bulk_depth == 0:
            _saved_thresholds = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(_saved_thresholds[0], _BULK_GC_THRESHOLD), *_saved_thresholds[1:])
        _bulk_depth += 1
    try:
        yield
    finally:
        with _bulk_lock:
            _bulk_depth -= 1
            if _bulk_depth == 0:
                gc.set_threshold(*_saved_thresholds)
                gc.unfreeze()


_bulk_lock: Final = threading.Lock()
_bulk_depth = 0
_saved_thresholds: tuple[int, ...] = gc.get_threshold()
