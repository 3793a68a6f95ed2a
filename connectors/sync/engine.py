"""The sync engine: an initial snapshot, then the change feed, as a stream of typed events.

``run_sync(reader, selection, state, mode)`` yields, in order:

* ``TableStarted(table, truncate)`` before the first rows or deletes of a table in this run; ``truncate`` is
  True when the state tracks tables and has not seen this one (Fivetran: emit TRUNCATE; an exporter: open a
  file);
* ``Rows(table, values)``: upserts of one table, a whole run of a page at a time (never one event per row);
* ``Deletes(table, values)``: deletions of one table (each value carries only ``_id``);
* ``Checkpoint(state)`` after every page whose rows it covers were yielded: after each snapshot page with
  more to come, after the last snapshot page (state now in the DELTAS phase at the snapshot timestamp), and
  after every delta page, empty or not;
* ``SnapshotComplete(snapshot_ts)`` when the snapshot finishes, right before its checkpoint;
* ``CursorExpired(code, message, phase)`` when the server says the stored cursor can no longer be used
  (``CURSOR_EXPIRED_CODES``); nothing follows it, and the caller decides (Fivetran: a Task; Airbyte:
  restart from ``state.restarted()``).

Order inside a delta page is preserved: the page is cut into runs of consecutive values of one table and one
kind (upsert or delete). A snapshot page is one table, so it is one run.

Any other error propagates as the reader raised it; the last checkpoint yielded is where to resume.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from itertools import groupby
from operator import itemgetter

from connectors.client import ExportedValue
from connectors.constants import CURSOR_EXPIRED_CODES, ID_FIELD
from connectors.errors import ConvexError
from connectors.sync.readers import ExportReader
from connectors.sync.selection import SyncSelection
from connectors.sync.state import Phase, SyncState, TableRef


class SyncMode(enum.Enum):
    INCREMENTAL = "incremental"
    """Snapshot (unless the state is past it), then the change feed until it is exhausted
    (Airbyte incremental; ``export`` followed by deltas)."""
    STOP_AFTER_SNAPSHOT = "stop_after_snapshot"
    """One Fivetran Update: a state in the snapshot phase runs (the rest of) the snapshot and stops after
    its final checkpoint; a state in the deltas phase runs the change feed."""
    SNAPSHOT_ONLY = "snapshot_only"
    """A full refresh: (the rest of) a snapshot and nothing else; a state already past its snapshot starts
    a new one (the previous full refresh finished)."""


@dataclass(frozen=True, slots=True)
class TableStarted:
    table: TableRef
    truncate: bool


@dataclass(frozen=True, slots=True)
class Rows:
    """Upserted documents of one table. ``values[i].document`` is the document (``_id``, ``_creationTime``
    and the selected fields, decoded Convex values); ``values[i].ts`` its revision timestamp."""

    table: TableRef
    values: list[ExportedValue]

    @property
    def documents(self) -> list[dict]:
        return [v.document for v in self.values]


@dataclass(frozen=True, slots=True)
class Deletes:
    """Deleted documents of one table; ``values[i].document`` is ``{"_id": …}``, ``values[i].ts`` when."""

    table: TableRef
    values: list[ExportedValue]

    @property
    def ids(self) -> list[str]:
        return [v.document[ID_FIELD] for v in self.values]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    state: SyncState


@dataclass(frozen=True, slots=True)
class SnapshotComplete:
    snapshot_ts: int


@dataclass(frozen=True, slots=True)
class CursorExpired:
    code: str
    message: str
    phase: Phase


SyncEvent = TableStarted | Rows | Deletes | Checkpoint | SnapshotComplete | CursorExpired


class _Tables:
    """Tables seen so far (for TRUNCATE and ``TableStarted``) and rows handed on per table."""

    def __init__(self, state: SyncState) -> None:
        self.tracked: set[TableRef] | None = None if state.tables_seen is None else set(state.tables_seen)
        self._frozen = state.tables_seen
        self.started: set[TableRef] = set()
        self.rows: dict[TableRef, int] = dict(state.rows_synced)

    def start(self, ref: TableRef) -> TableStarted | None:
        if ref in self.started:
            return None
        self.started.add(ref)
        truncate = False
        if self.tracked is not None and ref not in self.tracked:
            self.tracked.add(ref)
            self._frozen = None
            truncate = True
        return TableStarted(ref, truncate)

    def seen(self) -> frozenset[TableRef] | None:
        if self.tracked is None:
            return None
        if self._frozen is None:
            self._frozen = frozenset(self.tracked)
        return self._frozen

    def count(self, ref: TableRef, n: int) -> None:
        self.rows[ref] = self.rows.get(ref, 0) + n


def run_sync(
    reader: ExportReader,
    selection: SyncSelection,
    state: SyncState,
    mode: SyncMode = SyncMode.INCREMENTAL,
) -> Generator[SyncEvent, None, None]:
    """Drive ``state`` forward; see the module docstring for the events and their order.

    A generator: ``close()`` it to stop early (the reader's page pipeline is closed with it)."""
    if mode is SyncMode.SNAPSHOT_ONLY and state.phase is Phase.DELTAS:
        state = state.restarted()
    tables = _Tables(state)
    if state.phase is Phase.SNAPSHOT:
        final = yield from _snapshot(reader, selection, state, tables)
        if final is None or mode is not SyncMode.INCREMENTAL:
            return
        state = final
    yield from _deltas(reader, selection, state, tables)


def _snapshot(
    reader: ExportReader, selection: SyncSelection, state: SyncState, tables: _Tables
) -> Generator[SyncEvent, None, SyncState | None]:
    """The snapshot phase; returns the final (DELTAS) state, or None after ``CursorExpired``."""
    pages = reader.snapshot_pages(selection.wire, state.snapshot_ts, state.snapshot_cursor)
    try:
        while True:
            try:
                page = next(pages, None)
            except ConvexError as exc:
                if exc.code in CURSOR_EXPIRED_CODES:
                    yield CursorExpired(exc.code, exc.message, Phase.SNAPSHOT)
                    return None
                raise
            if page is None:
                raise RuntimeError("the reader's snapshot pages ended before a page with hasMore false")
            yield from _page_events(page.values, selection, tables)
            if page.has_more:
                state = replace(
                    state,
                    snapshot_ts=page.snapshot,
                    snapshot_cursor=page.cursor,
                    tables_seen=tables.seen(),
                    rows_synced=tables.rows,
                )
                yield Checkpoint(state)
                continue
            final = SyncState(
                Phase.DELTAS,
                snapshot_ts=page.snapshot,
                snapshot_cursor=page.cursor,
                delta_cursor=page.snapshot,
                tables_seen=tables.seen(),
                rows_synced=tables.rows,
            )
            yield SnapshotComplete(page.snapshot)
            yield Checkpoint(final)
            return final
    finally:
        close = getattr(pages, "close", None)
        if close is not None:
            close()


def _deltas(
    reader: ExportReader, selection: SyncSelection, state: SyncState, tables: _Tables
) -> Iterator[SyncEvent]:
    assert state.delta_cursor is not None
    pages = reader.delta_pages(selection.wire, state.delta_cursor)
    try:
        while True:
            try:
                page = next(pages, None)
            except ConvexError as exc:
                if exc.code in CURSOR_EXPIRED_CODES:
                    yield CursorExpired(exc.code, exc.message, Phase.DELTAS)
                    return
                raise
            if page is None:
                raise RuntimeError("the reader's delta pages ended before a page with hasMore false")
            yield from _page_events(page.values, selection, tables)
            state = replace(
                state, delta_cursor=page.cursor, tables_seen=tables.seen(), rows_synced=tables.rows
            )
            yield Checkpoint(state)
            if not page.has_more:
                return
    finally:
        close = getattr(pages, "close", None)
        if close is not None:
            close()


def _page_events(
    page_values: list[ExportedValue], selection: SyncSelection, tables: _Tables
) -> Iterator[SyncEvent]:
    """Cut a page into runs of one table and one kind, filter them, and yield their events."""
    if not page_values:
        return
    # The hot path of every sync: the grouping runs in C (groupby over an itemgetter of the tuples).
    for (component, table, deleted), group in groupby(page_values, _RUN_KEY):
        run = list(group)
        ref = TableRef(component, table)
        if not selection.accepts(ref):
            continue  # an older server ignored part of the selection
        started = tables.start(ref)
        if started is not None:
            yield started
        tables.count(ref, len(run))
        if deleted:
            yield Deletes(ref, run)
            continue
        columns = selection.column_filter(ref)
        if columns is not None:
            run = [v._replace(document=columns.apply(v.document)) for v in run]
        yield Rows(ref, run)


# ExportedValue is (component, table, ts, deleted, document).
_RUN_KEY = itemgetter(0, 1, 3)
