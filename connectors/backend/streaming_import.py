"""Streaming import operations (``shared/spec/streaming-import.md``), independent of HTTP.

The HTTP layer parses request bodies into the typed inputs below and calls these functions; every failure is
a :class:`~connectors.errors.ConvexError` carrying the wire ``code``, ``message`` and status.

Writes follow §4: items are applied in order inside a transaction; when the engine refuses an item with
:class:`TransactionLimitError`, the transaction is committed without it and the item is retried in a fresh
one. Any other error aborts the request; transactions committed earlier stay committed, and the error message
then says how many records landed. Everything that can be checked without writing (record conversion, stream
and primary-key definitions, operation names, missing indexes and primary-key values) is checked for the
whole request before the first write, so a bad record at the end of a batch writes nothing.
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, NoReturn

import orjson

from connectors import identifiers, ids, values
from connectors.airbyte_records import convert_airbyte_record
from connectors.backend import bulk
from connectors.backend.engine import CREATION_TIME, Deployment, IndexInfo, TableInfo, Transaction
from connectors.constants import (
    AIRBYTE_PRIMARY_KEY_INDEX,
    FIVETRAN_OPERATIONS,
    FIVETRAN_PRIMARY_KEY_INDEX,
    FIVETRAN_SYNCED_INDEX,
    TRUNCATE_DELETE_TYPES,
)
from connectors.errors import (
    BadRequestError,
    ConvexError,
    InvalidValueError,
    NotFoundError,
    PlainError,
    RetriableError,
    SchemaValidationError,
    TransactionLimitError,
)
from connectors.schema import InvalidSchemaError, parse_table_definition

__all__ = [
    "AIRBYTE_PRIMARY_KEY_INDEX",
    "FIVETRAN_PRIMARY_KEY_INDEX",
    "FIVETRAN_SYNCED_INDEX",
    "AirbyteRecord",
    "AirbyteStream",
    "FivetranOperation",
    "ImportResult",
    "add_primary_key_indexes",
    "apply_fivetran_operations",
    "clear_tables",
    "fivetran_create_table",
    "fivetran_truncate_table",
    "get_schema",
    "import_airbyte_records",
    "primary_key_indexes_ready",
    "replace_tables",
]

MAX_PRIMARY_KEY_FIELDS: Final = 16
# JSON levels of a fivetran_create_table definition: an object validator takes 3 per document level.
TABLE_DEFINITION_MAX_DEPTH: Final = 128
TRUNCATE_PAGE: Final = 1000  # documents read per index query while truncating
SCAN_BATCH: Final = 1000  # document ids gathered per snapshot page (soft truncate without a cursor index)

IDENTIFIER_REQUIREMENTS: Final = (
    "Identifiers must start with a letter and can only contain letters, digits, and underscores."
)
_MORE_THAN_ONE: Final = "Received more than one value for query"

_DELETED_PATH: Final = ("fivetran", "deleted")
_SYNCED_PATH: Final = ("fivetran", "synced")
_SYNCED_FIELDS: Final = (
    ("fivetran.deleted", "fivetran.synced", CREATION_TIME),
    ("fivetran.synced", CREATION_TIME),
)
_FIVETRAN_OPERATIONS: Final = FIVETRAN_OPERATIONS
_DELETE_TYPES: Final = TRUNCATE_DELETE_TYPES
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --- Inputs and results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AirbyteStream:
    """One ``tables`` entry: ``None`` = Append mode, field paths = Dedup mode, ``()`` = invalid (empty)."""

    primary_key: tuple[tuple[str, ...], ...] | None


@dataclass(frozen=True)
class AirbyteRecord:
    """One ``messages`` entry; ``data`` is the raw parsed JSON (it must be an object)."""

    table_name: str
    data: Any


@dataclass(frozen=True)
class FivetranOperation:
    """One ``BatchWriteRow``; ``row`` is Convex internal JSON (``values.from_encoded_json``)."""

    table: str
    operation: str
    row: Any


@dataclass(frozen=True)
class ImportResult:
    """How much a request wrote: items applied and transactions committed."""

    records_committed: int
    transactions: int


# --- Shared helpers ----------------------------------------------------------------------------------


def _note_partial(error: ConvexError, committed: int) -> None:
    """Tell the user how much of a failed request landed (earlier transactions stay committed)."""
    if committed <= 0:
        return
    suffix = (
        f" ({committed} records were committed before this error; the rest of the request was not applied.)"
    )
    error.message += suffix
    if isinstance(error, PlainError):
        error.detail += suffix  # the text local callers and logs see
        error.args = (error.detail,)
    else:
        error.args = (error.message,)


def _run_in_transactions(
    dep: Deployment, step: Callable[[Transaction], bool], *, committed_before: int = 0
) -> ImportResult:
    """Call ``step(tx)`` until it returns False (nothing left), committing and opening a new transaction
    whenever a step hits a transaction limit; the step that hit it is retried in the new transaction.

    ``step`` applies exactly one item and returns True, and must leave the transaction untouched when it
    raises (the engine refuses a write before changing anything, so one write per item guarantees that).
    ``committed_before`` counts records this request committed earlier, for the partial-import message.
    """
    committed = 0
    transactions = 0
    finished = False
    try:
        while not finished:
            applied = 0
            with dep.transaction() as tx:
                while True:
                    try:
                        more = step(tx)
                    except TransactionLimitError:
                        if applied == 0:
                            raise  # the item does not fit even in an empty transaction
                        break  # commit what we have; retry the item in a new transaction
                    if not more:
                        finished = True
                        break
                    applied += 1
            committed += applied
            transactions += 1
    except ConvexError as e:
        _note_partial(e, committed_before + committed)
        raise
    return ImportResult(committed, transactions)


def _apply_each(
    dep: Deployment,
    items: Sequence[Any],
    apply: Callable[[Transaction, Any], None],
    *,
    committed_before: int = 0,
) -> ImportResult:
    """Apply ``items`` in order with commit-and-continue (§4)."""
    if not items:
        return ImportResult(0, 0)
    position = 0

    def step(tx: Transaction) -> bool:
        nonlocal position
        if position >= len(items):
            return False
        apply(tx, items[position])
        position += 1  # only after the item was applied, so a refused item is retried
        return True

    return _run_in_transactions(dep, step, committed_before=committed_before)


def _rust_debug_str(s: object) -> str:
    return json.dumps(s, ensure_ascii=False) if isinstance(s, str) else repr(s)


# Messages quote at most this much of a user-supplied primary key.
_DEBUG_COMPONENT_MAX: Final = 64
_DEBUG_PATHS_MAX: Final = MAX_PRIMARY_KEY_FIELDS + 1


def _debug_component(c: object) -> str:
    if isinstance(c, str) and len(c) > _DEBUG_COMPONENT_MAX:
        return _rust_debug_str(c[:_DEBUG_COMPONENT_MAX])[:-1] + '…"'
    return _rust_debug_str(c)


def _primary_key_debug(pk: Sequence[Sequence[Any]]) -> str:
    """Rust ``{:?}`` of a ``Vec<Vec<String>>``: ``[["a"], ["b", "c"]]`` (long names and long keys cut with
    ``…`` so the message never echoes unbounded input)."""
    shown = [
        "[" + ", ".join(_debug_component(c) for c in path[:_DEBUG_PATHS_MAX]) + "]"
        for path in pk[:_DEBUG_PATHS_MAX]
    ]
    if len(pk) > _DEBUG_PATHS_MAX:
        shown.append("…")
    return "[" + ", ".join(shown) + "]"


def _paths_display(fields: Sequence[str]) -> str:
    """Upstream ``IndexedFields`` display: ``["a.b", "_creationTime"]``."""
    return "[" + ", ".join(json.dumps(f) for f in fields) + "]"


def _primary_key_problem(pk: Sequence[Sequence[Any]]) -> str | None:
    """Why ``pk`` is not a valid list of index field paths (upstream ``PrimaryKey::try_from``): identifier
    components, non-empty paths, at most 16 paths, no ``_id``, no duplicates; None when it is valid.

    Identifier problems (and ``_id`` and empty paths) keep upstream's text; too many paths and a repeated
    path say so, since they are not identifier problems."""
    if len(pk) > MAX_PRIMARY_KEY_FIELDS:
        return (
            f"Invalid primary key: it has {len(pk)} field paths; the limit is {MAX_PRIMARY_KEY_FIELDS}. Use at"
            f" most {MAX_PRIMARY_KEY_FIELDS} fields that together identify a record."
        )
    seen: set[tuple[str, ...]] = set()
    for path in pk:
        if not path or not all(identifiers.is_identifier(c) for c in path):
            return f"Invalid primary key: {IDENTIFIER_REQUIREMENTS} {_primary_key_debug(pk)}."
        key = tuple(path)
        if key == ("_id",):
            return f"Invalid primary key: {IDENTIFIER_REQUIREMENTS} {_primary_key_debug(pk)}."
        if key in seen:
            return (
                f"Invalid primary key: the field path {_primary_key_debug([key])[1:-1]} appears more than"
                f" once in {_primary_key_debug(pk)}. List each field once."
            )
        seen.add(key)
    return None


def _check_index_paths(paths: Sequence[tuple[str, ...]]) -> None:
    """The index-field rules of §8.1 that come after identifier parsing."""
    for path in paths:
        if path == (CREATION_TIME,):
            raise BadRequestError(
                "IndexFieldsContainCreationTime",
                "`_creationTime` is automatically added to the end of each index. It should not be added"
                " explicitly in the index definition. See https://docs.convex.dev/using/indexes for more"
                " details.",
            )
    for path in paths:
        if path == ("_id",):
            raise BadRequestError(
                "IndexFieldsContainId",
                "`_id` is not a valid index field. To load documents by ID, use `db.get(id)`.",
            )
        if any(c.startswith("_") for c in path):
            raise BadRequestError(
                "IndexFieldNameReserved", "Reserved fields (starting with `_`) are not allowed in indexes."
            )


def _apply_in_one_transaction(
    dep: Deployment,
    count: int,
    apply_all: Callable[[Transaction], None],
    fallback: Callable[[], ImportResult],
) -> ImportResult:
    """Apply a whole request in one transaction when it fits (the common case: one Airbyte or Fivetran batch),
    else fall back to ``fallback`` (pre-validation, then commit-and-continue).

    Every failure inside the single transaction rolls it back, so a bad record anywhere writes nothing, as
    the pre-validation pass guarantees on the fallback path, without validating and encoding every record
    twice. A request that does not fit is detected by the engine's limit error; that transaction is rolled
    back and the request is redone on the fallback path."""
    if count == 0:
        return ImportResult(0, 0)
    if count <= dep.config.max_writes_per_transaction:
        try:
            with dep.transaction() as tx:
                apply_all(tx)
            return ImportResult(count, 1)
        except TransactionLimitError:
            pass  # rolled back: nothing of this request was written
    return fallback()


def _lookup_key(table: str, key: Sequence[Any], keys: bulk.IndexKeys) -> tuple[str, bytes]:
    """A primary-key lookup as a dict key: the engine's order-preserving index key (equality as the index
    sees it, so ``-0.0`` and ``0.0`` differ as they do in the index); ``keys`` caches repeated scalars."""
    return table, keys.encode(key)


def _prefetch(
    tx: Transaction,
    index_name: str,
    keys: Sequence[tuple[str, tuple[Any, ...]]],
    lookups: Sequence[tuple[str, bytes]],
) -> dict[tuple[str, bytes], list[tuple[str, dict[str, Any]]]]:
    """The matches of every distinct key, read before this transaction writes anything, so that no lookup
    has to flush buffered writes first (one flush per record otherwise)."""
    distinct: dict[tuple[str, bytes], tuple[str, tuple[Any, ...]]] = {}
    for lookup, (table, key) in zip(lookups, keys, strict=True):
        distinct.setdefault(lookup, (table, key))
    by_table: dict[str, list[tuple[tuple[str, bytes], tuple[Any, ...]]]] = {}
    for lookup, (table, key) in distinct.items():
        by_table.setdefault(table, []).append((lookup, key))
    found: dict[tuple[str, bytes], list[tuple[str, dict[str, Any]]]] = {}
    for table, entries in by_table.items():
        if tx.table(table) is None:
            found.update((lookup, []) for lookup, _ in entries)
            continue
        results = tx.index_query_many(
            table, index_name, [key for _, key in entries], limit=2, encoded=[lookup[1] for lookup, _ in entries]
        )
        found.update((lookup, matches) for (lookup, _), matches in zip(entries, results, strict=True))
    return found


class _Inserts:
    """New documents of a request, inserted in batches (``Transaction.insert_many``) in request order.

    The caller flushes before any other write and before any lookup whose match may be a buffered document;
    a buffered document given a ``lookup`` becomes that key's match (``[(id, doc)]``) with a placeholder id
    until the flush gives it its real id."""

    def __init__(
        self, tx: Transaction, kind: str, matches: dict[tuple[str, bytes], list[tuple[str, dict[str, Any]]]]
    ) -> None:
        self._tx = tx
        self._kind = kind
        self._matches = matches
        self._items: list[tuple[str, dict[str, Any], int, tuple[str, bytes] | None]] = []

    def add(self, table: str, doc: dict[str, Any], index: int, lookup: tuple[str, bytes] | None) -> None:
        self._items.append((table, doc, index, lookup))
        if lookup is not None:
            self._matches[lookup] = [("", doc)]
        if len(self._items) >= _INSERT_BATCH:
            self.flush()

    def flush(self) -> None:
        items = self._items
        if not items:
            return
        self._items = []
        start = 0
        while start < len(items):
            table = items[start][0]
            end = start + 1
            while end < len(items) and items[end][0] == table:
                end += 1
            run = items[start:end]

            def name_item(
                position: int, error: ConvexError, run: list[Any] = run, table: str = table
            ) -> ConvexError:
                return _with_where(error, _where(self._kind, run[position][2], table))

            doc_ids = self._tx.insert_many(table, [item[1] for item in run], on_error=name_item)
            for (_, doc, _, lookup), doc_id in zip(run, doc_ids, strict=True):
                if lookup is not None:
                    self._matches[lookup] = [(doc_id, doc)]
            start = end


# Documents per Transaction.insert_many call (bounds the batch's encoded copies).
_INSERT_BATCH: Final = 1000


def _one_match(matches: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]] | None:
    if len(matches) > 1:
        raise PlainError(_MORE_THAN_ONE)
    return matches[0] if matches else None


# The longest a millisecond `_creationTime` is written (13 digits, a point and 4 decimals, until 2286).
_CREATION_TIME_STAND_IN: Final = 1764475118123.4563
_LONGEST_INTERNAL_ID: Final = b"\xff" * ids.INTERNAL_ID_LEN
_NAME_IN_MESSAGE_MAX: Final = 64


class _SystemFieldBytes:
    """Per table, how many bytes ``_id`` and ``_creationTime`` add to a stored document (at least as many
    as the engine's will), so the pre-write check counts them against the size limit like the write does."""

    def __init__(self, dep: Deployment) -> None:
        self._dep = dep
        self._by_table: dict[str, int] = {}

    def for_table(self, table: str) -> int:
        size = self._by_table.get(table)
        if size is None:
            info = self._dep.find_table(table)
            # A table created by this request gets a number not known yet: assume the longest id.
            number = info.table_number if info is not None else ids.MAX_TABLE_NUMBER
            fields = {
                "_id": ids.encode_id(number, _LONGEST_INTERNAL_ID),
                CREATION_TIME: _CREATION_TIME_STAND_IN,
            }
            # `"_creationTime":…,"_id":"…"` without the braces, plus the comma joining the document's fields.
            size = self._by_table[table] = len(orjson.dumps(fields)) - 2 + 1
        return size


def _where(kind: str, index: int, table: object) -> str:
    """``Record 3 for table users``: names the item of the request a data error is about (long or
    non-string names cut, so the message never echoes unbounded input)."""
    if not isinstance(table, str):
        name = f"<{type(table).__name__}>"
    elif len(table) > _NAME_IN_MESSAGE_MAX:
        name = table[:_NAME_IN_MESSAGE_MAX] + "…"
    else:
        name = table
    return f"{kind} {index} for table {name}"


def _with_where(error: ConvexError, where: str) -> ConvexError:
    """Prefix a data error's message with the item it is about (same type, code and status)."""
    error.message = f"{where}: {error.message}"
    error.args = (error.message,)
    return error


_MAX_USER_FIELDS: Final = values.MAX_OBJECT_FIELDS - len(values.SYSTEM_FIELDS)


def _check_field_count(doc: dict[str, Any], where: str) -> None:
    """The engine counts ``_id`` and ``_creationTime`` against the field limit: so does this check."""
    fields = len(doc) + len(values.SYSTEM_FIELDS)
    if fields > values.MAX_OBJECT_FIELDS:
        raise InvalidValueError(
            f"{where}: the document has {fields} fields with _id and _creationTime; the limit is"
            f" {values.MAX_OBJECT_FIELDS}. Send at most {_MAX_USER_FIELDS}"
            " fields per record (for example nest some in an object)."
        )


def _check_encodable(doc: dict[str, Any], system_field_bytes: int, where: str) -> None:
    """Run the engine's document checks (names, nesting, field count, size) now, counting the two system
    fields the write will add, so they fail before any write (and name the item)."""
    _check_field_count(doc, where)
    try:
        size = values.encode_document(doc).size + system_field_bytes
    except InvalidValueError as e:
        raise _with_where(e, where) from None
    if size > values.MAX_DOCUMENT_SIZE:
        raise InvalidValueError(
            f"{where}: the document is too large ({size} bytes with _id and _creationTime); the limit is"
            f" {values.MAX_DOCUMENT_SIZE} bytes (1 MiB)."
        )


# --- Airbyte -----------------------------------------------------------------------------------------


class _AirbyteWrite(NamedTuple):  # a NamedTuple: one is built per record
    at: int  # in the request's `messages`, for error messages
    table: str
    doc: dict[str, Any]
    deleted: bool
    key: tuple[Any, ...] | None  # primary-key values in Dedup mode


def import_airbyte_records(
    dep: Deployment, tables: Mapping[str, AirbyteStream], messages: Sequence[AirbyteRecord]
) -> ImportResult:
    """``POST import_airbyte_records`` (§6): Append inserts every record; Dedup upserts/deletes by primary
    key through ``_by_airbyte_primary_key``."""
    # Step 2: convert every message (upstream converts messages before looking at the streams).
    # The size and nesting checks run when the engine writes each record (see _apply_in_one_transaction for
    # why that still writes nothing when any record is bad); the field count is checked here, counting the
    # system fields the write adds.
    converted: list[tuple[int, str, dict[str, Any], bool]] = []
    table_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        table = table_names.get(message.table_name)
        if table is None:
            table = table_names[message.table_name] = identifiers.valid_identifier_table(message.table_name)
        try:
            doc, deleted = convert_airbyte_record(message.data)
        except InvalidValueError as e:
            raise _with_where(e, _where("Record", i, table)) from None
        except PlainError as e:
            # Upstream's text comes first; the detail is what local callers and logs see.
            where = _where("Record", i, table)
            e.detail = f"{e.detail} ({where[0].lower()}{where[1:]})"
            e.args = (e.detail,)
            raise
        if len(doc) > _MAX_USER_FIELDS:
            _check_field_count(doc, _where("Record", i, table))
        converted.append((i, table, doc, deleted))

    # Step 3: the streams.
    streams: dict[str, tuple[tuple[str, ...], ...] | None] = {}
    for name, stream in tables.items():
        table = identifiers.valid_identifier_table(name)
        pk = stream.primary_key
        if pk is not None:
            if len(pk) == 0:
                raise BadRequestError("EmptyPrimaryKey", "Primary keys cannot be empty")
            problem = _primary_key_problem(pk)
            if problem is not None:
                raise PlainError(problem)
            pk = tuple(tuple(path) for path in pk)
        streams[table] = pk

    # Every record needs a stream and, in Dedup mode, a value at every primary-key path.
    writes: list[_AirbyteWrite] = []
    dedup_tables: dict[str, tuple[tuple[str, ...], ...]] = {}
    for i, table, doc, deleted in converted:
        if table not in streams:
            raise BadRequestError("MissingStream", f"Missing stream for table {table}")
        pk = streams[table]
        key: tuple[Any, ...] | None = None
        if pk is not None:
            dedup_tables[table] = pk
            key_values = []
            for path in pk:
                v = values.get_path(doc, path)
                if v is values.MISSING:
                    raise BadRequestError(
                        "MissingPrimaryKeyValue",
                        f"Missing value for primary key field: {json.dumps('.'.join(path))}.",
                    )
                key_values.append(v)
            key = tuple(key_values)
        writes.append(_AirbyteWrite(i, table, doc, deleted, key))

    for table, pk in dedup_tables.items():
        _check_airbyte_index(dep.index(table, AIRBYTE_PRIMARY_KEY_INDEX), table, pk)

    def apply(tx: Transaction, w: _AirbyteWrite) -> None:
        try:
            _apply_airbyte_write(tx, w)
        except (InvalidValueError, SchemaValidationError) as e:
            raise _with_where(e, _where("Record", w.at, w.table)) from None

    def apply_all(tx: Transaction) -> None:
        keyed = [(w.table, w.key) for w in writes if w.key is not None]
        index_keys = bulk.IndexKeys()
        lookups = [_lookup_key(table, key, index_keys) for table, key in keyed]
        matches = _prefetch(tx, AIRBYTE_PRIMARY_KEY_INDEX, keyed, lookups)
        inserts = _Inserts(tx, "Record", matches)
        next_lookup = iter(lookups)
        for w in writes:
            if w.key is None:
                # Append mode ignores the deleted flag (§13.4): CDC deletes are inserted too.
                if tx.table(w.table) is None:
                    tx.create_table(w.table)
                inserts.add(w.table, w.doc, w.at, None)
                continue
            lookup = next(next_lookup)
            if matches[lookup]:
                inserts.flush()  # the match may be a buffered insert: give it its id
            match = _one_match(matches[lookup])
            # A write under a key leaves the record's document as that key's only match (or none).
            if match is None:
                if not w.deleted:
                    inserts.add(w.table, w.doc, w.at, lookup)
                continue
            try:
                if w.deleted:
                    tx.delete(match[0])
                    matches[lookup] = []
                else:
                    tx.replace(match[0], w.doc)
                    matches[lookup] = [(match[0], w.doc)]
            except (InvalidValueError, SchemaValidationError) as e:
                raise _with_where(e, _where("Record", w.at, w.table)) from None
        inserts.flush()

    def fallback() -> ImportResult:
        system_field_bytes = _SystemFieldBytes(dep)
        for w in writes:
            _check_encodable(w.doc, system_field_bytes.for_table(w.table), _where("Record", w.at, w.table))
        return _apply_each(dep, writes, apply)

    return _apply_in_one_transaction(dep, len(writes), apply_all, fallback)


def _apply_airbyte_write(tx: Transaction, w: _AirbyteWrite) -> None:
    if w.key is None:
        # Append mode ignores the deleted flag (§13.4): CDC deletes are inserted too.
        if tx.table(w.table) is None:
            tx.create_table(w.table)
        tx.insert(w.table, w.doc)
        return
    match = _one_match(tx.index_query(w.table, AIRBYTE_PRIMARY_KEY_INDEX, w.key, limit=2))
    if match is not None:
        if w.deleted:
            tx.delete(match[0])
        else:
            tx.replace(match[0], w.doc)
    elif not w.deleted:
        tx.insert(w.table, w.doc)
    # A deleted record with no match is a no-op: a deliberate deviation from upstream, which inserts it
    # (§13.3 recommends this).


def _check_airbyte_index(idx: IndexInfo | None, table: str, pk: tuple[tuple[str, ...], ...]) -> None:
    how = (
        "Call add_primary_key_indexes for this table and wait until primary_key_indexes_ready returns true"
        " before importing records in dedup mode."
    )
    if idx is None or not idx.is_system:
        raise BadRequestError("MissingIndex", f"Missing index: {table}.{AIRBYTE_PRIMARY_KEY_INDEX}. {how}")
    expected = (*(".".join(p) for p in pk), CREATION_TIME)
    if idx.fields != expected:
        # Querying an index on other fields would silently match the wrong documents.
        raise BadRequestError(
            "MissingIndex",
            f"The index {table}.{AIRBYTE_PRIMARY_KEY_INDEX} is on the fields {_paths_display(idx.fields[:-1])},"
            f" not on the stream's primary key {_paths_display(expected[:-1])}. {how}",
        )
    if not idx.ready:
        raise BadRequestError(
            "IndexNotReady", f"The index {table}.{AIRBYTE_PRIMARY_KEY_INDEX} is still backfilling. {how}"
        )


def clear_tables(dep: Deployment, table_names: Sequence[str]) -> None:
    """``PUT clear_tables`` (§7): atomically empty the tables, keeping their indexes; missing tables are
    created empty."""
    names = list(dict.fromkeys(identifiers.valid_identifier_table(n) for n in table_names))
    with dep.transaction() as tx:
        for name in names:
            tx.clear_table(name)


def replace_tables(dep: Deployment, table_names: Mapping[str, str]) -> NoReturn:
    """``POST replace_tables`` (§9): Overwrite sync mode is not supported."""
    raise BadRequestError(
        "OverwriteNotSupported", "Overwrite sync mode is not supported. Please use a different sync mode."
    )


def add_primary_key_indexes(dep: Deployment, indexes: Mapping[str, Sequence[Sequence[str]]]) -> None:
    """``PUT add_primary_key_indexes`` (§8.1): one ``_by_airbyte_primary_key`` system index per table, all in
    one transaction; an identical existing index is kept, a different one is replaced."""
    parsed: dict[str, list[tuple[str, ...]]] = {}
    # The handler parses every primary key before the application checks the index rules.
    for name, pk in indexes.items():
        table = identifiers.valid_identifier_table(name)
        if len(pk) == 0:
            raise BadRequestError("EmptyPrimaryKey", "Primary keys cannot be empty")
        problem = _primary_key_problem(pk)
        if problem is not None:
            raise BadRequestError("InvalidPrimaryKey", problem)
        parsed[table] = [tuple(path) for path in pk]
    for paths in parsed.values():
        _check_index_paths(paths)
    with dep.transaction() as tx:
        for table, paths in parsed.items():
            tx.add_index(table, AIRBYTE_PRIMARY_KEY_INDEX, [".".join(p) for p in paths], system=True)


def primary_key_indexes_ready(dep: Deployment, tables: Sequence[str]) -> bool:
    """``GET primary_key_indexes_ready`` (§8.2): True when no table's primary-key index is backfilling."""
    ready = True
    for name in dict.fromkeys(identifiers.valid_identifier_table(n) for n in tables):
        idx = dep.index(name, AIRBYTE_PRIMARY_KEY_INDEX)
        if idx is None or not idx.is_system:
            raise BadRequestError("MissingIndex", f"Missing index: {name}.{AIRBYTE_PRIMARY_KEY_INDEX}")
        ready = ready and idx.ready
    return ready


# --- Fivetran ----------------------------------------------------------------------------------------


class _FivetranWrite(NamedTuple):  # a NamedTuple: one is built per row
    at: int  # in the request, for error messages
    table: str
    operation: str
    row: dict[str, Any]
    key: tuple[Any, ...]  # equality prefix on _fivetran_by_primary_key


def _fivetran_primary_key_index(dep: Deployment, table: str) -> IndexInfo:
    idx = dep.index(table, FIVETRAN_PRIMARY_KEY_INDEX)
    if idx is None or not idx.is_system:
        raise BadRequestError(
            "MissingFivetranPrimaryKeyIndex",
            f"The `{FIVETRAN_PRIMARY_KEY_INDEX}` index on the `{table}` table is missing. Please edit your"
            f" `schema.ts` file and add the following index to the `{table}` table:"
            f' .index("{FIVETRAN_PRIMARY_KEY_INDEX}", [/* …attributes in the primary key… */]) (or'
            ' .index("sync_index", ["fivetran.deleted", /* …attributes in the primary key… */]).',
        )
    return idx


def _lookup_plan(idx: IndexInfo) -> tuple[tuple[str, tuple[str, ...]] | None, ...]:
    """The primary-key index's fields as :func:`_fivetran_lookup_key` reads them, worked out once per
    request: ``None`` for ``fivetran.deleted`` (always false), else ``(field, path)``; ``_creationTime``
    is left out."""
    return tuple(
        None if path == _DELETED_PATH else (field, path)
        for field, path in zip(idx.fields, idx.paths, strict=True)
        if field != CREATION_TIME
    )


def _fivetran_lookup_key(
    plan: tuple[tuple[str, tuple[str, ...]] | None, ...], table: str, row: dict[str, Any]
) -> tuple[Any, ...]:
    """§10.2: ``fivetran.deleted`` must be false (soft-deleted rows never match), ``_creationTime`` is
    skipped, every other field equals the row's value. The engine queries by equality prefix, so the
    values follow the index fields in order (``_creationTime`` is always last)."""
    key: list[Any] = []
    missing = values.MISSING
    for entry in plan:
        if entry is None:
            key.append(False)
            continue
        field, path = entry
        v = row.get(path[0], missing) if len(path) == 1 else values.get_path(row, path)
        if v is missing:
            raise BadRequestError(
                "MissingValueForFivetranPrimaryKeyIndex",
                f"Missing value for field {json.dumps(field)} of primary key index"
                f" {table}.{FIVETRAN_PRIMARY_KEY_INDEX}.",
            )
        key.append(v)
    return tuple(key)


def _fivetran_patch(existing: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Update rules of §10.2: top-level fields of ``row`` overwrite, absent ones are kept, and the
    ``fivetran`` object is merged key by key (so ``synced``/``deleted``/``id`` survive a partial update)."""
    old_meta = existing.get("fivetran")
    new_meta = row.get("fivetran")
    if type(old_meta) is dict and type(new_meta) is dict:
        return {**row, "fivetran": {**old_meta, **new_meta}}
    return row


# JSON values that Convex internal JSON decodes to themselves.
_SCALARS: Final = frozenset({str, float, bool, type(None)})
_UNPACK_I64: Final = struct.Struct("<q").unpack
_INT64_B64_LEN: Final = 12  # padded base64 of 8 bytes
# Object keys known not to start with `$` (so an object of them is a plain object). Bounded.
_PLAIN_KEYS: set[str] = set()
_PLAIN_KEYS_MAX: Final = 65536


def _has_plain_keys(obj: dict[Any, Any]) -> bool:
    if _PLAIN_KEYS.issuperset(obj):
        return True
    if not all(type(k) is str and k[:1] != "$" for k in obj):
        return False
    if len(_PLAIN_KEYS) >= _PLAIN_KEYS_MAX:
        _PLAIN_KEYS.clear()
    _PLAIN_KEYS.update(obj)
    return True


def _decode_row(row: dict[Any, Any]) -> Any:
    """``values.from_encoded_json(row)``, without the per-value walk for the common row: plain keys and
    values that are strings, floats, booleans, nulls, well-formed ``$integer`` objects, or objects and
    arrays of the scalars (all of which but ``$integer`` decode to a copy of themselves). Anything else
    takes the general decoder, errors included."""
    if not _has_plain_keys(row):
        return values.from_encoded_json(row)
    out = dict(row)
    for k, v in row.items():
        t = type(v)
        if t is str or t is float or t is bool or v is None:
            continue
        if t is dict:
            if len(v) == 1:
                # An Int64 (the destination's LONG columns, often the primary key), decoded here; a payload
                # that is not 12 base64 characters of 8 bytes takes the general decoder for its error.
                raw = v.get("$integer")
                if type(raw) is str and len(raw) == _INT64_B64_LEN:
                    try:
                        out[k] = _UNPACK_I64(binascii.a2b_base64(raw, strict_mode=True))[0]
                        continue
                    except (binascii.Error, ValueError, struct.error):
                        return values.from_encoded_json(row)
            if _has_plain_keys(v) and _SCALARS.issuperset(map(type, v.values())):
                out[k] = dict(v)
                continue
        elif t is list and _SCALARS.issuperset(map(type, v)):
            out[k] = list(v)
            continue
        return values.from_encoded_json(row)
    return out


def apply_fivetran_operations(dep: Deployment, operations: Sequence[FivetranOperation]) -> ImportResult:
    """``POST apply_fivetran_operations`` (§10.2): Upsert / Update / HardDelete by primary key, in order."""
    # Pass 1 is what upstream's body deserialization rejects (400 BadJsonBody); pass 2 the per-row checks.
    rows: list[dict[str, Any]] = []
    for i, op in enumerate(operations):
        if op.operation not in _FIVETRAN_OPERATIONS:
            raise BadRequestError(
                "BadJsonBody",
                f"Operation {i}: unknown operation {_rust_debug_str(op.operation)}, expected one of"
                " `Upsert`, `Update`, `HardDelete`",
            )
        if type(op.row) is not dict:
            raise BadRequestError("BadJsonBody", f"Operation {i}: the row must be a JSON object")
        try:
            row = _decode_row(op.row)
        except values.NestingTooDeepError as e:
            raise _with_where(e, _where("Operation", i, op.table)) from None
        except InvalidValueError as e:
            raise BadRequestError(
                "BadJsonBody", f"{_where('Operation', i, op.table)}: invalid row: {e.message}"
            ) from None
        assert isinstance(row, dict)
        rows.append(row)

    indexes: dict[str, IndexInfo] = {}
    plans: dict[str, tuple[tuple[str, tuple[str, ...]] | None, ...]] = {}
    writes: list[_FivetranWrite] = []
    checked_tables: set[str] = set()  # a batch names the same table on every row: check it once
    for i, (op, row) in enumerate(zip(operations, rows, strict=True)):
        table = op.table
        if table not in checked_tables:
            try:
                identifiers.check_table_name(table)
            except ConvexError as e:
                raise PlainError(e.message) from None
            checked_tables.add(table)
        if "_id" in row or CREATION_TIME in row:
            system_field = "_id" if "_id" in row else CREATION_TIME
            raise InvalidValueError(
                f"{_where('Operation', i, table)}: rows cannot set the system field {system_field}",
                path=f".{system_field}",
            )
        if len(row) > _MAX_USER_FIELDS:
            _check_field_count(row, _where("Operation", i, table))
        plan = plans.get(table)
        if plan is None:
            idx = indexes[table] = _fivetran_primary_key_index(dep, table)
            plan = plans[table] = _lookup_plan(idx)
        writes.append(_FivetranWrite(i, table, op.operation, row, _fivetran_lookup_key(plan, table, row)))

    def apply(tx: Transaction, w: _FivetranWrite) -> None:
        try:
            _apply_fivetran_write(tx, w)
        except (InvalidValueError, SchemaValidationError) as e:
            raise _with_where(e, _where("Operation", w.at, w.table)) from None

    soft_deletes = {table: _DELETED_PATH in idx.paths for table, idx in indexes.items()}

    def apply_all(tx: Transaction) -> None:
        keyed = [(w.table, w.key) for w in writes]
        encode_key = bulk.IndexKeys().encode
        lookups = [(table, encode_key(key)) for table, key in keyed]  # as _lookup_key
        matches = _prefetch(tx, FIVETRAN_PRIMARY_KEY_INDEX, keyed, lookups)
        inserts = _Inserts(tx, "Operation", matches)
        for w, lookup in zip(writes, lookups, strict=True):
            found = matches[lookup]
            if w.operation == "Upsert" and not found:
                # A new row (the common case). The written document has the row's primary-key values, so
                # it matches this key again unless the index requires `fivetran.deleted == false` and it
                # is soft-deleted (§10.2); it cannot match any other key of the request.
                if soft_deletes[w.table]:
                    meta = w.row.get("fivetran")
                    live = type(meta) is dict and meta.get("deleted", values.MISSING) is False
                    inserts.add(w.table, w.row, w.at, lookup if live else None)
                else:
                    inserts.add(w.table, w.row, w.at, lookup)
                continue
            inserts.flush()  # in request order, and the match may be a buffered insert
            match = _one_match(matches[lookup])
            written: tuple[str, dict[str, Any]] | None = None
            try:
                if w.operation == "Upsert":
                    assert match is not None
                    tx.replace(match[0], w.row)
                    written = (match[0], w.row)
                elif w.operation == "Update":
                    if match is None:
                        raise NotFoundError(
                            "FivetranMissingUpdatedRow",
                            "Fivetran is trying to update a row that doesn\u2019t exist in the Convex destination.",
                        )
                    written = (match[0], tx.patch(match[0], _fivetran_patch(match[1], w.row)))
                elif match is not None:
                    tx.delete(match[0])
            except (InvalidValueError, SchemaValidationError) as e:
                raise _with_where(e, _where("Operation", w.at, w.table)) from None
            if written is not None and (
                not soft_deletes[w.table] or values.get_path(written[1], _DELETED_PATH) is False
            ):
                matches[lookup] = [written]
            else:
                matches[lookup] = []
        inserts.flush()

    def fallback() -> ImportResult:
        system_field_bytes = _SystemFieldBytes(dep)
        for w in writes:
            _check_encodable(w.row, system_field_bytes.for_table(w.table), _where("Operation", w.at, w.table))
        return _apply_each(dep, writes, apply)

    return _apply_in_one_transaction(dep, len(writes), apply_all, fallback)


def _apply_fivetran_write(tx: Transaction, w: _FivetranWrite) -> None:
    match = _one_match(tx.index_query(w.table, FIVETRAN_PRIMARY_KEY_INDEX, w.key, limit=2))
    if w.operation == "Upsert":
        if match is None:
            tx.insert(w.table, w.row)
        else:
            tx.replace(match[0], w.row)
    elif w.operation == "Update":
        if match is None:
            raise NotFoundError(
                "FivetranMissingUpdatedRow",
                "Fivetran is trying to update a row that doesn\u2019t exist in the Convex destination.",
            )
        tx.patch(match[0], _fivetran_patch(match[1], w.row))
    elif match is not None:  # HardDelete; no match is a successful no-op
        tx.delete(match[0])


def fivetran_create_table(dep: Deployment, table_definition: Any, *, wait_timeout_s: float = 600.0) -> None:
    """``POST fivetran_create_table`` (§10.4): every ``indexes`` entry becomes a system index (one
    transaction), then block until ``_fivetran_by_primary_key`` has backfilled. Idempotent."""
    # The validator parser recurses once per level: bound the levels first (measured iteratively).
    depth = values.nesting_depth(table_definition)
    if depth > TABLE_DEFINITION_MAX_DEPTH:
        raise InvalidSchemaError(
            f"Invalid schema: the table definition is nested {depth} levels deep; the limit is"
            f" {TABLE_DEFINITION_MAX_DEPTH} (validators for documents nested {values.MAX_NESTING} levels"
            " need about 60)."
        )
    definition = parse_table_definition(table_definition)
    table = definition.table_name
    planned: list[tuple[str, list[tuple[str, ...]]]] = []
    for index in definition.indexes:
        paths = [tuple(f.split(".")) for f in index.fields]
        # The Rust connector sends `_creationTime` last although the index procedure rejects it (§13.1).
        if paths and paths[-1] == (CREATION_TIME,):
            paths.pop()
        if not paths:
            raise BadRequestError(
                "EmptyIndex",
                f'In table "{table}" index "{index.index_descriptor}" must have at least one field.',
            )
        _check_index_paths(paths)
        planned.append((index.index_descriptor, paths))
    with dep.transaction() as tx:
        for name, paths in planned:
            tx.add_index(table, name, [".".join(p) for p in paths], system=True)
    if any(name == FIVETRAN_PRIMARY_KEY_INDEX for name, _ in planned) and not dep.wait_for_index(
        table, FIVETRAN_PRIMARY_KEY_INDEX, timeout_s=wait_timeout_s
    ):
        raise RetriableError(
            "IndexBackfillTimeout",
            f"The index {table}.{FIVETRAN_PRIMARY_KEY_INDEX} is still backfilling. Retry the request later;"
            " repeating it is safe.",
        )


def _delete_before_ms(delete_before: datetime) -> float:
    """chrono's ``timestamp_millis()`` (floored milliseconds) as a Float64; naive datetimes are UTC."""
    if delete_before.tzinfo is None:
        delete_before = delete_before.replace(tzinfo=UTC)
    return float((delete_before - _EPOCH) // timedelta(milliseconds=1))


def _mark_soft_deleted(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document with ``fivetran.deleted = true`` (the ``fivetran`` object is created if missing or not an
    object); system fields dropped for ``replace``."""
    out = {k: v for k, v in doc.items() if k not in values.SYSTEM_FIELDS}
    meta = out.get("fivetran")
    out["fivetran"] = {**(meta if type(meta) is dict else {}), "deleted": True}
    return out


def fivetran_truncate_table(
    dep: Deployment, table_name: str, delete_before: datetime | None, delete_type: str
) -> ImportResult:
    """``POST fivetran_truncate_table`` (§10.3)."""
    if delete_type not in _DELETE_TYPES:
        raise BadRequestError(
            "BadJsonBody",
            f"unknown deleteType {_rust_debug_str(delete_type)}, expected `SoftDelete` or `HardDelete`",
        )
    table = identifiers.valid_identifier_table(table_name)
    hard = delete_type == "HardDelete"
    if delete_before is None and hard:
        info = dep.find_table(table)
        count = 0 if info is None else dep.document_count(table)
        clear_tables(dep, [table])  # atomic; creates the table if missing
        return ImportResult(count, 1)
    if dep.find_table(table) is None:
        return ImportResult(0, 0)

    idx = dep.index(table, FIVETRAN_SYNCED_INDEX)
    if idx is None or not idx.is_system:
        raise BadRequestError(
            "MissingFivetranSyncedIndex",
            f"The Fivetran synchronization index on the `{table}` table is missing. Something went wrong with"
            " the Fivetran sync.",
        )
    if idx.fields not in _SYNCED_FIELDS:
        raise BadRequestError(
            "WrongFieldsInFivetranSyncedIndex",
            f"The Fivetran synchronization index on the `{table}` has the wrong fields"
            f" {_paths_display(idx.fields)}. Expected {_paths_display(_SYNCED_FIELDS[0])} or"
            f" {_paths_display(_SYNCED_FIELDS[1])} Something went wrong with the Fivetran sync.",
        )
    cutoff = None if delete_before is None else _delete_before_ms(delete_before)
    with_deleted = idx.fields == _SYNCED_FIELDS[0]
    if not hard and not with_deleted:
        # Soft-deleted documents stay in this index's range, so restarting the query would find them again.
        return _soft_delete_by_scan(dep, table, cutoff)
    if not with_deleted:
        return _truncate_range(dep, table, [()], cutoff, hard)
    if not hard:
        return _truncate_range(dep, table, [(False,)], cutoff, hard)
    # Deliberate change from upstream, which hard-deletes the `fivetran.deleted == false` range only and so
    # leaves soft-deleted rows older than the cutoff behind: a hard truncate removes every row below the
    # cutoff whatever its flag, walking one range per flag value a document can hold.
    return _truncate_range(dep, table, [(flag,) for flag in _DELETED_FLAG_VALUES], cutoff, hard)


# The `fivetran.deleted` values the destination writes (absent, null, false, true).
_DELETED_FLAG_VALUES: Final = (values.MISSING, None, False, True)


def _truncate_range(
    dep: Deployment, table: str, prefixes: Sequence[tuple[Any, ...]], cutoff: float | None, hard: bool
) -> ImportResult:
    """Delete / soft-delete the documents of the ``_fivetran_by_synced`` ranges (one per equality prefix, in
    turn), page by page. Every document handled leaves its range (deleted, or no longer
    ``fivetran.deleted == false``), so each new page and each new transaction simply restarts the query."""
    less_than: Any = values.MISSING if cutoff is None else cutoff
    # A page costs about two reads per document (index entry + document); keep several pages per transaction.
    page_size = max(1, min(TRUNCATE_PAGE, dep.config.max_read_rows_per_transaction // 4))
    page: list[tuple[str, dict[str, Any]]] = []
    page_tx: Transaction | None = None
    remaining = list(prefixes)

    def step(tx: Transaction) -> bool:
        nonlocal page, page_tx
        while page_tx is not tx or not page:
            if not remaining:
                return False
            page_tx = tx
            page = tx.index_query(
                table, FIVETRAN_SYNCED_INDEX, remaining[0], less_than=less_than, limit=page_size
            )
            page.reverse()  # pop from the end in index order
            if not page:
                remaining.pop(0)  # this range is done
        doc_id, doc = page[-1]
        if hard:
            tx.delete(doc_id)
        else:
            tx.replace(doc_id, _mark_soft_deleted(doc))
        page.pop()
        return True

    return _run_in_transactions(dep, step)


def _in_synced_range(doc: Mapping[str, Any], cutoff: float | None) -> bool:
    # The index orders by Convex value order, so compare the same way (a missing value sorts first).
    return cutoff is None or values.compare_values(values.get_path(doc, _SYNCED_PATH), cutoff) < 0


def _soft_delete_by_scan(dep: Deployment, table: str, cutoff: float | None) -> ImportResult:
    """Soft truncate with the ``[fivetran.synced, _creationTime]`` index: the engine's index queries have no
    lower bound, so walk the table at a snapshot in id order (the cursor) and re-check each document in the
    writing transaction. Documents already soft-deleted are left alone (rewriting them changes nothing)."""
    info = dep.find_table(table)
    if info is None:
        return ImportResult(0, 0)
    snapshot = dep.read_timestamp()
    committed = 0
    transactions = 0
    for batch in _id_batches(dep, info, snapshot, cutoff):
        result = _apply_each(
            dep, batch, lambda tx, doc_id: _soft_delete_one(tx, doc_id, cutoff), committed_before=committed
        )
        committed += result.records_committed
        transactions += result.transactions
    return ImportResult(committed, transactions)


def _id_batches(dep: Deployment, info: TableInfo, snapshot: int, cutoff: float | None) -> Iterator[list[str]]:
    batch: list[str] = []
    for document in dep.iter_snapshot(info, snapshot, page_size=SCAN_BATCH):
        doc = document.value()
        meta = doc.get("fivetran")
        if _in_synced_range(doc, cutoff) and not (type(meta) is dict and meta.get("deleted") is True):
            batch.append(document.id)
            if len(batch) >= SCAN_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _soft_delete_one(tx: Transaction, doc_id: str, cutoff: float | None) -> None:
    doc = tx.get(doc_id)
    if doc is None or not _in_synced_range(doc, cutoff):
        return  # changed since the snapshot
    new = _mark_soft_deleted(doc)
    if new != {k: v for k, v in doc.items() if k not in values.SYSTEM_FIELDS}:
        tx.replace(doc_id, new)


def get_schema(dep: Deployment) -> dict[str, Any] | None:
    """``GET get_schema`` (§10.5): the active ``DatabaseSchemaJson`` or None."""
    schema = dep.get_schema()
    return None if schema is None else schema.to_json()
