"""WriteBatch and WriteHistoryBatch: batch files -> ``apply_fivetran_operations`` (fivetran-destination.md §10).

Pipeline of one WriteBatch::

    reader thread: files -> decrypt/decompress/CSV (batch_files) -> RowConverter -> encoded operation
                   -> Batcher (500 rows and the body limit) -> bounded queue of ready chunks
    calling thread: chunk -> POST apply_fivetran_operations (sequential, in order)

so decrypting, decompressing and parsing overlap the HTTP calls while memory stays bounded by the queue.
The first error stops the batch: chunks already posted stay applied (every operation is idempotent, so
Fivetran's retry of the batch converges), the chunk being built is never sent.

An Update of a primary key that does not exist is a no-op (fivetran-sdk.md §7.3): the server answers 404
``FivetranMissingUpdatedRow`` for the whole chunk, so that chunk is re-sent row by row and the missing rows
are dropped.

History mode reads the current versions of the keys a batch touches (through the sync engine's snapshot
reader, keeping only those keys) and writes new versions as upserts keyed by the primary key plus
``_fivetran_start``.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from connectors.batching import Batcher, BatchLimits
from connectors.client import ConvexClient
from connectors.client.wire import FivetranOperation
from connectors.constants import (
    FIVETRAN_ACTIVE_COLUMN,
    FIVETRAN_END_COLUMN,
    FIVETRAN_HARD_DELETE,
    FIVETRAN_START_COLUMN,
    FIVETRAN_UPDATE,
    FIVETRAN_UPSERT,
    FivetranOperationType,
)
from connectors.errors import ConvexError
from connectors.sync import HttpReader, Rows, SyncMode, SyncSelection, SyncState, TableRef, run_sync
from fivetran_destination.batch_files import BatchFileParams, read_batch_file
from fivetran_destination.model import TableDef, get_path, key_of, merge_update, placement, set_path
from fivetran_destination.rows import RowConverter, encode_doc

log = logging.getLogger(__name__)

MISSING_UPDATED_ROW: Final = "FivetranMissingUpdatedRow"
QUEUE_CHUNKS: Final = 4
ROWS_PER_READ: Final = 2000


class WriteError(Exception):
    """The batch stopped; ``str()`` is the Task message."""


# --- posting -------------------------------------------------------------------------------------------


class OperationSink:
    """Posts chunks in order; an Update of a missing key is dropped (the chunk is re-sent row by row)."""

    def __init__(self, client: ConvexClient) -> None:
        self.client = client
        self.rows_sent = 0
        self.requests = 0
        self.missing_updates = 0

    def send(self, chunk: Sequence[FivetranOperation]) -> None:
        try:
            self._post(chunk)
        except ConvexError as e:
            if e.code != MISSING_UPDATED_ROW:
                raise
            # Rows before the missing one were rolled back with the request; every operation is idempotent,
            # so re-sending each row alone converges.
            for op in chunk:
                try:
                    self._post([op])
                except ConvexError as row_error:
                    if row_error.code != MISSING_UPDATED_ROW:
                        raise
                    self.missing_updates += 1
        self.rows_sent += len(chunk)

    def _post(self, ops: Sequence[FivetranOperation]) -> None:
        self.requests += 1
        self.client.apply_fivetran_operations(ops)


def deployment_error(e: ConvexError) -> WriteError:
    return WriteError(f"An error occurred on the Convex deployment: {e.user_message}")


# --- the overlapped pipeline ----------------------------------------------------------------------------

_DONE: Final = object()


def run_pipeline(
    produce: Callable[[Callable[[FivetranOperation, int], None]], None],
    sink: OperationSink,
    limits: BatchLimits,
) -> None:
    """Run ``produce(add)`` in a reader thread; ``add(op, size)`` goes through the batcher into a bounded
    queue; the calling thread posts the chunks in order. Errors of either side stop both."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_CHUNKS)
    cancelled = threading.Event()

    def put(item: Any) -> None:
        while not cancelled.is_set():
            try:
                ready.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Cancelled

    def reader() -> None:
        try:
            batcher: Batcher[FivetranOperation] = Batcher(limits, lambda chunk: put(list(chunk)))

            def add(op: FivetranOperation, size: int) -> None:
                batcher.add(op, size, table=op.table, label="A row")

            produce(add)
            batcher.close()
            put(_DONE)
        except _Cancelled:
            return
        except BaseException as e:  # handed to the posting thread, which raises it
            try:
                put(_Failure(e))
            except _Cancelled:
                return

    thread = threading.Thread(target=reader, name="fivetran-batch-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.error
            sink.send(item)
    finally:
        cancelled.set()
        thread.join()


class _Cancelled(Exception):
    """The reader thread stops because the poster failed or the call was cancelled."""


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def operation(table: str, kind: FivetranOperationType, row: dict[str, Any]) -> tuple[FivetranOperation, int]:
    op = FivetranOperation(table, kind, row)
    # The element's encoded size: the row plus the fixed keys around it.
    return op, len(orjson.dumps(row)) + len(table) + 48


def file_rows(
    table: TableDef, path: str, params: BatchFileParams, keys: Mapping[str, bytes]
) -> Iterator[dict[str, Any]]:
    """The converted, encoded documents of one batch file, in file order."""
    name = os.path.basename(path) or path
    converter: RowConverter | None = None
    for batch in read_batch_file(path, params, keys, ROWS_PER_READ):
        if converter is None or converter.header != batch.header:
            converter = RowConverter(table, batch.header, name)
        convert = converter.convert
        number = batch.first_row
        for cells in batch.rows:
            yield convert(cells, number)
            number += 1


# --- WriteBatch ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchFiles:
    replace: tuple[str, ...]
    update: tuple[str, ...]
    delete: tuple[str, ...]
    earliest_start: tuple[str, ...] = ()


def write_batch(
    client: ConvexClient,
    table: TableDef,
    files: BatchFiles,
    params: BatchFileParams,
    keys: Mapping[str, bytes],
    limits: BatchLimits,
) -> OperationSink:
    """Replace files -> Upsert, update files -> Update, delete files -> HardDelete (in that order)."""
    sink = OperationSink(client)
    name = table.convex_name

    def produce(add: Callable[[FivetranOperation, int], None]) -> None:
        for kind, paths in (
            (FIVETRAN_UPSERT, files.replace),
            (FIVETRAN_UPDATE, files.update),
            (FIVETRAN_HARD_DELETE, files.delete),
        ):
            for path in paths:
                for row in file_rows(table, path, params, keys):
                    add(*operation(name, kind, row))  # type: ignore[arg-type]

    run_pipeline(produce, sink, limits)
    return sink


# --- WriteHistoryBatch (fivetran-sdk.md §10) --------------------------------------------------------------

_START: Final = placement(FIVETRAN_START_COLUMN).path
_END: Final = placement(FIVETRAN_END_COLUMN).path
_ACTIVE: Final = placement(FIVETRAN_ACTIVE_COLUMN).path


def read_versions(
    client: ConvexClient, table: TableDef, keys: set[tuple[Any, ...]]
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Every stored version of the given keys (encoded documents without ``_id``/``_creationTime``); the
    rest of the table streams past without being kept."""
    found: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    if not keys:
        return found
    key_columns = table.key_columns
    selection = SyncSelection.of_tables([TableRef("", table.convex_name)])
    events = run_sync(HttpReader(client), selection, SyncState.fresh(), SyncMode.SNAPSHOT_ONLY)
    try:
        for event in events:
            if not isinstance(event, Rows):
                continue
            for document in event.documents:
                doc = encode_doc({k: v for k, v in document.items() if k not in ("_id", "_creationTime")})
                key = key_of(doc, key_columns)
                if key in keys:
                    found.setdefault(key, []).append(doc)
    finally:
        events.close()
    return found


def _start_of(doc: Mapping[str, Any]) -> float:
    value = get_path(doc, _START)
    return float(value) if isinstance(value, int | float) else -math.inf


def write_history_batch(
    client: ConvexClient,
    table: TableDef,
    files: BatchFiles,
    params: BatchFileParams,
    keys: Mapping[str, bytes],
    limits: BatchLimits,
) -> OperationSink:
    """earliest_start -> replace -> update -> delete, as fivetran-sdk.md §10 describes."""
    name = table.convex_name
    key_columns = table.key_columns
    sink = OperationSink(client)

    # Pass 1: which keys the batch closes, fills or deletes (key columns only are kept).
    touched: set[tuple[Any, ...]] = set()
    earliest: dict[tuple[Any, ...], float] = {}
    for path in files.earliest_start:
        for row in file_rows(table, path, params, keys):
            key = key_of(row, key_columns)
            touched.add(key)
            start = _start_of(row)
            earliest[key] = min(start, earliest.get(key, math.inf))
    for path in files.update + files.delete:
        for row in file_rows(table, path, params, keys):
            touched.add(key_of(row, key_columns))
    versions = read_versions(client, table, touched)

    def produce(add: Callable[[FivetranOperation, int], None]) -> None:
        def emit(kind: FivetranOperationType, row: dict[str, Any]) -> None:
            add(*operation(name, kind, row))

        # 1. earliest_start: drop versions starting at or after it, close the one still active before it.
        for key, start in earliest.items():
            kept = []
            for doc in versions.get(key, []):
                if _start_of(doc) >= start:
                    emit(FIVETRAN_HARD_DELETE, _key_row(doc, table))
                else:
                    kept.append(doc)
                    if get_path(doc, _ACTIVE) is True:
                        patch = _key_row(doc, table)
                        set_path(patch, _ACTIVE, False)
                        set_path(patch, _END, start - 1.0)
                        emit(FIVETRAN_UPDATE, patch)
                        set_path(doc, _ACTIVE, False)
                        set_path(doc, _END, start - 1.0)
            versions[key] = kept
        # 2. replace: versions as given.
        for path in files.replace:
            for row in file_rows(table, path, params, keys):
                emit(FIVETRAN_UPSERT, row)
                key = key_of(row, key_columns)
                if key in touched:
                    versions.setdefault(key, []).append(row)
        # 3. update: a new version whose unmodified columns come from the key's latest version.
        for path in files.update:
            for row in file_rows(table, path, params, keys):
                key = key_of(row, key_columns)
                history = versions.setdefault(key, [])
                latest = max(history, key=_start_of) if history else None
                if latest is None:
                    continue  # an update of a key that has no version: nothing to fill from (a no-op)
                full = merge_update(latest, row)
                emit(FIVETRAN_UPSERT, full)
                history.append(full)
        # 4. delete: close the active version at the file's _fivetran_end.
        for path in files.delete:
            for row in file_rows(table, path, params, keys):
                key = key_of(row, key_columns)
                end = get_path(row, _END)
                for doc in versions.get(key, []):
                    if get_path(doc, _ACTIVE) is True:
                        patch = _key_row(doc, table)
                        set_path(patch, _ACTIVE, False)
                        if end is not None:
                            set_path(patch, _END, end)
                        emit(FIVETRAN_UPDATE, patch)
                        set_path(doc, _ACTIVE, False)
                        if end is not None:
                            set_path(doc, _END, end)

    run_pipeline(produce, sink, limits)
    return sink


def _key_row(doc: Mapping[str, Any], table: TableDef) -> dict[str, Any]:
    """A row holding only the primary-key fields of ``doc`` (and the ``fivetran`` object they live in)."""
    row: dict[str, Any] = {"fivetran": {}}
    for column in table.primary_key:
        path = placement(column).path
        set_path(row, path, get_path(doc, path))
    return row
