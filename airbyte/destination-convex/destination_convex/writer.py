"""The write path: configured streams -> Convex tables, setup calls, batched imports, state echo.

One table name per stream (``<namespace>_<stream>`` for a namespaced stream, else ``<stream>``) is used for
every call: ``clear_tables``, ``add_primary_key_indexes``, ``primary_key_indexes_ready`` and the records of
``import_airbyte_records`` (the published connector clears and indexes the bare stream name, so a namespaced
overwrite never cleared the table it wrote).

Records go through the shared bounded batcher (``connectors.batching``): a batch is sent when the next record
would exceed the row count or the request's byte budget (under the 20 MiB body limit), and a STATE message is
returned only after every record before it was acknowledged by the server.

One batch is in flight while the next is being built (a single sender thread): the server's work overlaps
the parsing of the next records, at most two batches are in memory, batches are sent in order, and a failed
batch stops the sync at the next flush or at the end. A STATE flushes the records before it and is held
until the batch carrying them is committed (``state()`` / ``ready_states()``), so states do not drain the
pipeline, and a state whose records failed is never returned.

Append-mode batches are never retried after a failure that may have reached the server: the client raises
``AmbiguousWriteError`` and the sync stops without echoing the state, so the records are written at most once
by this run. Dedup batches converge when repeated and are retried by the client.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import orjson

from connectors.batching import Batcher, BatchLimits
from connectors.client import AirbyteMessage as ImportMessage
from connectors.client import AirbyteStream, ConvexClient
from connectors.constants import AIRBYTE_IMPORT_BODY_LIMIT
from connectors.errors import ConvexError, DataError, PlainError, Reaction
from connectors.identifiers import is_identifier, valid_identifier_table

__all__ = [
    "DEFAULT_INDEX_TIMEOUT_S",
    "DestinationError",
    "IndexPolling",
    "SyncMode",
    "TablePlan",
    "Writer",
    "describe_stream",
    "plan_tables",
    "table_name",
    "wait_for_indexes",
]

DEFAULT_INDEX_TIMEOUT_S: Final = 900.0
DEFAULT_MAX_ROWS: Final = 10_000
# {"tableName":"<name>","data":<data>} around each record's data.
_MESSAGE_OVERHEAD: Final = len(b'{"tableName":"","data":}')


class DestinationError(ConvexError):
    """A destination-side problem with a user-facing message (what, where, what to do)."""

    def __init__(self, code: str, message: str, reaction: Reaction) -> None:
        super().__init__(code, message, status=400)
        self._fixed_reaction = reaction

    @property
    def reaction(self) -> Reaction:
        return self._fixed_reaction


class SyncMode:
    APPEND: Final = "append"
    OVERWRITE: Final = "overwrite"
    APPEND_DEDUP: Final = "append_dedup"


def table_name(stream: str, namespace: str | None) -> str:
    """The Convex table a stream writes: ``<namespace>_<stream>`` when namespaced, as the published
    destination names its records (the server then applies ``ValidIdentifier``)."""
    return f"{namespace}_{stream}" if namespace else stream


def describe_stream(stream: str, namespace: str | None) -> str:
    return f"stream {stream!r} (namespace {namespace!r})" if namespace else f"stream {stream!r}"


@dataclass(frozen=True)
class TablePlan:
    """One configured stream: its table and how it is written."""

    stream: str
    namespace: str | None
    table: str  # the name sent on every call
    stored_as: str  # what the server's ValidIdentifier makes of it
    mode: str
    primary_key: tuple[tuple[str, ...], ...] | None  # dedup only
    json_schema: Any

    @property
    def label(self) -> str:
        return describe_stream(self.stream, self.namespace)

    def wire_stream(self) -> AirbyteStream:
        pk = None if self.primary_key is None else [list(path) for path in self.primary_key]
        return AirbyteStream(primary_key=pk, json_schema=self.json_schema)


def plan_tables(streams: Iterable[tuple[str, str | None, str, Sequence[Sequence[str]] | None, Any]]) -> list[TablePlan]:
    """Plans from ``(stream, namespace, destination_sync_mode, primary_key, json_schema)``; rejects names the
    server cannot store, dedup streams without a usable primary key and two streams writing one table."""
    plans: list[TablePlan] = []
    by_table: dict[str, TablePlan] = {}
    for stream, namespace, mode, primary_key, json_schema in streams:
        label = describe_stream(stream, namespace)
        table = table_name(stream, namespace)
        try:
            stored = valid_identifier_table(table)
        except PlainError:
            raise DestinationError(
                "InvalidTableName",
                f"The {label} cannot be written: its table name {table!r} cannot be made a valid Convex table"
                " name (after removing unsupported characters it must start with a letter and be at most 64"
                " characters long). Rename the stream or its namespace (e.g. with a stream prefix).",
                Reaction.CONFIGURATION,
            ) from None
        if mode not in (SyncMode.APPEND, SyncMode.OVERWRITE, SyncMode.APPEND_DEDUP):
            raise DestinationError(
                "UnsupportedSyncMode",
                f"The {label} uses destination sync mode {mode!r}; Convex supports append, overwrite and"
                " append_dedup. Choose one of them for this stream.",
                Reaction.CONFIGURATION,
            )
        pk: tuple[tuple[str, ...], ...] | None = None
        if mode == SyncMode.APPEND_DEDUP:
            if not primary_key:
                raise DestinationError(
                    "MissingPrimaryKey",
                    f"The {label} uses append_dedup but has no primary key. Set a primary key on the stream"
                    " or use append or overwrite.",
                    Reaction.CONFIGURATION,
                )
            pk = tuple(tuple(path) for path in primary_key)
            for path in pk:
                if not path or not all(is_identifier(part) and not part.startswith("_") for part in path):
                    raise DestinationError(
                        "InvalidPrimaryKey",
                        f"The {label} has the primary key field {'.'.join(path)!r}, which Convex cannot index:"
                        " every part of a primary-key path must start with a letter and contain only letters,"
                        " digits and underscores (fields starting with _ are renamed to source_… on import)."
                        " Choose another primary key or use append or overwrite.",
                        Reaction.CONFIGURATION,
                    )
        plan = TablePlan(stream, namespace, table, stored, mode, pk, json_schema)
        other = by_table.get(stored)
        if other is not None:
            raise DestinationError(
                "DuplicateTable",
                f"The {other.label} and the {label} would both write the Convex table {stored!r}. Rename one of"
                " them (e.g. with a stream prefix).",
                Reaction.CONFIGURATION,
            )
        by_table[stored] = plan
        plans.append(plan)
    return plans


@dataclass(frozen=True)
class IndexPolling:
    """Polling of ``primary_key_indexes_ready``: exponential backoff from ``first_s`` to ``max_s``, at most
    ``timeout_s`` in all."""

    timeout_s: float = DEFAULT_INDEX_TIMEOUT_S
    first_s: float = 0.05
    max_s: float = 5.0


def wait_for_indexes(
    client: ConvexClient,
    tables: Sequence[str],
    polling: IndexPolling,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    deadline = clock() + polling.timeout_s
    delay = polling.first_s
    while not client.primary_key_indexes_ready(tables):
        remaining = deadline - clock()
        if remaining <= 0:
            raise DestinationError(
                "PrimaryKeyIndexesNotReady",
                f"The primary-key indexes of {', '.join(tables)} were still backfilling after"
                f" {polling.timeout_s:g} s. The deployment keeps building them: run the sync again later.",
                Reaction.TRANSIENT,
            )
        sleep(min(delay, remaining))
        delay = min(delay * 2, polling.max_s)


class Writer:
    """Writes one sync: ``setup()`` once, then ``record()`` per RECORD and ``checkpoint()`` per STATE."""

    def __init__(
        self,
        client: ConvexClient,
        plans: Sequence[TablePlan],
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        body_limit: int = AIRBYTE_IMPORT_BODY_LIMIT,
        polling: IndexPolling | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._plans = list(plans)
        self._by_stream: dict[tuple[str | None, str], TablePlan] = {(p.namespace, p.stream): p for p in plans}
        self._wire: dict[str, AirbyteStream] = {p.table: p.wire_stream() for p in plans}
        self._polling = polling or IndexPolling()
        self._sleep = sleep
        envelope = len(orjson.dumps({"tables": {t: s.to_json() for t, s in self._wire.items()}, "messages": []}))
        self._limits = BatchLimits.under_body_limit(body_limit, max_rows=max_rows, envelope_bytes=envelope)
        self._batcher: Batcher[ImportMessage] = Batcher(self._limits, self._send)
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="convex-import")
        self._in_flight: Future[None] | None = None
        # States in arrival order, each with the batch that must commit before it is echoed (None: nothing).
        self._held: deque[tuple[Future[None] | None, Any]] = deque()
        self.records_seen = 0
        self.rows_written = 0
        self.batches_written = 0

    def setup(self) -> list[str]:
        """Clear the overwrite tables (one atomic call) and create and wait for the dedup indexes. Returns
        log lines."""
        notes: list[str] = []
        for p in self._plans:
            if p.stored_as != p.table:
                notes.append(f"The {p.label} is written to the Convex table {p.stored_as!r}")
        overwrite = [p.table for p in self._plans if p.mode == SyncMode.OVERWRITE]
        if overwrite:
            self._client.clear_tables(overwrite)
            notes.append(f"Cleared {len(overwrite)} table(s) for overwrite")
        dedup = {p.table: [list(path) for path in p.primary_key or ()] for p in self._plans if p.primary_key}
        if dedup:
            self._client.add_primary_key_indexes(dedup)
            wait_for_indexes(self._client, list(dedup), self._polling, sleep=self._sleep)
            notes.append(f"Primary-key indexes ready on {len(dedup)} table(s)")
        return notes

    def record(self, stream: str, namespace: str | None, data: Mapping[str, Any]) -> None:
        plan = self._by_stream.get((namespace or None, stream))
        self.records_seen += 1
        if plan is None:
            raise DestinationError(
                "MissingStream",
                f"Record #{self.records_seen:,} of this sync's input belongs to the {describe_stream(stream, namespace)}, which is not in"
                " the configured catalog. Refresh the connection's schema and select the stream, or reset the"
                " connection.",
                Reaction.CONFIGURATION,
            )
        if plan.primary_key is not None:
            self._check_primary_key(plan, data)
        size = len(orjson.dumps(data)) + len(plan.table) + _MESSAGE_OVERHEAD
        message = ImportMessage(table_name=plan.table, data=data)  # type: ignore[arg-type]
        self._batcher.add(message, size, table=plan.table, label=f"Record #{self.records_seen:,}")

    def _check_primary_key(self, plan: TablePlan, data: Mapping[str, Any]) -> None:
        for path in plan.primary_key or ():
            value: Any = data
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
                if value is None:
                    break
            if value is None:
                raise DataError(
                    "MissingPrimaryKeyValue",
                    f"Record #{self.records_seen:,} of this sync's input ({plan.label}) has no value for its primary-key field"
                    f" {'.'.join(path)!r}, so it cannot be deduplicated. Fix the source data or choose another"
                    " primary key; records before it in this sync up to the last state are committed.",
                    status=400,
                )

    def checkpoint(self) -> None:
        """Send every buffered record; returns only once the server committed them."""
        self._batcher.checkpoint(self._wait)

    def state(self, message: Any) -> None:
        """A STATE: send the records before it; ``ready_states`` returns it once they are committed."""
        self._batcher.checkpoint(lambda: self._held.append((self._in_flight, message)))

    @property
    def holds_states(self) -> bool:
        return bool(self._held)

    def ready_states(self) -> list[Any]:
        """The held states whose records are committed, in order (raises the error of a failed batch)."""
        ready = []
        while self._held:
            future, message = self._held[0]
            if future is not None:
                if not future.done():
                    break
                future.result()
            self._held.popleft()
            ready.append(message)
        return ready

    def close(self) -> None:
        """Send what is left and wait for it; then release the sender thread."""
        try:
            self._batcher.close()
            self._wait()
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop without sending buffered records; waits for a batch already in flight (never half-sent)."""
        self._sender.shutdown(wait=True)

    def _wait(self) -> None:
        """Wait for the batch in flight; its error, if any, is raised here."""
        future, self._in_flight = self._in_flight, None
        if future is not None:
            future.result()

    def _send(self, batch: Sequence[ImportMessage]) -> None:
        self._wait()  # one batch in flight, in order
        self._in_flight = self._sender.submit(self._import, list(batch))

    def _import(self, batch: list[ImportMessage]) -> None:
        names = {m.table_name for m in batch}
        tables = {name: self._wire[name] for name in names}
        self._client.import_airbyte_records(tables, batch)
        self.rows_written += len(batch)
        self.batches_written += 1
