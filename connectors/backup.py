"""Import and export of the Convex backup ZIP (``npx convex export``, the dashboard's "Download backup",
read by ``npx convex import``), on a local :class:`~connectors.backend.engine.Deployment`.

Format facts, from the public repository ``get-convex/convex-backend`` (paths below are in it):

Layout (``crates/application/src/exports/mod.rs``: ``construct_zip_snapshot``, ``write_tables_table``,
``write_table``, ``get_export_path_prefix``; ``crates/application/src/exports/zip_uploader.rs``;
``crates/application/src/exports/tests.rs``):

* ``README.md`` is written first (a short human-readable note; importers ignore it).
* Every component, the root included and even when it has no tables, gets
  ``<prefix>_tables/documents.jsonl``: one line ``{"name": <table>, "id": <table number>}`` per active user
  table of that component, in table-number order.
* Every active user table gets ``<prefix><table>/generated_schema.jsonl`` and
  ``<prefix><table>/documents.jsonl`` (one document per line, each line ending in ``\\n``), empty tables
  included. Convex orders tables small to large; order carries no meaning.
* ``<prefix>`` is ``""`` for the root component and ``_components/<name>/`` per path segment otherwise,
  nested: ``_components/a/_components/b/messages/documents.jsonl``.
* Entries are Deflate-compressed with unix permissions 0o644.
* Only when file storage is included (``exports/export_storage.rs``): ``<prefix>_storage/documents.jsonl``
  (lines ``{_id, _creationTime, sha256, size, contentType, internalId}``) and each file as
  ``<prefix>_storage/<id>[.<guessed extension>]``. System tables are not exported otherwise.
* The download is named ``snapshot_{ts}.zip``, ``ts`` the snapshot's Unix time in nanoseconds
  (``npm-packages/docs/docs/database/backup-restore.mdx``).

Value encoding. Current exports (``crates/value/src/export.rs``: ``ValueFormat::ConvexExportJSON``,
``export_clean_lossless`` / ``from_clean_lossless``) are lossless:

* Int64 is a plain JSON integer; a finite Float64 is a JSON number that always has a ``.`` or an exponent
  (``123.0``, ``-0.0``, ``1e16``); NaN and ±inf are ``{"$float": base64 of the 8 little-endian bytes}``
  (NaN payload kept); Bytes are ``{"$bytes": base64}``; null/bool/string/array/object are plain JSON.
* Reading: an integer token that fits in i64 is an Int64, any other number a Float64 (serde_json also reads
  ``-0`` and integers outside i64 as floats); an object whose key starts with ``$`` is the internal form.
* ``generated_schema.jsonl`` is the single line ``"uniform"``, meaning "documents are ConvexExportJSON"
  (``crates/shape_inference/src/export_context.rs``: ``GeneratedSchema::Uniform`` and ``serialize``;
  ``crates/application/src/snapshot_import/parse.rs``: ``parse_generated_schema``). Seen in the wild in
  issue get-convex/convex-backend#400 (2026-03): older self-hosted backends fail on these exports with
  ``cannot parse <table>/generated_schema.jsonl: unexpected token at 'uniform'``.

Legacy exports (``GeneratedSchema::LegacyInferred``, still read by Convex's importer):

* Documents are ``ConvexCleanJSON`` (``export.rs`` ``export_clean``): Int64 as a decimal string, NaN as
  ``"NaN"``, ±inf as ``"Infinity"``/``"-Infinity"``, Bytes as a base64 string; every JSON number is read as a
  Float64.
* The first line of ``generated_schema.jsonl`` is a JSON string holding the table's inferred shape in the
  syntax of ``crates/shape_inference/src/pretty.rs`` (``{"_id": id<10001>, "n": int64 | string}``,
  ``array<..>``, ``record<k, v>``, ``"literal"``, ``unknown`` ...). Each further line is
  ``{"<document id>": <export context>}`` for a document whose strings the shape does not disambiguate; an
  export context is ``"infer" | "int64" | "float64inf" | "bytes" | {"$float64NaN": base64 LE} | [ctx, ...] |
  {field: ctx}`` (``export_context.rs``: ``From<ExportContext> for JsonValue``, decoding rules in
  ``ExportContext::apply``; an unambiguous shape decides by itself).
* A table without ``generated_schema.jsonl`` is decoded with the ``unknown`` shape: numbers become Float64,
  strings stay strings (``GeneratedSchema::apply`` with no schema).

Import (``crates/application/src/snapshot_import/parse.rs`` and ``mod.rs``):

* Entries are matched by ``^(.*/)?([^/]+)/documents\\.jsonl$`` (and ``generated_schema``); component
  folders ``_components/<name>/`` are peeled off the prefix from the right, anything before them is ignored.
  System tables other than ``_tables`` and ``_storage`` are skipped.
* ``_tables`` gives each table's number; without it the number comes from the first document's ``_id``.
  Documents keep ``_id`` and ``_creationTime``; missing ones are chosen during import
  (``npm-packages/docs/docs/database/import-export/import.mdx``).
* Modes: RequireEmpty fails with TableExists if a table has documents; Replace; Append; ReplaceAll.
  Documents are inserted in batches bounded by half the transaction limits. Convex's import is atomic
  (tables stay hidden until the end) except for append; ours commits batch by batch, see below.

Not confirmed:

* That today's exporter writes exactly ``"uniform"\\n`` for every table: the stored copy of
  ``zip_uploader.rs`` is older (it writes the legacy shape); inferred from ``GeneratedSchema::serialize``,
  the importer and issue #400.
* Key order inside ``_tables`` lines (depends on serde_json's ``preserve_order``); readers do not care.
* Float spelling: serde_json/ryu writes ``1e16`` where orjson writes ``1e+16``; both are JSON numbers that
  serde_json reads as f64, but this was not run against a real Convex importer. Likewise our
  ``documents.jsonl`` entries carry zip64 local headers (their size is unknown up front); Convex's reader
  (rc_zip) supports zip64, untested.
* The shape syntax writes Float64 ``-0.0`` as ``-0`` but the stored parser lacks it; we accept it.
  Legacy ``set``/``map`` values are not supported (our values have no Set/Map).

Our choices: export writes the current format (``"uniform"`` + ConvexExportJSON, converted from storage by
``values.storage_to_wire``) and reads both. File storage is not supported: ``_storage`` entries are skipped
with a note in the summary. A component whose ``_tables`` lists no table is not created on import (the
engine creates components with their first table). An import commits in batches, so one that fails midway
leaves the tables it prepared and the batches it committed; the error says so.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import math
import os
import re
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Literal, TypeAlias

import orjson

from connectors import identifiers, ids, values
from connectors.backend.engine import CREATION_TIME, Deployment, TableInfo, Transaction
from connectors.batching import Batcher, BatchLimits
from connectors.constants import ID_FIELD
from connectors.errors import BadRequestError, ConvexError, InvalidValueError, TransactionLimitError
from connectors.typemap.legacy_shape import UNKNOWN_SHAPE as _UNKNOWN
from connectors.typemap.legacy_shape import LegacyShape as Shape
from connectors.typemap.legacy_shape import LegacyShapeError, parse_legacy_shape
from connectors.typemap.legacy_shape import array_element_shapes as _array_elements
from connectors.typemap.legacy_shape import inferred_string_context as _inferred_string_context
from connectors.typemap.legacy_shape import object_field_shapes as _object_fields

__all__ = [
    "BackupImportError",
    "BackupSummary",
    "BackupTable",
    "METADATA_ENTRY",
    "BackupTableSpec",
    "BackupZipWriter",
    "backup_metadata",
    "ImportMode",
    "ProgressCallback",
    "TableMetadataHook",
    "entry_prefix",
    "export_backup",
    "import_backup",
]

ProgressCallback: TypeAlias = Callable[[str, int], None]
"""``(table label, documents done so far)``; the label is the table name, ``component:table`` outside the
root component."""

ImportMode: TypeAlias = Literal["create", "replace", "append", "replace-all"]
IMPORT_MODES: Final = ("create", "replace", "append", "replace-all")

PathOrFile: TypeAlias = str | os.PathLike[str] | IO[bytes]

TABLES_TABLE: Final = "_tables"
STORAGE_TABLE: Final = "_storage"
UNIFORM_SCHEMA: Final = b'"uniform"\n'
DEFAULT_BATCH_SIZE: Final = 2000

README_TEXT: Final = """# Convex snapshot export

This ZIP file holds a consistent snapshot of the tables of a Convex deployment.

- `<table>/documents.jsonl`: the table's documents, one JSON object per line.
- `<table>/generated_schema.jsonl`: how values are encoded ("uniform": Int64 is a JSON integer, Float64
  always has a decimal point or an exponent, NaN/Infinity are {"$float": ...}, bytes are {"$bytes": ...}).
- `_tables/documents.jsonl`: each table's name and table number.
- `_components/<name>/...`: the same layout for each component.

Restore it with `npx convex import <file>.zip` or `convex-connectors import`.
"""

_ZIP_PERMISSIONS: Final = 0o644
# What reading a damaged archive raises (bad CRC, bad deflate stream, truncated entry).
_ZIP_DAMAGE: Final = (zipfile.BadZipFile, zlib.error, EOFError)
_EXPORT: Final = values.ValueFormat.EXPORT
_WRITE_CHUNK: Final = 1 << 20
_LOCAL_PAGE_LIMIT: Final = 256

# Entry names, as the Convex importer matches them.
_DOCUMENTS_RE: Final = re.compile(r"^(.*/)?([^/]+)/documents\.jsonl$")
_SCHEMA_RE: Final = re.compile(r"^(.*/)?([^/]+)/generated_schema\.jsonl$")
_COMPONENT_RE: Final = re.compile(r"^(.*/)?_components/([^/]+)/$")
_STORAGE_FILE_RE: Final = re.compile(r"(.*/)?_storage/([^/.]+)(?:\.[^/]+)?$")

# Our own metadata member: every table's indexes (system ones included) and per-table metadata blobs. Its
# name matches neither documents.jsonl nor generated_schema.jsonl, so Convex's importer ignores it.
METADATA_ENTRY: Final = "_convex_connectors/metadata.json"
METADATA_VERSION: Final = 1
# An id inside a JSON line: a quoted string of IdV6 length over the Crockford alphabet (checked afterwards).
_ID_CANDIDATE_RE: Final = re.compile(rb'"([0-9a-hjkmnp-tv-z]{31,37})"')


# --- Public types --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupTable:
    component: str  # "" = root, else "/"-joined component path
    name: str
    table_number: int | None
    documents: int

    @property
    def label(self) -> str:
        return table_label(self.component, self.name)


@dataclass(frozen=True)
class BackupSummary:
    """What an export wrote or an import read. ``snapshot_ts`` is the export's read timestamp (None for
    an import); ``path`` is the file written by an export to a path; ``notes`` list skipped content."""

    snapshot_ts: int | None
    tables: tuple[BackupTable, ...]
    notes: tuple[str, ...] = ()
    path: str | None = None

    @property
    def documents(self) -> dict[str, int]:
        """Documents per table label."""
        return {t.label: t.documents for t in self.tables}

    @property
    def total_documents(self) -> int:
        return sum(t.documents for t in self.tables)


class BackupImportError(BadRequestError):
    """The backup cannot be imported. ``entry``/``line`` locate the problem; ``committed_documents`` counts
    documents that earlier transactions of this import already committed (they stay)."""

    def __init__(
        self,
        message: str,
        *,
        entry: str | None = None,
        line: int | None = None,
        committed_documents: int = 0,
        code: str = "InvalidBackup",
    ) -> None:
        where = ""
        if entry is not None:
            where = f"{entry}" + (f" line {line}" if line is not None else "") + ": "
        super().__init__(code, where + message)
        self.entry = entry
        self.line = line
        self.committed_documents = committed_documents


@dataclass(frozen=True)
class TableMetadataHook:
    """Carries one kind of per-table metadata through a backup (e.g. the Fivetran column types the
    destination keeps in the deployment). ``export(dep, table)`` returns a JSON value or None (nothing to
    keep); ``restore(dep, component, table, blob)`` runs after the table's documents were imported. Blobs
    are stored under ``name`` in the backup's metadata member."""

    name: str
    export: Callable[[Deployment, TableInfo], Any]
    restore: Callable[[Deployment, str, str, Any], None]


_METADATA_HOOKS: dict[str, TableMetadataHook] = {}


def register_table_metadata_hook(hook: TableMetadataHook) -> None:
    """Make every later export and import carry ``hook``'s blobs (replaces a hook of the same name)."""
    _METADATA_HOOKS[hook.name] = hook


def unregister_table_metadata_hook(name: str) -> None:
    _METADATA_HOOKS.pop(name, None)


@dataclass(frozen=True)
class IndexDefinition:
    """An index as kept in the backup's metadata: fields without the trailing ``_creationTime``."""

    name: str
    fields: tuple[str, ...]
    system: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "fields": list(self.fields), "system": self.system}


def table_label(component: str, name: str) -> str:
    return name if component == "" else f"{component}:{name}"


def entry_prefix(component: str) -> str:
    """The folder of a component's tables inside the ZIP: ``""`` or ``_components/a/_components/b/``."""
    if component == "":
        return ""
    return "".join(f"_components/{segment}/" for segment in component.split("/"))


# --- Export --------------------------------------------------------------------------------------------


def export_backup(
    dep: Deployment, path_or_file: PathOrFile, *, progress: ProgressCallback | None = None
) -> BackupSummary:
    """Write every user table of every component, as of one read timestamp, as a Convex backup ZIP.

    ``path_or_file`` is a file path (written to ``<path>.partial`` first, then renamed, so a failed export
    leaves no truncated backup behind), an existing directory (``snapshot_<ts>.zip`` is created in it), or a
    binary file object (seekable or not). Documents are streamed page by page into their ZIP entries."""
    ts = dep.read_timestamp()
    if isinstance(path_or_file, str | os.PathLike):
        target = Path(path_or_file)
        if target.is_dir():
            target = target / f"snapshot_{ts}.zip"
        partial = target.with_name(target.name + ".partial")
        try:
            with open(partial, "wb") as f:
                tables = _write_zip(dep, f, ts, progress)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return BackupSummary(ts, tables, path=str(target))
    return BackupSummary(ts, _write_zip(dep, path_or_file, ts, progress))


def _zip_info(name: str, ts: int) -> zipfile.ZipInfo:
    when = datetime.fromtimestamp(ts / 1e9, UTC)
    info = zipfile.ZipInfo(name, date_time=(max(when.year, 1980), *when.timetuple()[1:6]))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so that the permission bits mean something
    info.external_attr = _ZIP_PERMISSIONS << 16
    return info


@dataclass(frozen=True)
class BackupTableSpec:
    """A table the backup lists even when no document of it arrives (an empty table): its component,
    name and table number (None when unknown: then the first document's ``_id`` tells, and an empty table
    is left out of ``_tables`` and gets a new number on import)."""

    component: str
    name: str
    table_number: int | None = None


class BackupZipWriter:
    """The one writer of the Convex backup ZIP, fed with decoded documents table by table (the sync engine's
    ``Rows`` events, from a local deployment or over HTTP).

    ``write(component, table, docs)`` appends documents; a table's documents must arrive together (a
    snapshot visits tables one at a time). ``finish()`` writes the empty tables, every component's
    ``_tables`` entry and closes the archive. Memory stays bounded: documents are serialized into one
    bounded buffer and streamed into the entry."""

    def __init__(
        self,
        out: IO[bytes],
        entry_ts: int,
        tables: list[BackupTableSpec],
        components: Iterable[str] = (),
        *,
        only_listed: bool = False,
        progress: ProgressCallback | None = None,
        metadata: bytes | None = None,
    ) -> None:
        self._ts = entry_ts
        self._specs = {(t.component, t.name): t for t in tables}
        self._components = set(components) | {t.component for t in tables}
        self._only_listed = only_listed
        self._progress = progress
        self._written: dict[tuple[str, str], BackupTable] = {}
        self._current: tuple[str, str] | None = None
        self._entry: IO[bytes] | None = None
        self._count = 0
        self._number: int | None = None
        self._buf = bytearray()
        self._zf = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED)
        self._zf.writestr(_zip_info("README.md", entry_ts), README_TEXT.encode())
        if metadata is not None:  # a local deployment's indexes and hook blobs (see backup_metadata)
            self._zf.writestr(_zip_info(METADATA_ENTRY, entry_ts), metadata)

    def write(self, component: str, table: str, docs: list[dict[str, values.Value]]) -> None:
        key = (component, table)
        if key != self._current:
            if self._only_listed and key not in self._specs:
                return  # e.g. a hidden table (still being imported) of a local deployment
            self._end_table()
            if key in self._written:
                raise ValueError(
                    f"the documents of table {table_label(component, table)} arrived in two runs"
                )
            self._start_table(component, table)
        buf = self._buf
        for doc in docs:
            buf += values.wire_bytes(doc, _EXPORT)
            buf += b"\n"
            if len(buf) >= _WRITE_CHUNK:
                assert self._entry is not None
                self._entry.write(buf)
                buf.clear()
        if self._number is None and docs:
            self._number = ids.table_number_of(str(docs[0][ID_FIELD]))
        self._count += len(docs)
        if self._progress is not None:
            self._progress(table_label(component, table), self._count)

    def _start_table(self, component: str, table: str) -> None:
        folder = entry_prefix(component) + table
        self._zf.writestr(_zip_info(f"{folder}/generated_schema.jsonl", self._ts), UNIFORM_SCHEMA)
        # zip64 because the entry's size is not known before it is written.
        self._entry = self._zf.open(_zip_info(f"{folder}/documents.jsonl", self._ts), "w", force_zip64=True)
        self._current = (component, table)
        self._components.add(component)
        self._count = 0
        spec = self._specs.get(self._current)
        self._number = spec.table_number if spec is not None else None

    def _end_table(self) -> None:
        if self._current is None or self._entry is None:
            return
        self._entry.write(self._buf)
        self._buf.clear()
        self._entry.close()
        component, table = self._current
        self._written[self._current] = BackupTable(component, table, self._number, self._count)
        self._current, self._entry = None, None

    def finish(self) -> tuple[BackupTable, ...]:
        """Write the empty tables and the ``_tables`` entries; close the archive (not ``out``)."""
        self._end_table()
        for key, spec in sorted(self._specs.items()):
            if key not in self._written:
                self._start_table(spec.component, spec.name)
                self._end_table()
                if self._progress is not None:
                    self._progress(table_label(spec.component, spec.name), 0)
        for component in sorted(self._components):
            own = sorted(
                (
                    t
                    for t in self._written.values()
                    if t.component == component and t.table_number is not None
                ),
                key=lambda t: t.table_number or 0,
            )
            lines = b"".join(orjson.dumps({"name": t.name, "id": t.table_number}) + b"\n" for t in own)
            self._zf.writestr(
                _zip_info(entry_prefix(component) + f"{TABLES_TABLE}/documents.jsonl", self._ts), lines
            )
        self._zf.close()
        return tuple(sorted(self._written.values(), key=lambda t: (t.component, t.name)))

    def abort(self) -> None:
        """Stop without finishing (the archive is left incomplete; the caller removes it)."""
        # Best effort on a failed export: the original error is the one that propagates.
        with contextlib.suppress(Exception):
            if self._entry is not None:
                self._entry.close()
            self._zf.close()


def _write_zip(
    dep: Deployment, out: IO[bytes], ts: int, progress: ProgressCallback | None
) -> tuple[BackupTable, ...]:
    from connectors.sync import LocalReader, Rows, SyncMode, SyncSelection, SyncState, run_sync

    # Tables as of the snapshot: one dropped after `ts` is still exported, one created after is not.
    infos = sorted(
        (t for t in dep.tables_at(ts) if t.state != "hidden" and not identifiers.is_system_name(t.name)),
        key=lambda t: (t.component, t.name),
    )
    tables = [BackupTableSpec(t.component, t.name, t.table_number) for t in infos]
    writer = BackupZipWriter(
        out,
        ts,
        tables,
        dep.components(),
        only_listed=True,
        progress=progress,
        metadata=_metadata_json(dep, infos),
    )
    # Pages of 256: the server's page builder peaks at several times a page's size (large documents).
    events = run_sync(
        LocalReader(dep, snapshot_page_limit=_LOCAL_PAGE_LIMIT),
        SyncSelection.everything(),
        SyncState.resume_snapshot(ts, None),
        SyncMode.SNAPSHOT_ONLY,
    )
    try:
        for event in events:
            if isinstance(event, Rows):
                writer.write(event.table.component, event.table.table, event.documents)
    except BaseException:
        events.close()
        writer.abort()
        raise
    return writer.finish()


def backup_metadata(dep: Deployment) -> bytes:
    """The ``METADATA_ENTRY`` of the deployment's current user tables (for :class:`BackupZipWriter` fed from
    a local deployment; over HTTP indexes are not visible and the entry is left out)."""
    infos = sorted(
        (t for t in dep.tables() if t.state != "hidden" and not identifiers.is_system_name(t.name)),
        key=lambda t: (t.component, t.name),
    )
    return _metadata_json(dep, infos)


def _metadata_json(dep: Deployment, tables: list[TableInfo]) -> bytes:
    """Indexes (system ones included, which Convex's own backups drop) and hook blobs of every table."""
    out = []
    for table in tables:
        entry: dict[str, Any] = {"component": table.component, "name": table.name}
        live = dep.find_table(table.name, table.component)
        if live is not None and live.tablet == table.tablet:  # dropped since the snapshot: no indexes
            entry["indexes"] = [
                IndexDefinition(i.name, i.fields[:-1], i.is_system).to_json()
                for i in dep.indexes(table.name, table.component)
            ]
        blobs = {}
        for hook in _METADATA_HOOKS.values():
            blob = hook.export(dep, table)
            if blob is not None:
                blobs[hook.name] = blob
        if blobs:
            entry["metadata"] = blobs
        out.append(entry)
    return orjson.dumps({"version": METADATA_VERSION, "tables": out}, option=orjson.OPT_INDENT_2)


# --- Reading the ZIP -----------------------------------------------------------------------------------


@dataclass
class _TablePlan:
    component: str
    name: str
    documents_entry: str | None = None
    schema_entry: str | None = None
    listed_number: int | None = None  # from _tables
    number: int | None = None  # the number the imported table must have (None: any)
    action: str = ""  # "keep" | "clear" | "recreate" | "create"
    # Set when the table gets another number than its documents' ids carry: that number (ids re-encoded).
    source_number: int | None = None
    indexes: tuple[IndexDefinition, ...] | None = None  # from our metadata member; None = not recorded
    metadata: dict[str, Any] = field(default_factory=dict)  # hook name -> blob

    @property
    def label(self) -> str:
        return table_label(self.component, self.name)


@dataclass
class _Layout:
    tables: dict[tuple[str, str], _TablePlan] = field(default_factory=dict)
    tables_entries: dict[str, str] = field(default_factory=dict)  # component -> _tables entry
    metadata_entry: str | None = None
    notes: list[str] = field(default_factory=list)


def _component_of(prefix: str, entry: str) -> str:
    names: list[str] = []
    while (m := _COMPONENT_RE.match(prefix)) is not None:
        names.append(m.group(2))
        prefix = m.group(1) or ""
    path = "/".join(reversed(names))
    try:
        return identifiers.check_component_path(path)
    except ConvexError as e:
        raise BackupImportError(e.message, entry=entry) from None


def _scan(zf: zipfile.ZipFile) -> _Layout:
    layout = _Layout()
    skipped_system: dict[str, int] = {}
    storage_files = 0
    other = 0
    for info in zf.infolist():
        name = info.filename
        if info.is_dir() or name.rsplit("/", 1)[-1] == "README.md":
            continue
        if name == METADATA_ENTRY:
            layout.metadata_entry = name
            continue
        m = _DOCUMENTS_RE.match(name)
        kind = "documents"
        if m is None:
            m = _SCHEMA_RE.match(name)
            kind = "schema"
        if m is None:
            if _STORAGE_FILE_RE.search(name):
                storage_files += 1
            else:
                other += 1
            continue
        component = _component_of(m.group(1) or "", name)
        table = m.group(2)
        if table == TABLES_TABLE:
            if kind == "documents":
                _set_once(layout.tables_entries, component, name)
            continue
        if identifiers.is_system_name(table):
            if kind == "documents":
                skipped_system[table] = skipped_system.get(table, 0) + 1
            continue
        try:
            identifiers.check_table_name(table)
        except ConvexError as e:
            raise BackupImportError(e.message, entry=name) from None
        plan = layout.tables.setdefault((component, table), _TablePlan(component, table))
        if kind == "documents":
            if plan.documents_entry is not None:
                raise BackupImportError(f"duplicate entry for table {plan.label}", entry=name)
            plan.documents_entry = name
        else:
            if plan.schema_entry is not None:
                raise BackupImportError(f"duplicate entry for table {plan.label}", entry=name)
            plan.schema_entry = name
    for table, n in sorted(skipped_system.items()):
        if table == STORAGE_TABLE:
            layout.notes.append(
                f"skipped _storage metadata in {n} component(s) and {storage_files} stored file(s): "
                "file storage is not supported"
            )
        else:
            layout.notes.append(f"skipped system table {table} ({n} entries)")
    if storage_files and STORAGE_TABLE not in skipped_system:
        layout.notes.append(f"skipped {storage_files} stored file(s): file storage is not supported")
    if other:
        layout.notes.append(f"ignored {other} unrecognized entries")
    return layout


def _set_once(d: dict[str, str], key: str, entry: str) -> None:
    if key in d:
        raise BackupImportError("duplicate _tables entry for the same component", entry=entry)
    d[key] = entry


# The longest line read from a member. A document is at most 1 MiB as stored (orjson's compact
# convex_encoded_json), and its export_json line from orjson or serde_json is no longer (Int64 and -0.0 are
# shorter there). Other JSON writers may spell the same document longer: `\/` for `/`, `\u00e9` for `é`,
# spaces after `:` and `,`, `1e+16` for `1e16`; twice the limit admits those, and memory stays a few MiB
# per line however long the line in the ZIP is (a longer line cannot hold a legal document in any of them).
MAX_LINE_BYTES: Final = 2 * values.MAX_DOCUMENT_SIZE
_READ_BUFFER_BYTES: Final = 1 << 16


def _load_json(raw: bytes) -> Any:
    """Parse one JSON line with Convex's number rules (the token `-0` is Float64 -0.0)."""
    return values.load_json(raw)


def _iter_lines(zf: zipfile.ZipFile, entry: str) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers; never holds more than one line, and never more than
    :data:`MAX_LINE_BYTES` of it (a longer line is an error naming the member and line)."""
    with zf.open(entry) as member, io.BufferedReader(member, _READ_BUFFER_BYTES) as f:  # type: ignore[type-var]
        lineno = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) - raw.endswith(b"\n") > MAX_LINE_BYTES:
                raise BackupImportError(
                    f"the line is longer than {MAX_LINE_BYTES} bytes, so it cannot hold a document (the "
                    f"limit is {values.MAX_DOCUMENT_SIZE} bytes); the backup is damaged or was not written "
                    "by a Convex export.",
                    entry=entry,
                    line=lineno,
                )
            if raw.strip():
                yield lineno, raw


def _parse_line(raw: bytes, entry: str, lineno: int) -> Any:
    try:
        return _load_json(raw)
    except orjson.JSONDecodeError as e:
        column = getattr(e, "colno", None)
        at = f" (column {column})" if column else ""
        raise BackupImportError(f"not valid JSON{at}", entry=entry, line=lineno) from None
    except InvalidValueError as e:  # nested deeper than any JSON parser here reads
        raise BackupImportError(e.message, entry=entry, line=lineno) from None
    except (UnicodeDecodeError, ValueError):
        raise BackupImportError("not valid JSON", entry=entry, line=lineno) from None


def _check_declared_sizes(dep: Deployment, zf: zipfile.ZipFile, plans: list[_TablePlan]) -> None:
    """Refuse, before writing, a backup whose members claim more uncompressed bytes than the disk holding a
    SQLite deployment has free. zipfile never inflates a member past its declared size, so the declared
    sizes bound what an import can read."""
    declared = sum(zf.getinfo(p.documents_entry).file_size for p in plans if p.documents_entry is not None)
    path = getattr(dep.persistence, "path", None)
    if not isinstance(path, Path) or declared == 0:
        return
    free = shutil.disk_usage(path.parent).free
    if declared > free:
        raise BackupImportError(
            f"the backup's documents are {declared} bytes uncompressed but the disk holding the deployment "
            f"has {free} bytes free; free up space or import into a deployment on a larger disk",
            code="InsufficientDiskSpace",
        )


def _read_tables_entry(zf: zipfile.ZipFile, entry: str) -> list[tuple[str, int, int]]:
    """``(name, table number, line)`` for each line of a ``_tables/documents.jsonl``."""
    out = []
    for lineno, raw in _iter_lines(zf, entry):
        obj = _parse_line(raw, entry, lineno)
        if type(obj) is not dict:
            raise BackupImportError("expected a JSON object", entry=entry, line=lineno)
        name, number = obj.get("name"), obj.get("id")
        if type(name) is not str:
            raise BackupImportError('table requires a string "name"', entry=entry, line=lineno)
        try:
            identifiers.check_table_name(name)
        except ConvexError as e:
            raise BackupImportError(e.message, entry=entry, line=lineno) from None
        if type(number) is float and number.is_integer():
            number = int(number)
        if type(number) is not int or not 0 < number <= ids.MAX_TABLE_NUMBER:
            raise BackupImportError(
                f'table {name} requires an "id" (table number) between 1 and {ids.MAX_TABLE_NUMBER}',
                entry=entry,
                line=lineno,
            )
        out.append((name, number, lineno))
    return out


def _first_document_number(zf: zipfile.ZipFile, entry: str) -> int | None:
    """The table number in the first document's ``_id`` (how Convex numbers tables without _tables)."""
    for _lineno, raw in _iter_lines(zf, entry):
        try:
            obj = _load_json(raw)
            return ids.decode_id(obj["_id"])[0] if type(obj) is dict else None
        except Exception:  # a bad first line is reported, with its location, when it is imported
            return None
    return None


# --- Decoding documents --------------------------------------------------------------------------------


class _DecodeProblem(Exception):
    """A value in a line cannot be decoded; the message never quotes the value."""


Decoder: TypeAlias = Callable[[Any], "dict[str, values.Value]"]


def _check_nesting(obj: Any, slack: int = 0) -> None:
    """Refuse over-deep input before a recursive walk over it (measured iteratively). ``slack``: extra
    levels allowed (an export context wraps a NaN leaf in one more object)."""
    depth = values.nesting_depth(obj)
    if depth > values.MAX_NESTING + slack:
        raise values.NestingTooDeepError(values.too_deep_message(depth))


def _big_ints_to_float(v: Any) -> Any:
    if type(v) is int:
        return v if values.INT64_MIN <= v <= values.INT64_MAX else float(v)
    if type(v) is list:
        return [_big_ints_to_float(x) for x in v]
    if type(v) is dict:
        return {k: _big_ints_to_float(x) for k, x in v.items()}
    return v


def _decode_uniform(obj: Any) -> dict[str, values.Value]:
    if type(obj) is not dict:
        raise _DecodeProblem("expected a JSON object")
    try:
        doc = values.from_export_json(obj)
    except InvalidValueError as e:
        if "Int64 range" not in e.message:
            raise
        # Convex reads integers beyond i64 as Float64. The range error may come before the decoder saw
        # the deepest part, so check the depth before the recursive rewrite.
        _check_nesting(obj)
        doc = values.from_export_json(_big_ints_to_float(obj))
    if type(doc) is not dict:  # e.g. a line that is a lone {"$bytes": ...}
        raise _DecodeProblem("expected a JSON object")
    return doc


# An export context: "infer" | "int64" | "float64inf" | "bytes" | "set" | "map" | ("nan", float) |
# list of contexts | dict of field -> context.
_SIMPLE_CONTEXTS: Final = frozenset({"infer", "int64", "float64inf", "bytes", "set", "map"})
_INT64_RE: Final = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _parse_context(v: Any) -> Any:
    if type(v) is str:
        if v not in _SIMPLE_CONTEXTS:
            raise _DecodeProblem("unknown export context")
        return v
    if type(v) is list:
        return [_parse_context(x) for x in v]
    if type(v) is dict:
        if "$float64NaN" in v:
            raw = _b64(v["$float64NaN"])
            if len(raw) != 8 or not math.isnan(f := struct.unpack("<d", raw)[0]):
                raise _DecodeProblem("$float64NaN must hold the 8 bytes of a NaN")
            return ("nan", f)
        return {k: _parse_context(x) for k, x in v.items()}
    raise _DecodeProblem("invalid export context")


def _b64(s: Any) -> bytes:
    if type(s) is not str:
        raise _DecodeProblem("expected a base64 string")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _DecodeProblem("invalid base64") from None


def _apply_context(ctx: Any, j: Any, shapes: list[Shape]) -> values.Value:
    """``ExportContext::apply``: rebuild a value from its ConvexCleanJSON form, the shapes it may have and
    its document's context."""
    if ctx == "set" or ctx == "map":
        raise _DecodeProblem("Set and Map values are not supported")
    t = type(j)
    if j is None or t is bool:
        return j
    if t is int or t is float:
        return float(j)  # clean JSON numbers are all Float64
    if t is str:
        how = ctx
        if how == "infer":
            how = _inferred_string_context(shapes) or "infer"
        if how == "infer":
            return j
        if how == "int64":
            if _INT64_RE.fullmatch(j) is None or not values.INT64_MIN <= (n := int(j)) <= values.INT64_MAX:
                raise _DecodeProblem("expected a decimal Int64 string")
            return n
        if how == "float64inf":
            if j == "Infinity":
                return math.inf
            if j == "-Infinity":
                return -math.inf
            raise _DecodeProblem('expected "Infinity" or "-Infinity"')
        if how == "bytes":
            return _b64(j)
        if type(how) is tuple:
            if j != "NaN":
                raise _DecodeProblem('expected "NaN"')
            return how[1]
        raise _DecodeProblem("unexpected export context for a string")
    if t is list:
        elements = _array_elements(shapes)
        if ctx == "infer":
            return [_apply_context("infer", x, elements) for x in j]
        if type(ctx) is list:
            if len(ctx) != len(j):
                raise _DecodeProblem("array lengths do not match their export context")
            return [_apply_context(c, x, elements) for c, x in zip(ctx, j, strict=True)]
        raise _DecodeProblem("unexpected export context for an array")
    if t is dict:
        if ctx != "infer" and type(ctx) is not dict:
            raise _DecodeProblem("unexpected export context for an object")
        hints = ctx if type(ctx) is dict else {}
        return {k: _apply_context(hints.get(k, "infer"), x, _object_fields(shapes, k)) for k, x in j.items()}
    raise _DecodeProblem("unexpected JSON value")


def _legacy_decoder(shape: Shape, overrides: Mapping[str, Any]) -> Decoder:
    shapes = [shape]

    def decode(obj: Any) -> dict[str, values.Value]:
        if type(obj) is not dict:
            raise _DecodeProblem("expected a JSON object")
        doc_id = obj.get("_id")
        ctx = overrides.get(doc_id, "infer") if type(doc_id) is str else "infer"
        _check_nesting(obj)
        doc = _apply_context(ctx, obj, shapes)
        if type(doc) is not dict:
            raise _DecodeProblem("expected a JSON object")
        return doc

    return decode


def _load_decoder(zf: zipfile.ZipFile, plan: _TablePlan, notes: list[str]) -> Decoder:
    entry = plan.schema_entry
    if entry is None:
        if plan.documents_entry is not None:
            notes.append(
                f"{plan.label}: no generated_schema.jsonl, so values were read as plain JSON "
                "(numbers as Float64, strings as strings), as Convex does"
            )
        return _legacy_decoder(_UNKNOWN, {})
    lines = _iter_lines(zf, entry)
    first = next(lines, None)
    if first is None:
        raise BackupImportError("generated_schema.jsonl is empty", entry=entry, line=1)
    lineno, raw = first
    head = _parse_line(raw, entry, lineno)
    if head == "uniform":
        return _decode_uniform
    if type(head) is not str:
        raise BackupImportError(
            "the first line of generated_schema must be a string", entry=entry, line=lineno
        )
    try:
        shape = parse_legacy_shape(head)
    except LegacyShapeError as e:
        raise BackupImportError(str(e), entry=entry, line=lineno) from None
    # Legacy overrides: one line per ambiguous document; Convex keeps them in memory too.
    overrides: dict[str, Any] = {}
    for lineno, raw in lines:
        obj = _parse_line(raw, entry, lineno)
        if type(obj) is not dict or len(obj) != 1:
            raise BackupImportError("an override must be an object with one item", entry=entry, line=lineno)
        ((doc_id, ctx),) = obj.items()
        try:
            ids.decode_id(doc_id)
            _check_nesting(ctx, slack=1)
            overrides[doc_id] = _parse_context(ctx)
        except (_DecodeProblem, ConvexError) as e:
            message = e.message if isinstance(e, ConvexError) else str(e)
            raise BackupImportError(message, entry=entry, line=lineno) from None
    return _legacy_decoder(shape, overrides)


# --- Import --------------------------------------------------------------------------------------------


@dataclass
class _Progress:
    committed: int = 0
    prepared: bool = False


def import_backup(
    dep: Deployment,
    path_or_file: PathOrFile,
    *,
    mode: ImportMode = "create",
    progress: ProgressCallback | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> BackupSummary:
    """Import a Convex backup ZIP (current or legacy format) into ``dep``.

    Tables keep their table numbers and documents their ``_id`` and ``_creationTime``. ``mode``:
    ``create`` fails if an imported table already has documents, ``replace`` empties imported tables
    first, ``append`` adds to them, ``replace-all`` makes the deployment exactly the backup (every table
    the backup does not hold is deleted, like the dashboard's Restore and ``npx convex import --replace-all``).

    Table numbers: every deployment numbers its first table 10001, so a backup's table may find its number
    taken by another table of this deployment (or, in append mode, its own table under another number).
    Outside ``replace-all`` such a table is placed under another number, its documents keeping their
    internal ids re-encoded under that number, **only if nothing in the backup refers to it by id**: no
    string anywhere in the backup's documents (other than each document's own ``_id``) is a valid id of
    that table number in that component. Otherwise the import is refused, naming the colliding tables.

    Indexes recorded in our metadata member (system ones included: ``_by_airbyte_primary_key``,
    ``_fivetran_by_*``) are created on the imported tables and filled as documents are inserted; blobs of
    registered :class:`TableMetadataHook` s are restored after the documents.

    All tables are checked and prepared in one transaction before any document is written; documents then
    go in in transactions of at most ``batch_size`` documents (fewer when the engine's per-transaction
    limits are reached), read line by line. The import is therefore not atomic: if it fails midway, the
    prepared tables and the committed batches stay, and the error says how many documents were committed.
    Tables of the ZIP that cannot be mapped (``_storage``, other system tables) are skipped with a note."""
    if mode not in IMPORT_MODES:
        raise ValueError(f"mode must be one of {', '.join(IMPORT_MODES)}, not {mode!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    source: Any = os.fspath(path_or_file) if isinstance(path_or_file, str | os.PathLike) else path_or_file
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise BackupImportError("the file is not a valid ZIP archive", code="InvalidZip") from None
    with zf:
        return _import(dep, zf, mode, progress, batch_size)


def _import(
    dep: Deployment, zf: zipfile.ZipFile, mode: ImportMode, progress: ProgressCallback | None, batch_size: int
) -> BackupSummary:
    try:
        plans, decoders, notes = _read_plan(zf)
        renumbering = _plan_actions(dep, zf, plans, mode, notes)
    except _ZIP_DAMAGE as e:
        raise BackupImportError(f"the ZIP archive is damaged ({e})", code="InvalidZip") from None
    _check_declared_sizes(dep, zf, plans)
    state = _Progress()
    _prepare(dep, plans, mode, renumbering, state)
    imported: list[BackupTable] = []
    try:
        for plan in plans:
            n = 0
            if plan.documents_entry is not None:
                n = _import_table(
                    dep, zf, plan, decoders[(plan.component, plan.name)], state, progress, batch_size
                )
            elif progress is not None:
                progress(plan.label, 0)
            _restore_metadata(dep, plan, notes)
            info = dep.find_table(plan.name, plan.component)
            imported.append(
                BackupTable(plan.component, plan.name, info.table_number if info else plan.number, n)
            )
    except BackupImportError as e:
        raise _with_committed(e, state) from None
    except _ZIP_DAMAGE as e:  # e.g. a CRC mismatch found at the end of an entry
        raise _with_committed(
            BackupImportError(f"the ZIP archive is damaged ({e})", code="InvalidZip"), state
        ) from None
    except Exception as e:
        e.add_note(_committed_note(state))
        raise
    for plan in plans:
        if plan.source_number is not None:
            info = dep.find_table(plan.name, plan.component)
            number = info.table_number if info is not None else "?"
            notes.append(
                f"{plan.label}: placed under table number {number} instead of the backup's {plan.source_number}"
                " (taken in this deployment); its documents' ids were re-encoded under the new number"
                " (nothing in the backup refers to them)"
            )
    return BackupSummary(None, tuple(imported), tuple(notes))


def _read_plan(zf: zipfile.ZipFile) -> tuple[list[_TablePlan], dict[tuple[str, str], Decoder], list[str]]:
    """Everything known before writing: the tables, their numbers and how to decode their documents."""
    layout = _scan(zf)
    notes = layout.notes
    # Table numbers: _tables first (it also lists tables that have no documents entry).
    for component, entry in layout.tables_entries.items():
        seen: dict[int, str] = {}
        for name, number, lineno in _read_tables_entry(zf, entry):
            if number in seen and seen[number] != name:
                raise BackupImportError(
                    f"tables {seen[number]} and {name} have the same table number {number}",
                    entry=entry,
                    line=lineno,
                )
            seen[number] = name
            plan = layout.tables.setdefault((component, name), _TablePlan(component, name))
            plan.listed_number = number
    if layout.metadata_entry is not None:
        _read_metadata(zf, layout.metadata_entry, layout.tables)
    plans = [layout.tables[k] for k in sorted(layout.tables)]
    for plan in plans:
        plan.number = plan.listed_number
        if plan.number is None and plan.documents_entry is not None:
            plan.number = _first_document_number(zf, plan.documents_entry)
    decoders = {(p.component, p.name): _load_decoder(zf, p, notes) for p in plans}
    return plans, decoders, notes


def _read_metadata(zf: zipfile.ZipFile, entry: str, tables: dict[tuple[str, str], _TablePlan]) -> None:
    """Attach the recorded indexes and metadata blobs to the tables of the backup (small: one entry per
    table, read whole)."""

    def bad(what: str) -> BackupImportError:
        return BackupImportError(f"invalid metadata: {what}", entry=entry)

    try:
        meta = orjson.loads(zf.read(entry))
    except orjson.JSONDecodeError:
        raise bad("not valid JSON") from None
    if (
        type(meta) is not dict
        or meta.get("version") != METADATA_VERSION
        or type(meta.get("tables")) is not list
    ):
        raise bad(f'expected {{"version": {METADATA_VERSION}, "tables": [...]}}')
    for i, item in enumerate(meta["tables"]):
        if (
            type(item) is not dict
            or type(item.get("component")) is not str
            or type(item.get("name")) is not str
        ):
            raise bad(f'tables[{i}] needs string "component" and "name"')
        plan = tables.get((item["component"], item["name"]))
        if plan is None:
            continue  # a table the backup does not hold (its entries were removed): nothing to attach to
        raw_indexes = item.get("indexes")
        if raw_indexes is not None:
            if type(raw_indexes) is not list:
                raise bad(f"tables[{i}].indexes must be a list")
            indexes = []
            for j, idx in enumerate(raw_indexes):
                fields = idx.get("fields") if type(idx) is dict else None
                if (
                    type(fields) is not list
                    or not all(type(f) is str for f in fields)
                    or type(idx.get("name")) is not str
                    or type(idx.get("system")) is not bool
                ):
                    raise bad(f'tables[{i}].indexes[{j}] needs "name", "fields" (strings) and "system"')
                indexes.append(IndexDefinition(idx["name"], tuple(fields), idx["system"]))
            plan.indexes = tuple(indexes)
        blobs = item.get("metadata")
        if blobs is not None:
            if type(blobs) is not dict:
                raise bad(f"tables[{i}].metadata must be an object")
            plan.metadata = blobs


def _committed_note(state: _Progress) -> str:
    return (
        f"The import stopped here and is not atomic: the tables it prepared and {state.committed} "
        "document(s) from earlier transactions stay committed; run it again with mode='replace' to start "
        "over."
    )


def _with_committed(e: BackupImportError, state: _Progress) -> BackupImportError:
    if not state.prepared:
        return e
    out = BackupImportError(
        e.message + " " + _committed_note(state),
        committed_documents=state.committed,
        code=e.code,
    )
    out.entry, out.line = e.entry, e.line
    return out


def _has_documents(dep: Deployment, info: TableInfo) -> bool:
    return bool(dep.snapshot_rows(info, dep.read_timestamp(), b"", 1))


def _user_tables(dep: Deployment) -> list[TableInfo]:
    return [t for t in dep.tables() if t.state == "active" and not identifiers.is_system_name(t.name)]


def _plan_actions(
    dep: Deployment, zf: zipfile.ZipFile, plans: list[_TablePlan], mode: ImportMode, notes: list[str]
) -> list[TableInfo]:
    """Decide what happens to every table (without writing) and return the tables ``replace-all``
    deletes. Table-number collisions are resolved by renumbering unreferenced tables, or refused."""
    in_backup = {(p.component, p.name) for p in plans}
    doomed = (
        [t for t in _user_tables(dep) if (t.component, t.name) not in in_backup]
        if mode == "replace-all"
        else []
    )
    renumber: list[tuple[_TablePlan, str | None]] = []  # (plan, name of the table holding its number)
    for plan in plans:
        existing = dep.find_table(plan.name, plan.component)
        if existing is None:
            plan.action = "create"
            continue
        same_number = plan.number is None or plan.number == existing.table_number
        if mode == "create":
            if _has_documents(dep, existing):
                raise BackupImportError(
                    f'Table "{plan.label}" already exists and has documents. Use mode "replace" to replace '
                    'its documents, "append" to add to them or "replace-all" to restore the whole deployment.',
                    code="TableExists",
                )
            plan.action = "keep" if same_number else "recreate"
        elif mode in ("replace", "replace-all"):
            plan.action = "clear" if same_number else "recreate"
        else:
            plan.action = "keep"
            if not same_number:
                renumber.append((plan, None))  # the documents go into the existing table, under its number
    # Which numbers stay taken: tables that are neither recreated nor deleted keep theirs.
    going = {(p.component, p.name) for p in plans if p.action == "recreate"} | {
        (t.component, t.name) for t in doomed
    }
    taken = {
        (t.component, t.table_number): t.name for t in _user_tables(dep) if (t.component, t.name) not in going
    }
    for plan in plans:
        if plan.action in ("create", "recreate") and plan.number is not None:
            holder = taken.get((plan.component, plan.number))
            if holder is not None and holder != plan.name:
                renumber.append((plan, holder))
    if not renumber:
        return doomed
    references = _count_id_references(zf, plans, {(p.component, p.number) for p, _ in renumber if p.number})
    refused = [(p, h) for p, h in renumber if references.get((p.component, p.number), 0) > 0]
    if refused:
        problems = []
        for plan, holder in refused:
            where = (
                f'is used by table "{holder}" in this deployment'
                if holder is not None
                else f"differs from the existing table's number {dep.table(plan.name, plan.component).table_number}"
            )
            n = references[(plan.component, plan.number)]
            problems.append(
                f'table "{plan.label}" has table number {plan.number}, which {where}, and {n} value(s) in the'
                f" backup refer to its documents by id"
            )
        raise BackupImportError(
            "Table numbers collide: "
            + "; ".join(problems)
            + ". Giving these tables other numbers would break those references. Use --replace-all (mode"
            ' "replace-all") to make the deployment exactly the backup, or import into an empty deployment.',
            code="TableNumberInUse",
        )
    for plan, _holder in renumber:
        plan.source_number = plan.number
        plan.number = None if plan.action != "keep" else dep.table(plan.name, plan.component).table_number
    return doomed


def _count_id_references(
    zf: zipfile.ZipFile, plans: list[_TablePlan], wanted: set[tuple[str, int | None]]
) -> dict[tuple[str, int | None], int]:
    """How many strings in the backup's documents are valid ids of each wanted (component, table number),
    not counting each document's own ``_id``. Ids are plain Crockford base32, never escaped in JSON, so
    they are found in the raw lines; only candidates are decoded."""
    counts: dict[tuple[str, int | None], int] = {}
    for plan in plans:
        if plan.documents_entry is None:
            continue
        own = (plan.component, plan.number)
        for _lineno, raw in _iter_lines(zf, plan.documents_entry):
            hits = 0
            for m in _ID_CANDIDATE_RE.finditer(raw):
                candidate = m.group(1).decode()
                try:
                    number = ids.table_number_of(candidate)
                except ConvexError:
                    continue
                key = (plan.component, number)
                if key in wanted:
                    counts[key] = counts.get(key, 0) + 1
                    hits += key == own
            if hits and own in wanted:
                # The document's own _id is not a reference (a second copy of it, or another id, is).
                obj = _load_json(raw)
                own_id = obj.get("_id") if type(obj) is dict else None
                if (
                    type(own_id) is str
                    and ids.is_valid_id(own_id)
                    and ids.table_number_of(own_id) == plan.number
                ):
                    counts[own] -= 1
    return counts


def _prepare(
    dep: Deployment, plans: list[_TablePlan], mode: ImportMode, doomed: list[TableInfo], state: _Progress
) -> None:
    """Create, clear, renumber or delete every table in one transaction, so that a refused import writes
    nothing; then create the indexes recorded in the backup."""
    with dep.transaction() as tx:
        for table in doomed:  # replace-all: tables the backup does not hold
            tx.delete_table(table.name, table.component)
        # Drop renumbered tables first so that their numbers are free for the tables created below.
        kept_indexes: dict[tuple[str, str], list[IndexDefinition]] = {}
        for plan in plans:
            if plan.action != "recreate":
                continue
            indexes = tx.indexes(plan.name, plan.component)
            if any(not i.ready for i in indexes):
                raise BackupImportError(
                    f'Table "{plan.label}" is still backfilling indexes, so it cannot be replaced. Wait for '
                    "indexes to complete backfilling.",
                    code="InvalidImport",
                )
            kept_indexes[(plan.component, plan.name)] = [
                IndexDefinition(i.name, i.fields[:-1], i.is_system) for i in indexes
            ]
            tx.delete_table(plan.name, plan.component)
        # Tables with a known number first: a table numbered by the engine must not take one of theirs.
        for plan in sorted(plans, key=lambda p: p.number is None):
            try:
                if plan.action == "clear":
                    tx.clear_table(plan.name, plan.component)
                elif plan.action in ("create", "recreate"):
                    tx.create_table(plan.name, plan.component, table_number=plan.number)
                    for index in kept_indexes.get((plan.component, plan.name), []):
                        tx.add_index(
                            plan.name, index.name, index.fields, component=plan.component, system=index.system
                        )
            except ConvexError as e:
                raise BackupImportError(
                    f'Cannot prepare table "{plan.label}": {e.message}', code=e.code
                ) from None
        for plan in plans:
            _add_recorded_indexes(tx, plan)
    state.prepared = True


def _add_recorded_indexes(tx: Transaction, plan: _TablePlan) -> None:
    """The backup's indexes on a prepared table. The table is empty unless documents are appended to it, so
    the indexes are ready at once and filled by the inserts; on a kept table only missing ones are added
    (a user's own index of the same name is left alone), and they backfill."""
    if not plan.indexes:
        return
    present = {i.name for i in tx.indexes(plan.name, plan.component)}
    for index in plan.indexes:
        if plan.action == "keep" and index.name in present:
            continue
        try:
            tx.add_index(plan.name, index.name, index.fields, component=plan.component, system=index.system)
        except ConvexError as e:
            raise BackupImportError(
                f"Cannot recreate index {plan.label}.{index.name} recorded in the backup: {e.message}",
                entry=METADATA_ENTRY,
                code=e.code,
            ) from None


def _restore_metadata(dep: Deployment, plan: _TablePlan, notes: list[str]) -> None:
    for name, blob in plan.metadata.items():
        hook = _METADATA_HOOKS.get(name)
        if hook is None:
            notes.append(f"{plan.label}: skipped metadata {name!r} (nothing here restores it)")
            continue
        hook.restore(dep, plan.component, plan.name, blob)


@dataclass
class _Row:
    lineno: int
    size: int
    doc: dict[str, values.Value]


def _import_table(
    dep: Deployment,
    zf: zipfile.ZipFile,
    plan: _TablePlan,
    decode: Decoder,
    state: _Progress,
    progress: ProgressCallback | None,
    batch_size: int,
) -> int:
    entry = plan.documents_entry
    assert entry is not None
    lines = _iter_lines(zf, entry)
    # Keep each transaction at half the engine's limits, like Convex; a limit hit anyway commits early.
    max_docs = min(batch_size, max(1, dep.config.max_writes_per_transaction // 2))
    max_bytes = dep.config.max_write_bytes_per_transaction // 2

    def next_row() -> _Row | None:
        item = next(lines, None)
        if item is None:
            return None
        lineno, raw = item
        obj = _parse_line(raw, entry, lineno)
        try:
            return _Row(lineno, len(raw), decode(obj))
        except _DecodeProblem as e:
            raise BackupImportError(str(e), entry=entry, line=lineno) from None
        except ConvexError as e:
            raise BackupImportError(e.message, entry=entry, line=lineno) from None

    done = 0

    def write(batch: Sequence[_Row]) -> None:
        """One batch in as few transactions as the engine's limits allow (normally one)."""
        nonlocal done
        position = 0
        while position < len(batch):
            count = 0
            with dep.transaction() as tx:
                while position < len(batch):
                    row = batch[position]
                    try:
                        _insert(tx, plan, row.doc)
                    except TransactionLimitError as e:
                        if count == 0:
                            raise BackupImportError(e.message, entry=entry, line=row.lineno) from None
                        break  # commit what fits; this row starts the next transaction
                    except ConvexError as e:
                        raise BackupImportError(e.message, entry=entry, line=row.lineno) from None
                    count += 1
                    position += 1
            done += count
            state.committed += count
            if progress is not None:
                progress(plan.label, done)

    # Each transaction at most half the engine's limits, like Convex (the line's size stands for the
    # document's; a line larger than that goes alone and the engine decides). A batch full by count is
    # committed before the next line is read; one full by bytes when the next line does not fit.
    limits = BatchLimits(max_rows=max_docs, max_bytes=max(2, max_bytes), separator_bytes=0)
    with Batcher(limits, write) as batcher:
        while (row := next_row()) is not None:
            batcher.add(
                row,
                min(row.size, limits.max_record_bytes),
                table=plan.label,
                label=f"{entry} line {row.lineno}",
            )
    if done == 0 and progress is not None:
        progress(plan.label, 0)
    return done


def _insert(tx: Transaction, plan: _TablePlan, doc: dict[str, values.Value]) -> None:
    info = tx.table(plan.name, plan.component)
    assert info is not None
    # Convex chooses the system fields a document lacks.
    if "_id" not in doc:
        doc["_id"] = ids.encode_id(info.table_number, ids.new_internal_id())
    elif plan.source_number is not None and type(doc["_id"]) is str:
        # A renumbered table: same internal id under the table's new number.
        number, internal = ids.decode_id(doc["_id"])
        if number != plan.source_number:
            raise InvalidValueError(
                f"_id belongs to table number {number}, not to this table's {plan.source_number}", path="._id"
            )
        doc["_id"] = ids.encode_id(info.table_number, internal)
    if CREATION_TIME not in doc:
        doc[CREATION_TIME] = tx.creation_time
    tx.insert_with_id(plan.name, doc, plan.component)
