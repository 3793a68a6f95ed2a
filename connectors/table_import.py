"""Single-table import of CSV, JSON (an array of objects) and JSONL files, as ``npx convex import --table``.

Convex's rules (``npx convex import --help``; ``docs.convex.dev/database/import-export/import``):

* CSV: a header row is required; every other row is a document whose fields are the header's names. Each
  field is a Float64 if it reads as a number (Rust's ``f64::from_str`` grammar: decimal or exponent
  notation, ``inf``/``infinity``/``nan`` in any case, with an optional sign) and a string otherwise
  (including the empty field).
* JSON: one array of objects. JSONL: one object per line (blank lines skipped). Values are Convex internal
  JSON (``values-and-ids.md`` §2.4): a JSON number is a Float64, ``{"$integer": …}`` an Int64,
  ``{"$bytes": …}`` bytes, ``{"$float": …}`` a special float.
* ``_id`` and ``_creationTime`` are kept when present and valid: ``_id`` must be an id of the target table
  (when the import creates the table, the first record's ``_id`` gives its table number, as Convex's
  importer does; that number must be free), ``_creationTime`` a number. Missing ones (and, in CSV, empty
  cells) are generated. Any
  other top-level field starting with ``_`` is refused.

Streaming: the file is read record by record (CSV through the ``csv`` module, JSON arrays through ``ijson``'s
incremental parser, JSONL line by line); records go through the bounded :class:`~connectors.batching.Batcher`
into engine transactions, so memory stays flat whatever the file size. Every record passes the engine's
value checks; errors name the file, the line (CSV, JSONL) or array element (JSON) and the field.

Modes: ``create`` refuses a table that already has documents, ``replace`` empties it first (its indexes are
kept), ``append`` adds. Like the backup import, the import commits batch by batch: a failure midway leaves
the batches committed before it, and the error says how many.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal, TypeAlias

import ijson
import orjson

from connectors import identifiers, ids, values
from connectors.backend.engine import CREATION_TIME, Deployment, Transaction
from connectors.batching import Batcher, BatchLimits
from connectors.constants import ID_FIELD, SYSTEM_FIELDS_ORDERED
from connectors.errors import BadRequestError, ConvexError, TransactionLimitError

__all__ = [
    "TABLE_FILE_FORMATS",
    "TableFileFormat",
    "TableImportError",
    "TableImportMode",
    "TableImportSummary",
    "detect_format",
    "import_table_file",
    "iter_table_records",
]

TableFileFormat: TypeAlias = Literal["csv", "json", "jsonl"]
TableImportMode: TypeAlias = Literal["create", "replace", "append"]
TABLE_FILE_FORMATS: Final = ("csv", "json", "jsonl")
TABLE_IMPORT_MODES: Final = ("create", "replace", "append")
ProgressCallback: TypeAlias = Callable[[str, int], None]

_EXTENSIONS: Final = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".jsonlines": "jsonl",
    ".ndjson": "jsonl",
}
# Rust's f64::from_str: an optional sign, then digits with an optional fraction and exponent, or inf /
# infinity / nan in any case. (Python's float() also takes "1_000" and surrounding spaces; Rust does not.)
_CSV_NUMBER_RE: Final = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
_READ_CHUNK: Final = 1 << 16


class TableImportError(BadRequestError):
    """A file cannot be imported; ``where`` locates the record (``file line 3``, ``file element 7``)."""

    def __init__(
        self, message: str, *, where: str | None = None, committed: int = 0, code: str = "InvalidImport"
    ) -> None:
        text = (f"{where}: " if where else "") + message
        if committed:
            text += (
                f" {committed} document(s) from earlier batches stay committed (the import is not atomic);"
                " run it again with --replace to start over."
            )
        super().__init__(code, text)
        self.where = where
        self.committed = committed


@dataclass(frozen=True)
class TableImportSummary:
    table: str
    format: TableFileFormat
    documents: int
    table_number: int


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record read from the file: where it is (for errors), its object and its encoded size."""

    where: str
    document: dict[str, Any]
    size: int


def detect_format(path: Path, fmt: str | None = None) -> TableFileFormat:
    """The file's format: ``fmt`` if given, otherwise from the extension."""
    if fmt is not None:
        if fmt not in TABLE_FILE_FORMATS:
            raise TableImportError(f"Unknown format {fmt!r}; use one of {', '.join(TABLE_FILE_FORMATS)}.")
        return fmt  # type: ignore[return-value]
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise TableImportError(
            f"Cannot tell the format of {path.name} from its extension; name it .csv, .json or .jsonl or"
            " pass --format csv|json|jsonl.",
            code="UnknownFormat",
        )
    return found  # type: ignore[return-value]


# --- Reading ---------------------------------------------------------------------------------------------


def _csv_field(text: str) -> values.Value:
    return float(text) if _CSV_NUMBER_RE.fullmatch(text) else text


def _iter_csv(f: IO[bytes], name: str) -> Iterator[SourceRecord]:
    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")  # a leading BOM is not part of the header
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None:
            raise TableImportError("the CSV file is empty; it needs a header row", where=name)
        for column, field_name in enumerate(header, start=1):
            problem = identifiers.field_name_problem(field_name)
            if problem is not None:
                raise TableImportError(f"header column {column}: {problem}", where=f"{name} line 1")
        if len(set(header)) != len(header):
            raise TableImportError("the header names a column twice", where=f"{name} line 1")
        for row in reader:
            where = f"{name} line {reader.line_num}"
            if not row:
                continue
            if len(row) != len(header):
                raise TableImportError(
                    f"the row has {len(row)} fields but the header has {len(header)}", where=where
                )
            doc = {k: _csv_field(v) for k, v in zip(header, row, strict=True)}
            for system_field in SYSTEM_FIELDS_ORDERED:
                if doc.get(system_field) == "":
                    del doc[system_field]  # an empty cell: generate it, as for a missing column
            yield SourceRecord(where, doc, len(orjson.dumps(doc)))
    except UnicodeDecodeError:
        raise TableImportError("the file is not valid UTF-8", where=name) from None
    except csv.Error as e:
        raise TableImportError(f"not valid CSV ({e})", where=f"{name} line {reader.line_num}") from None


def _decode_object(obj: Any, where: str) -> dict[str, Any]:
    if type(obj) is not dict:
        raise TableImportError(f"expected a JSON object, found {type(obj).__name__}", where=where)
    try:
        doc = values.from_encoded_json(obj)
    except ConvexError as e:
        raise TableImportError(e.message, where=where) from None
    assert type(doc) is dict
    return doc


def _iter_jsonl(f: IO[bytes], name: str) -> Iterator[SourceRecord]:
    for lineno, raw in enumerate(f, start=1):
        if not raw.strip():
            continue
        where = f"{name} line {lineno}"
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise TableImportError(f"not valid JSON ({e.msg}, column {e.colno})", where=where) from None
        yield SourceRecord(where, _decode_object(obj, where), len(raw))


def _iter_json_array(f: IO[bytes], name: str) -> Iterator[SourceRecord]:
    first = _first_significant_byte(f)
    if first != b"[":
        raise TableImportError("a .json file must hold one JSON array of objects", where=name)
    f.seek(0)
    element = 0
    try:
        for obj in ijson.items(f, "item", use_float=True, buf_size=_READ_CHUNK):
            element += 1
            where = f"{name} element {element}"
            doc = _decode_object(obj, where)
            yield SourceRecord(where, doc, len(orjson.dumps(obj)))
    except ijson.JSONError as e:
        detail = str(e).splitlines()[0]
        raise TableImportError(f"not valid JSON after element {element} ({detail})", where=name) from None


def _first_significant_byte(f: IO[bytes]) -> bytes:
    while True:
        b = f.read(1)
        if b == b"" or not b.isspace():
            return b


def iter_table_records(f: IO[bytes], fmt: TableFileFormat, name: str) -> Iterator[SourceRecord]:
    """The records of an open binary file, one at a time; ``name`` is used in error locations."""
    if fmt == "csv":
        return _iter_csv(f, name)
    if fmt == "jsonl":
        return _iter_jsonl(f, name)
    return _iter_json_array(f, name)


# --- Writing ---------------------------------------------------------------------------------------------


@dataclass
class _Target:
    table: str
    component: str
    committed: int = 0


def import_table_file(
    dep: Deployment,
    table: str,
    path: Path,
    *,
    fmt: str | None = None,
    mode: TableImportMode = "create",
    component: str = "",
    progress: ProgressCallback | None = None,
) -> TableImportSummary:
    """Import one CSV / JSON / JSONL file into ``table`` (see the module docstring for the rules)."""
    if mode not in TABLE_IMPORT_MODES:
        raise ValueError(f"mode must be one of {', '.join(TABLE_IMPORT_MODES)}, not {mode!r}")
    identifiers.check_table_name(table)
    file_format = detect_format(path, fmt)
    target = _Target(table, component)
    with open(path, "rb") as f:
        records = iter_table_records(f, file_format, path.name)
        first = next(records, None)
        _prepare_table(dep, target, mode, first)
        limits = BatchLimits(
            max_rows=max(1, dep.config.max_writes_per_transaction // 2),
            max_bytes=max(2, dep.config.max_write_bytes_per_transaction // 2),
            envelope_bytes=0,
            separator_bytes=0,
        )
        batcher: Batcher[SourceRecord] = Batcher(
            limits, lambda batch: _write_batch(dep, target, batch, progress)
        )
        if first is None and progress is not None:
            progress(table, 0)
        with batcher:
            if first is not None:
                batcher.add(first, first.size, table=table, label=first.where)
            for record in records:
                try:
                    batcher.add(record, record.size, table=table, label=record.where)
                except TableImportError as e:
                    raise _with_committed(e, target) from None
    info = dep.table(table, component)
    return TableImportSummary(table, file_format, target.committed, info.table_number)


def _with_committed(e: TableImportError, target: _Target) -> TableImportError:
    if not target.committed or e.committed:
        return e
    out = TableImportError(e.message, committed=target.committed, code=e.code)
    out.where = e.where
    return out


def _prepare_table(
    dep: Deployment, target: _Target, mode: TableImportMode, first: SourceRecord | None
) -> None:
    """Create or clear the table before the first batch. A new table takes its number from the first
    record's ``_id`` (when there is one), as Convex's importer does."""
    existing = dep.find_table(target.table, target.component)
    if existing is not None and mode == "create" and dep.document_count(target.table, target.component):
        raise TableImportError(
            f'Table "{target.table}" already has documents. Use --replace to replace them or --append to add'
            " to them.",
            code="TableExists",
        )
    number: int | None = None
    if first is not None and existing is None:
        first_id = first.document.get(ID_FIELD)
        if type(first_id) is str and ids.is_valid_id(first_id):
            number = ids.table_number_of(first_id)
    try:
        with dep.transaction() as tx:
            if existing is None:
                tx.create_table(target.table, target.component, table_number=number)
            elif mode == "replace":
                tx.clear_table(target.table, target.component)
    except ConvexError as e:
        raise TableImportError(
            f'Cannot prepare table "{target.table}": {e.message}',
            where=first.where if first else None,
            code=e.code,
        ) from None


def _write_batch(
    dep: Deployment, target: _Target, batch: Sequence[SourceRecord], progress: ProgressCallback | None
) -> None:
    """One batch in as few transactions as the engine's limits allow (normally one)."""
    position = 0
    while position < len(batch):
        applied = 0
        with dep.transaction() as tx:
            info = tx.table(target.table, target.component)
            if info is None:
                raise TableImportError(f'Table "{target.table}" was deleted during the import.')
            while position < len(batch):
                record = batch[position]
                try:
                    _insert(tx, info.table_number, target, record)
                except TransactionLimitError as e:
                    if applied == 0:
                        raise _with_committed(
                            TableImportError(e.message, where=record.where), target
                        ) from None
                    break
                except TableImportError as e:
                    raise _with_committed(e, target) from None
                except ConvexError as e:
                    raise _with_committed(
                        TableImportError(e.message, where=record.where, code=e.code), target
                    ) from None
                applied += 1
                position += 1
        target.committed += applied
        if progress is not None:
            progress(target.table, target.committed)


def _insert(tx: Transaction, table_number: int, target: _Target, record: SourceRecord) -> None:
    doc = record.document
    doc_id = doc.get(ID_FIELD)
    if doc_id is None:
        doc[ID_FIELD] = ids.encode_id(table_number, ids.new_internal_id())
    elif type(doc_id) is not str or not ids.is_valid_id(doc_id):
        raise TableImportError(f"field {ID_FIELD} is not a valid document id", where=record.where)
    elif ids.table_number_of(doc_id) != table_number:
        raise TableImportError(
            f"field {ID_FIELD} is an id of table number {ids.table_number_of(doc_id)}, not of table"
            f' "{target.table}" ({table_number}); drop the column to get new ids',
            where=record.where,
        )
    ct = doc.get(CREATION_TIME)
    if ct is None:
        doc[CREATION_TIME] = tx.creation_time
    elif type(ct) is not float or not math.isfinite(ct):
        raise TableImportError(f"field {CREATION_TIME} must be a finite number", where=record.where)
    tx.insert_with_id(target.table, doc, target.component)
