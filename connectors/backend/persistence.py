"""The one persistence interface of the storage engine, and its SQL implementation.

Storage layout (same on SQLite and PostgreSQL):

* ``revisions(seq, tablet, id, ts, next_ts, deleted, flags, body)``: every revision of every document,
  appended in commit order (``seq``), so writing is an append and reading the change log is a sequential
  scan. Deletes are tombstone revisions. ``next_ts`` is the commit timestamp of the revision that superseded
  this one (NULL while current).
* ``revisions_by_id(tablet, id, ts, next_ts, deleted)``: "live at snapshot S" is
  ``ts <= S < coalesce(next_ts, inf) and not deleted``, evaluated inside this index while seeking in id order.
  (Document ids are random, so clustering the rows themselves by id would turn every insert into a random
  page write; only the small index entries pay that.)
* ``revisions_by_ts(ts)``: where the change log after a timestamp starts.
* ``index_entries(index_id, key, id)``: current-state entries of the field-path indexes; ``key`` is the
  order-preserving encoding of the indexed values, so lookups and ranges are b-tree seeks.
* ``shape_counts(tablet, path, tag, n)``: per-table counts of (field path, type) for exact shapes.
* metadata: ``components``, ``tablets``, ``indexes``, ``globals``.

The engine holds the only writer (one process per deployment, see ``writer_lock.py``); every write to the
documents and the catalog happens inside ``write_transaction()``. Reads run on
separate connections and see only committed data.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# Row types -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TabletRow:
    tablet: int  # small integer key used in the document rows
    tablet_id: bytes  # 16-byte TabletId shown to clients (byte order == ``tablet`` order)
    component_id: int
    name: str
    table_number: int
    state: str  # "active" | "hidden" | "deleted"
    created_ts: int
    deleted_ts: int | None


@dataclass(frozen=True, slots=True)
class IndexRow:
    index_id: int
    tablet: int
    name: str
    fields: tuple[str, ...]
    state: str  # "backfilling" | "ready"
    is_system: bool
    created_ts: int


@dataclass(frozen=True, slots=True)
class RevisionRow:
    """One revision as written: ``body`` is None for a tombstone."""

    tablet: int
    id: bytes
    ts: int
    deleted: bool
    flags: int
    body: bytes | None


# (id, ts, flags, body) — the shape of snapshot rows, kept as plain tuples for speed.
SnapshotRow = tuple[bytes, int, int, bytes]
# (ts, tablet, id, deleted, flags, body, seq) — seq is the row's position in commit order
LogRow = tuple[int, int, bytes, int, int, bytes | None, int]


class WriteSession(abc.ABC):
    """Operations available inside one write transaction (the writer connection)."""

    @abc.abstractmethod
    def insert_revisions(self, rows: Sequence[tuple]) -> None:
        """Insert ``(tablet, id, ts, deleted, flags, body)`` tuples."""

    @abc.abstractmethod
    def supersede(self, rows: Sequence[tuple[int, int, bytes, int]]) -> None:
        """Set ``next_ts`` on ``(next_ts, tablet, id, old_ts)`` revisions."""

    @abc.abstractmethod
    def latest(self, tablet: int, doc_id: bytes) -> tuple[int, int, int, bytes | None] | None:
        """The newest revision of a document as ``(ts, deleted, flags, body)``."""

    @abc.abstractmethod
    def current_many(
        self, tablet: int, doc_ids: Sequence[bytes]
    ) -> dict[bytes, tuple[int, int, bytes | None]]:
        """The current (not superseded) revisions of several documents: ``id -> (deleted, flags, body)``."""

    @abc.abstractmethod
    def latest_live_page(self, tablet: int, after_id: bytes, limit: int) -> list[SnapshotRow]:
        """Current live documents of a tablet in id order after ``after_id``."""

    @abc.abstractmethod
    def add_index_entries(self, rows: Sequence[tuple[int, bytes, bytes]]) -> None: ...

    @abc.abstractmethod
    def remove_index_entries(self, rows: Sequence[tuple[int, bytes, bytes]]) -> None: ...

    @abc.abstractmethod
    def index_range(
        self, index_id: int, lower: bytes, upper: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """``(key, id)`` entries with ``lower <= key < upper`` in key order."""

    def index_ranges(
        self, index_id: int, ranges: Sequence[tuple[bytes, bytes | None]], limit: int
    ) -> list[list[tuple[bytes, bytes]]]:
        """:meth:`index_range` for several ranges at once (at most ``limit`` entries each), in order.
        Backends override it to answer in one statement per chunk instead of one per range."""
        return [self.index_range(index_id, lower, upper, limit) for lower, upper in ranges]

    @abc.abstractmethod
    def clear_index(self, index_id: int) -> None: ...

    @abc.abstractmethod
    def add_shape_counts(self, tablet: int, deltas: Iterable[tuple[str, str, int]]) -> None: ...

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run a metadata statement (written with ``?`` placeholders) and return its rows."""


class Persistence(abc.ABC):
    """What the engine needs from a database. SQLite and PostgreSQL implement it."""

    dialect: str
    # Opened without the writer lock: reads only (plus ``metadata_transaction``).
    read_only: bool = False
    # This open created the deployment (it did not exist before).
    created: bool = False

    @abc.abstractmethod
    def write_transaction(self) -> contextlib.AbstractContextManager[WriteSession]:
        """Open the single write transaction; commits on normal exit, rolls back on exception."""

    @abc.abstractmethod
    def metadata_transaction(self) -> contextlib.AbstractContextManager[WriteSession]:
        """A short write transaction on its own connection, for tables the engine keeps no state of in
        memory (deploy keys, ``meta.*`` settings). Allowed on a read-only open and while another process
        holds the writer lock: the database serializes it with the writer's commits."""

    @abc.abstractmethod
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """A read-only query on a reader connection (``?`` placeholders)."""

    @abc.abstractmethod
    def snapshot_page(self, tablet: int, snapshot_ts: int, after_id: bytes, limit: int) -> list[SnapshotRow]:
        """Documents of ``tablet`` live at ``snapshot_ts`` with id > ``after_id``, in id order."""

    @abc.abstractmethod
    def log_page(self, after_ts: int, up_to_ts: int, limit: int) -> list[LogRow]:
        """Change-log rows with ``after_ts < ts <= up_to_ts`` in commit order (ts, then seq)."""

    @abc.abstractmethod
    def log_rest_of_ts(self, ts: int, after_seq: int) -> list[LogRow]:
        """The rows of commit ``ts`` after position ``after_seq`` (completes a transaction)."""

    @abc.abstractmethod
    def revision_at(self, tablet: int, doc_id: bytes, snapshot_ts: int) -> tuple[int, int, bytes] | None:
        """The live revision of one document at ``snapshot_ts`` as ``(ts, flags, body)``."""

    @abc.abstractmethod
    def prune(self, cutoff_ts: int, batch: int) -> int:
        """Delete revisions superseded before ``cutoff_ts`` and tombstones older than it; returns rows."""

    @abc.abstractmethod
    def drop_tablet_rows(self, tablet: int, batch: int) -> int:
        """Delete up to ``batch`` rows of a deleted tablet; returns how many were deleted."""

    @abc.abstractmethod
    def close(self) -> None: ...
