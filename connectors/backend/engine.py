"""The storage engine: a Convex-compatible document store over one ``Persistence``.

Concurrency model: one writer at a time (transactions are serialized by ``_tx_lock``), any number of
readers. A transaction is given its commit timestamp when it begins; its rows are written with that
timestamp inside one database transaction and become visible together at COMMIT.

Cursor invariant (streaming-export.md §5.4): once ``read_timestamp()`` has handed out T, every later
commit gets a timestamp > T, and every commit with timestamp <= T is already visible. ``read_timestamp``
never hands out a value at or above the timestamp of a transaction still in flight, and new transactions
start above every value handed out. Across restarts, crashes included, the invariant rests on a persisted
lease (as in Convex's own oracle): a clock reading is handed out only once a high-water mark at or above it
is stored, renewed ``TIMESTAMP_LEASE_NS`` ahead, so a restart starts above everything handed out even if the
wall clock went back.

One process per deployment: opening for writing takes the writer lock (``writer_lock.py``); a read-only
open shares with the writer and reads as of the last commit before it opened.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from connectors import identifiers, ids, values
from connectors.backend import bulk
from connectors.backend.persistence import (
    IndexRow,
    LogRow,
    Persistence,
    SnapshotRow,
    TabletRow,
    WriteSession,
)
from connectors.backend.sql import path_from_db
from connectors.backend.writer_lock import ReadOnlyDeploymentError
from connectors.constants import CREATION_TIME_FIELD as CREATION_TIME
from connectors.constants import FIRST_USER_TABLE_NUMBER, MAX_FIELDS_PER_INDEX, MAX_INDEXES_PER_TABLE
from connectors.errors import (
    BadRequestError,
    DocumentNotFoundError,
    InvalidIdError,
    InvalidNameError,
    InvalidValueError,
    SchemaValidationError,
    TableNotFoundError,
    TransactionLimitError,
)
from connectors.shapes import TableShape, add_shape_counts

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 1_000_000_000
# How far ahead of the clock the persisted timestamp high-water mark is set: written about twice a second
# while timestamps are handed out, never per commit.
TIMESTAMP_LEASE_NS = 1_000_000_000
_LEASE_RENEW_MARGIN_NS = TIMESTAMP_LEASE_NS // 2
_HIGH_WATER_KEY = "ts_high_water"
_LEASE_RENEW_WAIT_S = 2.0
_LEGACY_HANDED_OUT_KEY = "handed_out"  # written by clean shutdowns before the lease existed


@dataclass(frozen=True)
class DeploymentConfig:
    """Knobs of one deployment. Defaults follow the upstream server (values-and-ids.md §7.3,
    streaming-export.md §12)."""

    retention_ns: int = 14 * NS_PER_DAY  # DOCUMENT_RETENTION_DELAY
    snapshot_max_age_ns: int = 5 * NS_PER_DAY  # LIST_SNAPSHOT_MAX_AGE_SECS
    # SNAPSHOT_LIST_LIMIT. (Upstream also stops a page after 60 s; here a page is one bounded index seek,
    # so that budget can never be reached and is not modelled.)
    snapshot_page_limit: int = 1024
    deltas_page_limit: int = 128  # DOCUMENT_DELTAS_LIMIT
    max_writes_per_transaction: int = 16_000
    max_write_bytes_per_transaction: int = 16 * 1024 * 1024
    max_read_rows_per_transaction: int = 32_000
    max_read_bytes_per_transaction: int = 16 * 1024 * 1024
    backfill_batch: int = 1000
    prune_interval_s: float = 300.0
    prune_batch: int = 5000
    background: bool = True  # run index backfill and pruning on background threads
    durable: bool = False  # SQLite synchronous=FULL (survives power loss, slower)
    sqlite_cache_mib: int = 32  # SQLite page cache per connection (a one-pass scan needs only a few MiB)
    clock_ns: Callable[[], int] = field(default=time.time_ns, compare=False)

    def __post_init__(self) -> None:
        for name in (
            "retention_ns",
            "snapshot_max_age_ns",
            "snapshot_page_limit",
            "deltas_page_limit",
            "max_writes_per_transaction",
            "backfill_batch",
            "prune_batch",
            "sqlite_cache_mib",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


# Public metadata types -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableInfo:
    component: str
    name: str
    tablet: int
    tablet_id: bytes
    table_number: int
    state: str
    created_ts: int
    deleted_ts: int | None

    def live_at(self, ts: int) -> bool:
        return self.created_ts <= ts and (self.deleted_ts is None or self.deleted_ts > ts)


@dataclass(frozen=True, slots=True)
class IndexInfo:
    index_id: int
    tablet: int
    name: str
    fields: tuple[str, ...]  # dotted paths, `_creationTime` last
    paths: tuple[tuple[str, ...], ...]
    state: str  # "backfilling" | "ready"
    is_system: bool

    @property
    def ready(self) -> bool:
        return self.state == "ready"


class Document(NamedTuple):
    """A document as stored: ``body`` is its convex_encoded_json bytes (see ``values``); decode on demand.
    A tuple so that listing millions of documents costs little more than reading the rows."""

    internal_id: bytes
    ts: int
    flags: int
    body: bytes
    table_number: int

    @property
    def id(self) -> str:
        return ids.encode_id(self.table_number, self.internal_id)

    def value(self) -> dict[str, Any]:
        return values.decode_document(self.body, self.flags)


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    """One page of a table at a snapshot: raw rows ``(internal_id, ts, flags, body)`` in id order."""

    table: TableInfo
    rows: list[SnapshotRow]

    def documents(self) -> Iterator[Document]:
        number = self.table.table_number
        for internal_id, ts, flags, body in self.rows:
            yield Document(internal_id, ts, flags, body, number)


class Change(NamedTuple):
    """One change-log entry; ``body`` is None for deletes."""

    ts: int
    table: TableInfo
    internal_id: bytes
    deleted: bool
    flags: int
    body: bytes | None

    @property
    def id(self) -> str:
        return ids.encode_id(self.table.table_number, self.internal_id)

    def value(self) -> dict[str, Any] | None:
        return None if self.body is None else values.decode_document(self.body, self.flags)


@dataclass(frozen=True, slots=True)
class ChangePage:
    changes: list[Change]
    rows_read: int
    cursor: int
    has_more: bool


# Metadata snapshot: replaced wholesale on commit so readers never see a half-applied change.


@dataclass(frozen=True)
class _Catalog:
    components: Mapping[int, str]
    tablets: Mapping[int, TableInfo]
    indexes: Mapping[int, IndexInfo]

    # Lookup maps, built once per catalog version (catalogs are immutable; writes make a new one).

    @functools.cached_property
    def _by_path(self) -> dict[str, int]:
        return {p: cid for cid, p in self.components.items()}

    @functools.cached_property
    def _active_by_name(self) -> dict[tuple[str, str], TableInfo]:
        return {(t.component, t.name): t for t in self.tablets.values() if t.state != "deleted"}

    @functools.cached_property
    def _active_by_number(self) -> dict[tuple[str, int], TableInfo]:
        return {(t.component, t.table_number): t for t in self.tablets.values() if t.state != "deleted"}

    @functools.cached_property
    def _indexes_by_tablet(self) -> dict[int, list[IndexInfo]]:
        out: dict[int, list[IndexInfo]] = {}
        for i in self.indexes.values():
            out.setdefault(i.tablet, []).append(i)
        return out

    def component_id(self, path: str) -> int | None:
        return self._by_path.get(path)

    def active_table(self, component: str, name: str) -> TableInfo | None:
        return self._active_by_name.get((component, name))

    def active_by_number(self, component: str, number: int) -> TableInfo | None:
        return self._active_by_number.get((component, number))

    def indexes_of(self, tablet: int) -> list[IndexInfo]:
        return self._indexes_by_tablet.get(tablet, [])


def _index_info(row: IndexRow) -> IndexInfo:
    return IndexInfo(
        index_id=row.index_id,
        tablet=row.tablet,
        name=row.name,
        fields=row.fields,
        paths=tuple(tuple(f.split(".")) for f in row.fields),
        state=row.state,
        is_system=row.is_system,
    )


# The engine ----------------------------------------------------------------------------------------


class Deployment:
    """One deployment: tables in components, MVCC snapshots, change log, indexes, shapes, schema."""

    def __init__(self, persistence: Persistence, config: DeploymentConfig | None = None) -> None:
        self.persistence = persistence
        self.config = config or DeploymentConfig()
        self._clock = self.config.clock_ns
        self.read_only = persistence.read_only
        self._tx_lock = threading.RLock()
        self._ts_lock = threading.Lock()
        self._pending_ts: int | None = None
        self._closed = False
        self._backfill_wakeup = threading.Condition()
        self._index_ready = threading.Condition()
        # The timestamp first: a read-only open reads as of it, and the catalog loaded after it is complete.
        self._last_ts = self._load_last_ts()
        self._catalog = self._load_catalog()
        # Everything handed out before a restart (clean or a crash) is at or below the stored high-water
        # mark, so starting above it keeps the cursor invariant even if the wall clock went back.
        self._lease_ts = self._load_timestamp_high_water()
        self._handed_out = self._last_ts if self.read_only else max(self._last_ts, self._lease_ts)
        self._schema_cache: tuple[str | None, Any] = (None, None)
        self._threads: list[threading.Thread] = []
        # Where each backfilling index has got to; lost on restart, which only repeats idempotent work.
        self._backfill_cursors: dict[int, bytes] = {}
        if self.read_only:
            return
        if self.config.background:
            self._start_thread(self._backfill_loop, "convex-backfill")
            self._start_thread(self._prune_loop, "convex-pruner")
        else:
            self.run_backfill()

    # -- opening ------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        data_dir: str | Path | None = None,
        db_url: str | None = None,
        pg_schema: str | None = None,
        config: DeploymentConfig | None = None,
        read_only: bool = False,
        create: bool = True,
    ) -> Deployment:
        """Open a deployment on SQLite under ``data_dir`` or on PostgreSQL.

        For writing (the default) the process takes the deployment's writer lock, held until ``close``;
        another writer raises ``DeploymentLockedError`` naming the holder. ``create=False`` raises
        ``DeploymentNotFoundError`` instead of creating a missing deployment. ``read_only=True`` takes no
        lock (it shares with a writer in another process), never creates, and reads as of the last commit
        before it opened."""
        config = config or DeploymentConfig()
        if db_url:
            if not db_url.startswith(("postgresql://", "postgres://")):
                raise ValueError("--db must be a postgresql:// URL")
            from connectors.backend.postgres import PostgresPersistence

            persistence: Persistence = PostgresPersistence(
                db_url, schema=pg_schema, read_only=read_only, create=create
            )
        else:
            from connectors.backend.sqlite import SqlitePersistence

            persistence = SqlitePersistence(
                data_dir or "data",
                durable=config.durable,
                cache_mib=config.sqlite_cache_mib,
                read_only=read_only,
                create=create,
            )
        try:
            return cls(persistence, config)
        except BaseException:
            persistence.close()
            raise

    @property
    def created(self) -> bool:
        """True if this open created the deployment."""
        return self.persistence.created

    def _load_catalog(self) -> _Catalog:
        p = self.persistence
        comps = {cid: path for cid, path in p.read("SELECT component_id, path FROM components")}
        if 0 not in comps and self.read_only:
            comps[0] = ""  # written by the first writer open
        elif 0 not in comps:
            with p.write_transaction() as s:
                s.execute("INSERT INTO components (component_id, path) VALUES (?, ?)", (0, ""))
            comps[0] = ""
        tablets = {}
        for row in p.read(
            "SELECT tablet, tablet_id, component_id, name, table_number, state, created_ts, deleted_ts"
            " FROM tablets"
        ):
            r = TabletRow(row[0], bytes(row[1]), *row[2:])
            tablets[r.tablet] = TableInfo(
                component=comps[r.component_id],
                name=r.name,
                tablet=r.tablet,
                tablet_id=r.tablet_id,
                table_number=r.table_number,
                state=r.state,
                created_ts=r.created_ts,
                deleted_ts=r.deleted_ts,
            )
        indexes = {}
        for row in p.read("SELECT index_id, tablet, name, fields, state, is_system, created_ts FROM indexes"):
            ir = IndexRow(row[0], row[1], row[2], tuple(orjson.loads(row[3])), row[4], bool(row[5]), row[6])
            indexes[ir.index_id] = _index_info(ir)
        return _Catalog(components=comps, tablets=tablets, indexes=indexes)

    def _load_last_ts(self) -> int:
        rows = self.persistence.read("SELECT value FROM globals WHERE key = ?", ("max_ts",))
        stored = int(rows[0][0]) if rows else 0
        top = self.persistence.read("SELECT MAX(ts) FROM revisions")
        return max(stored, top[0][0] or 0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._backfill_wakeup:
            self._backfill_wakeup.notify_all()
        for t in self._threads:
            t.join(timeout=10)
        with self._tx_lock:
            if not self.read_only:
                # A clean shutdown shrinks the lease to what was actually handed out, so the next start
                # does not jump ahead of the clock.
                with contextlib.suppress(Exception), self.persistence.write_transaction() as s:
                    self._persist_timestamp_high_water(s, self._handed_out)
            self.persistence.close()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- timestamps ---------------------------------------------------------------------------------

    def read_timestamp(self) -> int:
        """The latest readable timestamp ("now"), safe to hand to clients as a cursor."""
        if self.read_only:
            return self._last_ts  # every commit up to it was visible when this open began
        now = self._clock()
        if now >= self._lease_ts - _LEASE_RENEW_MARGIN_NS:
            self._try_renew_lease(now)
        with self._ts_lock:
            # Never above the stored lease (a restart must start above it), nor at or above a commit in
            # flight; never below a value already handed out.
            now = min(now, self._lease_ts)
            if self._pending_ts is not None:
                now = min(now, self._pending_ts - 1)
            ts = max(now, self._handed_out)
            self._handed_out = ts
            return ts

    # The timestamp high-water mark: the seed of an oracle shared by several processes (shared/design.md).

    def _load_timestamp_high_water(self) -> int:
        rows = self.persistence.read(
            "SELECT key, value FROM globals WHERE key IN (?, ?)", (_HIGH_WATER_KEY, _LEGACY_HANDED_OUT_KEY)
        )
        return max((int(value) for _key, value in rows), default=0)

    @staticmethod
    def _persist_timestamp_high_water(session: WriteSession, ts: int) -> None:
        session.execute("DELETE FROM globals WHERE key IN (?, ?)", (_HIGH_WATER_KEY, _LEGACY_HANDED_OUT_KEY))
        session.execute("INSERT INTO globals (key, value) VALUES (?, ?)", (_HIGH_WATER_KEY, str(ts)))

    def _lease_renewal_due(self, now: int) -> int | None:
        """The new lease to store if the current one is about to be overtaken by the clock, else None."""
        return now + TIMESTAMP_LEASE_NS if now >= self._lease_ts - _LEASE_RENEW_MARGIN_NS else None

    def _extend_lease(self, lease: int) -> None:
        with self._ts_lock:
            self._lease_ts = max(self._lease_ts, lease)

    def _try_renew_lease(self, now: int) -> None:
        """Store a lease ahead of ``now`` unless a writer is busy (its commit renews the lease, and until
        then reads stay below its timestamp anyway)."""
        if self._closed or self._tx_lock._is_owned():  # type: ignore[attr-defined]
            return
        # Before the lease runs out, renewing is opportunistic. Past it, reads would be held at the old lease
        # (a snapshot in the past, which can even be too old to page through after a clock jump): wait a
        # little for the writer instead.
        if now > self._lease_ts:
            acquired = self._tx_lock.acquire(timeout=_LEASE_RENEW_WAIT_S)
        else:
            acquired = self._tx_lock.acquire(blocking=False)
        if not acquired:
            return
        try:
            lease = self._lease_renewal_due(now)
            if lease is None:
                return  # renewed meanwhile
            with self.persistence.write_transaction() as s:
                self._persist_timestamp_high_water(s, lease)
            self._extend_lease(lease)
        except Exception:  # reads stay at the old lease (safe, only stale) until the next renewal works
            log.warning(
                "could not renew the timestamp lease; read timestamps stay at the old one", exc_info=True
            )
        finally:
            self._tx_lock.release()

    @property
    def last_commit_ts(self) -> int:
        return self._last_ts

    def _begin_ts(self) -> int:
        self._check_writable()
        with self._ts_lock:
            ts = max(self._clock(), self._last_ts + 1, self._handed_out + 1)
            self._pending_ts = ts
            return ts

    def _end_ts(self, committed: bool) -> None:
        with self._ts_lock:
            if committed and self._pending_ts is not None:
                self._last_ts = self._pending_ts
                self._handed_out = max(self._handed_out, self._last_ts)
            self._pending_ts = None

    # -- transactions -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Run a read-write transaction. Commits when the block ends; any exception rolls it back."""
        self._check_open()
        self._check_not_nested()
        with self._tx_lock:
            ts = self._begin_ts()
            committed = False
            new_indexes = False
            try:
                with self.persistence.write_transaction() as session:
                    tx = Transaction(self, session, ts)
                    yield tx
                    tx._flush()
                    tx._finish()
                    new_indexes = tx._created_backfilling_index
                committed = True
                if tx._lease is not None:
                    self._extend_lease(tx._lease)
                self._catalog = tx._catalog
                if tx._schema_changed:
                    self._schema_cache = (None, None)
            finally:
                self._end_ts(committed)
        if new_indexes:
            if self.config.background:
                with self._backfill_wakeup:
                    self._backfill_wakeup.notify_all()
            else:
                self.run_backfill()

    def _check_not_nested(self) -> None:
        # The writer is single and its lock is not re-entrant at the database level: a transaction
        # opened inside another on the same thread would wait for itself forever.
        if self._tx_lock._is_owned():  # type: ignore[attr-defined]
            raise BadRequestError(
                "NestedTransaction",
                "A transaction is already open on this thread; do this work inside it (or after it ends).",
            )

    def _check_open(self) -> None:
        if self._closed:
            raise BadRequestError("DeploymentClosed", "The deployment has been closed.")

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyDeploymentError()

    # -- catalog reads ------------------------------------------------------------------------------

    def tables(self, *, include_deleted: bool = False) -> list[TableInfo]:
        """Tables in tablet order (== TabletId byte order)."""
        tabs = self._catalog.tablets.values()
        return sorted((t for t in tabs if include_deleted or t.state != "deleted"), key=lambda t: t.tablet)

    def tables_at(self, ts: int) -> list[TableInfo]:
        """Tables that existed at ``ts`` (including hidden ones), in tablet order."""
        return sorted((t for t in self._catalog.tablets.values() if t.live_at(ts)), key=lambda t: t.tablet)

    def table(self, name: str, component: str = "") -> TableInfo:
        info = self._catalog.active_table(component, name)
        if info is None:
            raise TableNotFoundError(name, component)
        return info

    def find_table(self, name: str, component: str = "") -> TableInfo | None:
        return self._catalog.active_table(component, name)

    def table_by_tablet(self, tablet: int) -> TableInfo | None:
        return self._catalog.tablets.get(tablet)

    def table_by_tablet_id(self, tablet_id: bytes) -> TableInfo | None:
        for t in self._catalog.tablets.values():
            if t.tablet_id == tablet_id:
                return t
        return None

    def components(self) -> list[str]:
        return sorted(self._catalog.components.values())

    def indexes(self, name: str, component: str = "") -> list[IndexInfo]:
        return sorted(self._catalog.indexes_of(self.table(name, component).tablet), key=lambda i: i.name)

    def index(self, table: str, index_name: str, component: str = "") -> IndexInfo | None:
        info = self.find_table(table, component)
        if info is None:
            return None
        for idx in self._catalog.indexes_of(info.tablet):
            if idx.name == index_name:
                return idx
        return None

    def wait_for_index(
        self, table: str, index_name: str, component: str = "", timeout_s: float = 600
    ) -> bool:
        """Block until the index is ready; False on timeout or if it disappeared."""
        deadline = time.monotonic() + timeout_s
        with self._index_ready:
            while True:
                idx = self.index(table, index_name, component)
                if idx is None:
                    return False
                if idx.ready:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._index_ready.wait(min(remaining, 0.5))

    def table_shape(self, name: str, component: str = "") -> TableShape:
        return self.shape_of(self.table(name, component))

    def shape_of(self, table: TableInfo) -> TableShape:
        rows = self.persistence.read(
            "SELECT path, tag, n FROM shape_counts WHERE tablet = ?", (table.tablet,)
        )
        return TableShape.from_counts({(path_from_db(p), t): n for p, t, n in rows})

    def document_count(self, name: str, component: str = "") -> int:
        rows = self.persistence.read(
            "SELECT n FROM shape_counts WHERE tablet = ? AND path = ? AND tag = ?",
            (self.table(name, component).tablet, "", "object"),
        )
        return int(rows[0][0]) if rows else 0

    # -- schema -------------------------------------------------------------------------------------

    def get_schema(self) -> Any:
        """The active ``DatabaseSchema`` or None."""
        rows = self.persistence.read("SELECT value FROM globals WHERE key = ?", ("schema",))
        raw = rows[0][0] if rows else None
        if self._schema_cache[0] == raw and raw is not None:
            return self._schema_cache[1]
        if raw is None:
            return None
        from connectors.schema import parse_database_schema

        schema = parse_database_schema(orjson.loads(raw))
        self._schema_cache = (raw, schema)
        return schema

    # -- deployment metadata ------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A deployment-level setting (e.g. the instance secret); keys starting with ``user.`` are free
        for callers, the rest are reserved by the engine."""
        rows = self.persistence.read("SELECT value FROM globals WHERE key = ?", (f"meta.{key}",))
        return rows[0][0] if rows else None

    def set_meta_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless the key is set; returns the stored value (first writer wins, across
        processes too). Works on a read-only open: settings are not part of the writer's state."""
        self._check_not_nested()
        with self.metadata_transaction() as s:
            s.execute(
                "INSERT INTO globals (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (f"meta.{key}", value),
            )
            return s.execute("SELECT value FROM globals WHERE key = ?", (f"meta.{key}",))[0][0]

    def metadata_transaction(self) -> contextlib.AbstractContextManager[WriteSession]:
        """A short write on tables the engine keeps nothing of in memory (deploy keys, ``meta.*``
        settings): allowed on a read-only open, alongside the writer process."""
        self._check_open()
        return self.persistence.metadata_transaction()

    # -- snapshot reads -----------------------------------------------------------------------------

    def snapshot_rows(
        self, table: TableInfo, snapshot_ts: int, after_id: bytes, limit: int
    ) -> list[SnapshotRow]:
        """Raw rows ``(internal_id, ts, flags, body)`` of one table page at a snapshot, id order."""
        return self.persistence.snapshot_page(table.tablet, snapshot_ts, after_id, limit)

    def iter_snapshot_pages(
        self, table: TableInfo, snapshot_ts: int | None = None, page_size: int | None = None
    ) -> Iterator[SnapshotPage]:
        """The documents of ``table`` live at ``snapshot_ts`` (default: now), page by page in id order.
        Each page is one index seek; memory stays bounded by the page size."""
        ts = self.read_timestamp() if snapshot_ts is None else snapshot_ts
        limit = page_size or self.config.snapshot_page_limit
        after = b""
        while True:
            rows = self.persistence.snapshot_page(table.tablet, ts, after, limit)
            if rows:
                yield SnapshotPage(table, rows)
            if len(rows) < limit:
                return
            after = rows[-1][0]

    def iter_snapshot(
        self, table: TableInfo, snapshot_ts: int | None = None, page_size: int | None = None
    ) -> Iterator[Document]:
        """Every document of ``table`` live at ``snapshot_ts`` (default: now), in id order."""
        for page in self.iter_snapshot_pages(table, snapshot_ts, page_size):
            yield from page.documents()

    def get_at(self, document_id: str, snapshot_ts: int, component: str = "") -> Document | None:
        number, internal = ids.decode_id(document_id)
        table = self._catalog.active_by_number(component, number)
        if table is None:
            return None
        row = self.persistence.revision_at(table.tablet, internal, snapshot_ts)
        return None if row is None else Document(internal, row[0], row[1], row[2], number)

    # -- change log ---------------------------------------------------------------------------------

    def read_changes(
        self, after_ts: int, limit: int | None = None, *, up_to_ts: int | None = None
    ) -> ChangePage:
        """Changes committed after ``after_ts`` in (ts, table, id) order.

        At most ``limit`` log rows are read, except that a transaction is never split: the rows of the last
        timestamp reached are always completed. Rows of deleted tables are read but skipped. When the log
        is exhausted the cursor is the current read timestamp.
        """
        rows, cursor, has_more = self.read_change_rows(after_ts, limit, up_to_ts=up_to_ts)
        return ChangePage(self._changes(rows), len(rows), cursor, has_more)

    def read_change_rows(
        self, after_ts: int, limit: int | None = None, *, up_to_ts: int | None = None
    ) -> tuple[list[LogRow], int, bool]:
        """:meth:`read_changes` as raw log rows ``(ts, tablet, id, deleted, flags, body, seq)``, rows of
        deleted tables included: for exporters that turn rows into bytes without building objects."""
        limit = limit or self.config.deltas_page_limit
        upper = self.read_timestamp() if up_to_ts is None else up_to_ts
        rows: list[LogRow] = self.persistence.log_page(after_ts, upper, limit)
        if len(rows) < limit:
            has_more, cursor = False, max(upper, after_ts)
        else:
            last = rows[-1]
            rows.extend(self.persistence.log_rest_of_ts(last[0], last[6]))
            has_more, cursor = True, last[0]
        # Commit order within one ts is write order; the contract orders a transaction by (table, id).
        rows.sort(key=_log_order)
        return rows, cursor, has_more

    def _changes(self, rows: list[LogRow]) -> list[Change]:
        tablets = self._catalog.tablets
        live: dict[int, TableInfo | None] = {}
        out: list[Change] = []
        append = out.append
        for ts, tablet, internal_id, deleted, flags, body, _seq in rows:
            if tablet not in live:
                found = tablets.get(tablet)
                live[tablet] = None if found is None or found.state == "deleted" else found
            info = live[tablet]
            if info is not None:
                append(Change(ts, info, internal_id, deleted == 1, flags, body))
        return out

    def iter_changes(self, after_ts: int) -> Iterator[Change]:
        """Follow the change log from ``after_ts`` until it is exhausted."""
        cursor = after_ts
        while True:
            page = self.read_changes(cursor)
            yield from page.changes
            cursor = page.cursor
            if not page.has_more:
                return

    # -- background work ----------------------------------------------------------------------------

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _backfill_loop(self) -> None:
        while not self._closed:
            try:
                did = self.run_backfill(max_batches=1)
            except Exception:  # keep the worker alive; the error is retried on the next round
                log.exception("index backfill failed; retrying")
                did = False
            if not did:
                with self._backfill_wakeup:
                    if self._closed:
                        return
                    self._backfill_wakeup.wait(timeout=1.0)

    def run_backfill(self, max_batches: int | None = None) -> bool:
        """Backfill pending indexes, ``backfill_batch`` documents per short write transaction so
        writers interleave. Returns True if any work was done."""
        did = False
        batches = 0
        while not self._closed:
            pending = [i for i in self._catalog.indexes.values() if i.state == "backfilling"]
            if not pending:
                return did
            for idx in pending:
                self._backfill_step(idx)
                did = True
                batches += 1
                if max_batches is not None and batches >= max_batches:
                    return did
        return did

    def _backfill_step(self, idx: IndexInfo) -> None:
        cursor = self._backfill_cursors.get(idx.index_id, b"")
        with self._tx_lock:
            with self.persistence.write_transaction() as s:
                current = self._catalog.indexes.get(idx.index_id)
                if current is None or current.state != "backfilling":
                    return
                rows = s.latest_live_page(idx.tablet, cursor, self.config.backfill_batch)
                entries = []
                for internal_id, _ts, flags, body in rows:
                    doc = values.decode_document(body, flags)
                    entries.append((idx.index_id, _index_key(idx, doc), internal_id))
                s.add_index_entries(entries)
                done = len(rows) < self.config.backfill_batch
                if done:
                    s.execute("UPDATE indexes SET state = ? WHERE index_id = ?", ("ready", idx.index_id))
                else:
                    self._backfill_cursors[idx.index_id] = rows[-1][0]
            if done:
                # Still under the writer lock: a transaction that began with the old catalog would
                # otherwise put the index back to "backfilling" when it commits.
                self._backfill_cursors.pop(idx.index_id, None)
                indexes = dict(self._catalog.indexes)
                indexes[idx.index_id] = replace(current, state="ready")
                self._catalog = replace(self._catalog, indexes=indexes)
        if done:
            with self._index_ready:
                self._index_ready.notify_all()

    def _prune_loop(self) -> None:
        while not self._closed:
            with self._backfill_wakeup:
                self._backfill_wakeup.wait(timeout=self.config.prune_interval_s)
            if self._closed:
                return
            try:
                self.prune()
            except Exception:
                log.exception("pruning failed; retrying later")

    def retention_cutoff(self) -> int:
        """Revisions superseded before this timestamp may be removed."""
        keep = max(self.config.retention_ns, self.config.snapshot_max_age_ns)
        return self._clock() - keep

    def prune(self) -> int:
        """Remove superseded revisions and tombstones older than retention, and the rows of tables
        deleted before it. Returns the number of rows removed."""
        self._check_not_nested()
        cutoff = self.retention_cutoff()
        total = 0
        while not self._closed:
            with self._tx_lock:
                n = self.persistence.prune(cutoff, self.config.prune_batch)
            total += n
            if n < self.config.prune_batch:
                break
        for t in list(self._catalog.tablets.values()):
            if t.state == "deleted" and t.deleted_ts is not None and t.deleted_ts < cutoff:
                while not self._closed:
                    with self._tx_lock:
                        n = self.persistence.drop_tablet_rows(t.tablet, self.config.prune_batch)
                    total += n
                    if n < self.config.prune_batch:
                        break
        return total


def _log_order(row: LogRow) -> tuple[int, int, bytes]:
    return (row[0], row[1], row[2])


def _index_key(idx: IndexInfo, doc: Mapping[str, Any]) -> bytes:
    return values.encode_index_key([values.get_path(doc, p) for p in idx.paths])


# Transactions --------------------------------------------------------------------------------------


# A document written in this transaction: (deleted, flags, body, doc) of its newest revision.
_PendingRev = tuple[bool, int, "bytes | None", "dict | None"]


class Transaction:
    """A serializable read-write transaction. Reads see the latest committed state plus this
    transaction's own writes. Obtain one with ``Deployment.transaction()``."""

    def __init__(self, deployment: Deployment, session: WriteSession, ts: int) -> None:
        self._d = deployment
        self._s = session
        self.ts = ts
        self._catalog = deployment._catalog
        self._cfg = deployment.config
        self._rows: list[tuple] = []
        self._supersede: list[tuple[int, int, bytes, int]] = []
        self._pending: dict[tuple[int, bytes], _PendingRev] = {}
        # Where each not-yet-flushed document sits in ``_rows`` (cleared by every flush).
        self._row_index: dict[tuple[int, bytes], int] = {}
        self._index_delta: dict[tuple[int, bytes, bytes], int] = {}
        self._shape: dict[int, dict[tuple[str, str], int]] = {}
        self._created_backfilling_index = False
        self._schema_changed = False
        self._schema = deployment.get_schema()
        self._lease: int | None = None  # a timestamp lease renewed with this commit
        self.writes = 0
        self.write_bytes = 0
        self.read_rows = 0
        self.creation_time = ts / 1_000_000

    # -- limits -------------------------------------------------------------------------------------

    def _count_write(self, size: int) -> None:
        if self.writes >= self._cfg.max_writes_per_transaction:
            raise TransactionLimitError(
                f"Too many writes in one transaction (limit {self._cfg.max_writes_per_transaction})."
            )
        if self.write_bytes + size > self._cfg.max_write_bytes_per_transaction:
            raise TransactionLimitError(
                f"Too many bytes written in one transaction (limit {self._cfg.max_write_bytes_per_transaction})."
            )
        self.writes += 1
        self.write_bytes += size

    def _count_read(self, rows: int) -> None:
        self.read_rows += rows
        if self.read_rows > self._cfg.max_read_rows_per_transaction:
            raise TransactionLimitError(
                f"Too many documents read in one transaction (limit {self._cfg.max_read_rows_per_transaction})."
            )

    # -- tables -------------------------------------------------------------------------------------

    def _table(self, name: str, component: str) -> TableInfo:
        info = self._catalog.active_table(component, name)
        if info is None:
            raise TableNotFoundError(name, component)
        return info

    def table(self, name: str, component: str = "") -> TableInfo | None:
        return self._catalog.active_table(component, name)

    def create_table(
        self, name: str, component: str = "", *, table_number: int | None = None, exist_ok: bool = False
    ) -> TableInfo:
        """Create an empty table. ``table_number`` is kept when given (backup import)."""
        identifiers.check_table_name(name)
        identifiers.check_component_path(component)
        existing = self._catalog.active_table(component, name)
        if existing is not None:
            if exist_ok and (table_number is None or existing.table_number == table_number):
                return existing
            raise BadRequestError(
                "TableAlreadyExists",
                f'Table "{name}" already exists'
                + (f" with table number {existing.table_number}" if table_number else "")
                + ".",
            )
        return self._new_tablet(name, component, table_number)

    def _new_tablet(
        self, name: str, component: str, table_number: int | None, state: str = "active"
    ) -> TableInfo:
        cid = self._ensure_component(component)
        same_component = [t for t in self._catalog.tablets.values() if t.component == component]
        if table_number is None:
            used = [t.table_number for t in same_component]
            table_number = max([FIRST_USER_TABLE_NUMBER - 1, *used]) + 1
        else:
            if not 0 < table_number <= 0xFFFFFFFF:
                raise InvalidValueError(f"Table number {table_number} is out of range (1..4294967295)")
            clash = self._catalog.active_by_number(component, table_number)
            if clash is not None and clash.name != name:
                raise BadRequestError(
                    "TableNumberInUse",
                    f'Table number {table_number} is already used by table "{clash.name}".',
                )
        tablet = max([0, *self._catalog.tablets.keys()]) + 1
        tablet_id = tablet.to_bytes(8, "big") + os.urandom(8)
        self._s.execute(
            "INSERT INTO tablets (tablet, tablet_id, component_id, name, table_number, state, created_ts,"
            " deleted_ts) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            (tablet, tablet_id, cid, name, table_number, state, self.ts),
        )
        info = TableInfo(component, name, tablet, tablet_id, table_number, state, self.ts, None)
        tablets = dict(self._catalog.tablets)
        tablets[tablet] = info
        self._catalog = replace(self._catalog, tablets=tablets)
        return info

    def _ensure_component(self, path: str) -> int:
        cid = self._catalog.component_id(path)
        if cid is not None:
            return cid
        cid = max(self._catalog.components) + 1
        self._s.execute("INSERT INTO components (component_id, path) VALUES (?, ?)", (cid, path))
        comps = dict(self._catalog.components)
        comps[cid] = path
        self._catalog = replace(self._catalog, components=comps)
        return cid

    def _drop_tablet(self, info: TableInfo) -> None:
        self._s.execute(
            "UPDATE tablets SET state = ?, deleted_ts = ? WHERE tablet = ?", ("deleted", self.ts, info.tablet)
        )
        tablets = dict(self._catalog.tablets)
        tablets[info.tablet] = replace(info, state="deleted", deleted_ts=self.ts)
        indexes = {k: v for k, v in self._catalog.indexes.items() if v.tablet != info.tablet}
        for idx in self._catalog.indexes_of(info.tablet):
            self._s.execute("DELETE FROM indexes WHERE index_id = ?", (idx.index_id,))
            self._s.clear_index(idx.index_id)
        self._catalog = replace(self._catalog, tablets=tablets, indexes=indexes)
        # Pending writes to the dropped table must not be flushed into the swapped-in one.
        for key in [k for k in self._pending if k[0] == info.tablet]:
            del self._pending[key]

    def delete_table(self, name: str, component: str = "") -> None:
        self._flush()
        self._drop_tablet(self._table(name, component))

    def clear_table(self, name: str, component: str = "", *, create_if_missing: bool = True) -> TableInfo:
        """Atomically replace the table with an empty one: same name and table number, same indexes
        (rebuilt empty, so immediately ready). Creates the table when it does not exist."""
        self._flush()
        old = self._catalog.active_table(component, name)
        if old is None:
            if not create_if_missing:
                raise TableNotFoundError(name, component)
            return self.create_table(name, component)
        old_indexes = self._catalog.indexes_of(old.tablet)
        backfilling = [i.name for i in old_indexes if not i.ready]
        if backfilling:
            raise BadRequestError(
                "InvalidImport",
                f"{name} is still backfilling indexes, so it cannot be replaced. Wait for indexes to complete"
                " backfilling",
            )
        self._drop_tablet(old)
        new = self._new_tablet(name, component, old.table_number)
        for idx in old_indexes:
            self._insert_index(new, idx.name, idx.fields, idx.is_system, state="ready")
        return new

    # -- indexes ------------------------------------------------------------------------------------

    def add_index(
        self,
        table: str,
        index_name: str,
        fields: Sequence[str],
        *,
        component: str = "",
        system: bool = False,
    ) -> IndexInfo:
        """Add (or keep, if identical) a database index on dotted field paths; ``_creationTime`` is
        appended. A new index starts backfilling unless the table is empty."""
        identifiers.check_index_name(index_name, allow_system=system)
        paths = [identifiers.parse_field_path(f) for f in fields]
        if len(paths) + 1 > MAX_FIELDS_PER_INDEX:
            raise InvalidNameError(
                f"Index {table}.{index_name} has {len(paths) + 1} fields (with _creationTime); the limit is"
                f" {MAX_FIELDS_PER_INDEX}.",
                code="IndexTooManyFields",
            )
        full = (*(".".join(p) for p in paths), CREATION_TIME)
        info = self._catalog.active_table(component, table) or self.create_table(table, component)
        existing = [i for i in self._catalog.indexes_of(info.tablet) if i.name == index_name]
        if existing and existing[0].fields == full:
            return existing[0]
        if existing:
            self._remove_index(existing[0])
        if len(self._catalog.indexes_of(info.tablet)) >= MAX_INDEXES_PER_TABLE:
            raise InvalidNameError(
                f'Table "{table}" already has {MAX_INDEXES_PER_TABLE} indexes, the limit.',
                code="TooManyIndexes",
            )
        self._flush()
        empty = not self._s.latest_live_page(info.tablet, b"", 1)
        return self._insert_index(info, index_name, full, system, state="ready" if empty else "backfilling")

    def _insert_index(
        self, info: TableInfo, name: str, fields: tuple[str, ...], system: bool, state: str
    ) -> IndexInfo:
        index_id = max([0, *self._catalog.indexes.keys(), *self._d._catalog.indexes.keys()]) + 1
        # Index ids are never reused, even across transactions that later dropped them.
        rows = self._s.execute("SELECT MAX(index_id) FROM indexes")
        index_id = max(index_id, (rows[0][0] or 0) + 1)
        self._s.execute(
            "INSERT INTO indexes (index_id, tablet, name, fields, state, is_system, created_ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (index_id, info.tablet, name, orjson.dumps(list(fields)).decode(), state, int(system), self.ts),
        )
        idx = _index_info(IndexRow(index_id, info.tablet, name, fields, state, system, self.ts))
        indexes = dict(self._catalog.indexes)
        indexes[index_id] = idx
        self._catalog = replace(self._catalog, indexes=indexes)
        if state == "backfilling":
            self._created_backfilling_index = True
        return idx

    def _remove_index(self, idx: IndexInfo) -> None:
        self._flush()
        self._s.execute("DELETE FROM indexes WHERE index_id = ?", (idx.index_id,))
        self._s.clear_index(idx.index_id)
        indexes = dict(self._catalog.indexes)
        indexes.pop(idx.index_id, None)
        self._catalog = replace(self._catalog, indexes=indexes)

    def drop_index(self, table: str, index_name: str, component: str = "") -> None:
        info = self._table(table, component)
        for idx in self._catalog.indexes_of(info.tablet):
            if idx.name == index_name:
                self._remove_index(idx)
                return
        raise BadRequestError("IndexNotFound", f"Index {table}.{index_name} does not exist.")

    def indexes(self, table: str, component: str = "") -> list[IndexInfo]:
        info = self._catalog.active_table(component, table)
        return [] if info is None else sorted(self._catalog.indexes_of(info.tablet), key=lambda i: i.name)

    def index_query(
        self,
        table: str,
        index_name: str,
        equal: Sequence[Any] = (),
        *,
        less_than: Any = values.MISSING,
        component: str = "",
        limit: int | None = None,
        require_ready: bool = True,
    ) -> list[tuple[str, dict[str, Any]]]:
        """Documents whose first ``len(equal)`` index fields equal ``equal`` and, if ``less_than`` is
        given, whose next field is below it (Convex order), in index order; ``(id, document)`` pairs."""
        info = self._table(table, component)
        idx = next((i for i in self._catalog.indexes_of(info.tablet) if i.name == index_name), None)
        if idx is None:
            raise BadRequestError("IndexNotFound", f"Index {table}.{index_name} does not exist.")
        if require_ready and not idx.ready:
            raise BadRequestError(
                "IndexNotReady",
                f"Index {table}.{index_name} is still backfilling; try again when it is ready.",
            )
        self._flush()
        lower = values.encode_index_key(list(equal))
        if less_than is not values.MISSING:
            upper: bytes | None = values.encode_index_key([*equal, less_than])
        else:
            upper = values.index_key_prefix_successor(lower) if equal else None
        out = []
        page = limit if limit is not None else self._cfg.max_read_rows_per_transaction
        entries = self._s.index_range(idx.index_id, lower, upper, page + 1)
        self._count_read(len(entries))
        wanted = [internal_id for _key, internal_id in entries[:page]]
        # One query for the documents not written by this transaction, not one per index entry.
        stored = self._s.current_many(
            info.tablet, [i for i in wanted if (info.tablet, i) not in self._pending]
        )
        for internal_id in wanted:
            current = self._pending.get((info.tablet, internal_id))
            if current is None:
                row = stored.get(internal_id)
                if row is not None and not row[0] and row[2] is not None:
                    current = (False, row[1], row[2], values.decode_document(row[2], row[1]))
            if current is None or current[0] or current[3] is None:
                continue  # index and documents are written together; this is only defensive
            out.append((ids.encode_id(info.table_number, internal_id), current[3]))
        return out

    def index_query_many(
        self,
        table: str,
        index_name: str,
        keys: Sequence[Sequence[Any]],
        *,
        component: str = "",
        limit: int = 2,
        encoded: Sequence[bytes] | None = None,
    ) -> list[list[tuple[str, dict[str, Any]]]]:
        """:meth:`index_query` by equality prefix for several keys at once (at most ``limit`` documents
        each), in the order of ``keys``: a few statements for a whole batch of primary-key lookups instead
        of several per key. ``encoded``: ``values.encode_index_key`` of each key, when the caller has it."""
        info = self._table(table, component)
        idx = next((i for i in self._catalog.indexes_of(info.tablet) if i.name == index_name), None)
        if idx is None:
            raise BadRequestError("IndexNotFound", f"Index {table}.{index_name} does not exist.")
        if not idx.ready:
            raise BadRequestError(
                "IndexNotReady",
                f"Index {table}.{index_name} is still backfilling; try again when it is ready.",
            )
        self._flush()
        if encoded is None:
            encoded = [values.encode_index_key(list(key)) for key in keys]
        elif len(encoded) != len(keys):
            raise ValueError("index_query_many: one encoded key per key")
        successor = values.index_key_prefix_successor
        ranges = [(lower, successor(lower) if key else None) for key, lower in zip(keys, encoded, strict=True)]
        found = self._s.index_ranges(idx.index_id, ranges, limit)
        self._count_read(sum(len(entries) for entries in found))
        wanted = [i for entries in found for _key, i in entries if (info.tablet, i) not in self._pending]
        stored = self._s.current_many(info.tablet, wanted)
        out: list[list[tuple[str, dict[str, Any]]]] = []
        for entries in found:
            matches: list[tuple[str, dict[str, Any]]] = []
            for _key, internal_id in entries:
                current = self._pending.get((info.tablet, internal_id))
                if current is None:
                    row = stored.get(internal_id)
                    if row is not None and not row[0] and row[2] is not None:
                        current = (False, row[1], row[2], values.decode_document(row[2], row[1]))
                if current is not None and not current[0] and current[3] is not None:
                    matches.append((ids.encode_id(info.table_number, internal_id), current[3]))
            out.append(matches)
        return out

    # -- schema -------------------------------------------------------------------------------------

    def set_schema(self, schema: Any | None) -> None:
        """Store the active ``DatabaseSchema`` (or remove it with None)."""
        if schema is None:
            self._s.execute("DELETE FROM globals WHERE key = ?", ("schema",))
        else:
            raw = orjson.dumps(schema.to_json()).decode()
            self._s.execute("DELETE FROM globals WHERE key = ?", ("schema",))
            self._s.execute("INSERT INTO globals (key, value) VALUES (?, ?)", ("schema", raw))
        self._schema = schema
        self._schema_changed = True

    def _validate_schema(self, info: TableInfo, doc: dict[str, Any]) -> None:
        schema = self._schema
        if schema is None or not schema.schema_validation or info.component != "":
            return
        for table_def in schema.tables:
            if table_def.table_name == info.name:
                from connectors.schema import validate_document

                validate_document(table_def, doc)
                return

    # -- documents ----------------------------------------------------------------------------------

    def _resolve_id(self, document_id: str, component: str) -> tuple[TableInfo, bytes]:
        if not isinstance(document_id, str):
            raise InvalidIdError("Document ids are strings.")
        number, internal = ids.decode_id(document_id)
        info = self._catalog.active_by_number(component, number)
        if info is None:
            raise DocumentNotFoundError(document_id)
        return info, internal

    def _current(self, tablet: int, internal_id: bytes) -> tuple[bool, int, bytes | None, dict | None] | None:
        """``(deleted, flags, body, doc)`` of the newest revision, including this transaction's."""
        p = self._pending.get((tablet, internal_id))
        if p is not None:
            return p
        row = self._s.latest(tablet, internal_id)
        if row is None:
            return None
        self._count_read(1)
        _ts, deleted, flags, body = row
        doc = None if deleted or body is None else values.decode_document(body, flags)
        return (bool(deleted), flags, body, doc)

    def get(self, document_id: str, component: str = "") -> dict[str, Any] | None:
        try:
            info, internal = self._resolve_id(document_id, component)
        except DocumentNotFoundError:
            return None
        current = self._current(info.tablet, internal)
        if current is None or current[0]:
            return None
        return current[3]

    def insert(self, table: str, document: Mapping[str, Any], component: str = "") -> str:
        """Insert a new document into an existing table; returns its ``_id``."""
        info = self._catalog.active_table(component, table)
        if info is None:
            raise TableNotFoundError(table, component)
        if type(document) is not dict:
            if not isinstance(document, Mapping):
                raise InvalidValueError("A document must be an object")
            document = dict(document)
        if "_id" in document or CREATION_TIME in document:
            key = "_id" if "_id" in document else CREATION_TIME
            raise InvalidValueError(f"Cannot set the system field {key} on insert", path=f".{key}")
        internal = ids.new_internal_id(self.creation_time)
        doc_id = ids.encode_id(info.table_number, internal)
        doc = {"_id": doc_id, CREATION_TIME: self.creation_time, **document}
        self._write(info, internal, doc, expect_new=True, check_exists=False)
        return doc_id

    def insert_many(
        self,
        table: str,
        documents: Sequence[Mapping[str, Any]],
        component: str = "",
        *,
        on_error: Callable[[int, InvalidValueError | SchemaValidationError], Exception] | None = None,
    ) -> list[str]:
        """Insert new documents into an existing table; returns their ``_id`` values in order.

        The same documents and the same errors as :meth:`insert` called for each in order (the first
        failing document's error, a transaction limit included), but all or nothing: the batch is checked
        and encoded before any of it is written, so an error leaves the transaction as it was.
        ``on_error(position, error)`` turns a document's validation error into the exception to raise
        (e.g. to name the item of a request). Ids, shape counts and rows are made for the whole batch at
        once, which is cheaper per document than :meth:`insert`."""
        info = self._catalog.active_table(component, table)
        if info is None:
            raise TableNotFoundError(table, component)
        count = len(documents)
        if count == 0:
            return []
        tablet = info.tablet
        creation_time = self.creation_time
        internals, doc_ids = bulk.new_ids(info.table_number, count, creation_time)
        pending = self._pending
        if len(set(internals)) != count or any((tablet, i) in pending for i in internals):
            raise BadRequestError("DuplicateId", "A generated document id is already taken; retry the write.")
        encode = bulk.DocumentEncoder().encode
        validate = self._schema is not None
        max_writes = self._cfg.max_writes_per_transaction - self.writes
        max_bytes = self._cfg.max_write_bytes_per_transaction - self.write_bytes
        total = 0
        docs: list[dict[str, Any]] = []
        encoded: list[values.EncodedDocument] = []
        signatures: list[tuple[Any, ...] | None] = []
        for position, document in enumerate(documents):
            try:
                if type(document) is not dict:
                    if not isinstance(document, Mapping):
                        raise InvalidValueError("A document must be an object")
                    document = dict(document)
                if "_id" in document or CREATION_TIME in document:
                    field = "_id" if "_id" in document else CREATION_TIME
                    raise InvalidValueError(f"Cannot set the system field {field} on insert", path=f".{field}")
                doc = {"_id": doc_ids[position], CREATION_TIME: creation_time, **document}
                enc, signature = encode(doc)
                if validate:
                    self._validate_schema(info, doc)
            except (InvalidValueError, SchemaValidationError) as e:
                if on_error is None:
                    raise
                raise on_error(position, e) from None
            if position >= max_writes:
                raise TransactionLimitError(
                    f"Too many writes in one transaction (limit {self._cfg.max_writes_per_transaction})."
                )
            total += enc.size
            if total > max_bytes:
                raise TransactionLimitError(
                    "Too many bytes written in one transaction"
                    f" (limit {self._cfg.max_write_bytes_per_transaction})."
                )
            docs.append(doc)
            encoded.append(enc)
            signatures.append(signature)

        self.writes += count
        self.write_bytes += total
        ts = self.ts
        rows = self._rows
        row_index = self._row_index
        index_key = bulk.IndexKeys().key
        indexes = [(idx.index_id, idx.paths) for idx in self._catalog.indexes_of(tablet)]
        delta = self._index_delta
        for internal, doc, enc in zip(internals, docs, encoded, strict=True):
            key = (tablet, internal)
            flags = enc.flags
            body = enc.body
            pending[key] = (False, flags, body, doc)
            row_index[key] = len(rows)
            rows.append((tablet, internal, ts, 0, flags, body))
            for index_id, paths in indexes:
                k = (index_id, index_key(doc, paths), internal)
                delta[k] = delta.get(k, 0) + 1
        shapes = bulk.ShapeBatch()
        shapes.add_all(docs, signatures)
        shape = self._shape.get(tablet)
        if shape is None:
            shape = self._shape[tablet] = {}
        shapes.add_to(shape)
        return doc_ids

    def insert_with_id(self, table: str, document: Mapping[str, Any], component: str = "") -> str:
        """Insert a document that already carries ``_id`` and ``_creationTime`` (backup import)."""
        info = self._table(table, component)
        doc_id = document.get("_id")
        ct = document.get(CREATION_TIME)
        if not isinstance(doc_id, str):
            raise InvalidValueError("The document has no _id string", path="._id")
        if type(ct) is not float and type(ct) is not int:
            raise InvalidValueError("The document has no numeric _creationTime", path="._creationTime")
        number, internal = ids.decode_id(doc_id)
        if number != info.table_number:
            raise InvalidIdError(
                f"Id {doc_id} belongs to table number {number}, not to table {table} ({info.table_number})."
            )
        doc = dict(document)
        doc[CREATION_TIME] = float(ct)
        self._write(info, internal, doc, expect_new=True)
        return doc_id

    def replace(self, document_id: str, document: Mapping[str, Any], component: str = "") -> None:
        """Replace a document wholesale (system fields kept)."""
        info, internal = self._resolve_id(document_id, component)
        current = self._current(info.tablet, internal)
        if current is None or current[0] or current[3] is None:
            raise DocumentNotFoundError(document_id)
        old = current[3]
        doc = {k: v for k, v in document.items() if k not in ("_id", CREATION_TIME)}
        for key in ("_id", CREATION_TIME):
            if key in document and document[key] != old[key]:
                raise InvalidValueError(f"Cannot change the system field {key}", path=f".{key}")
        doc["_id"] = old["_id"]
        doc[CREATION_TIME] = old[CREATION_TIME]
        self._write(info, internal, doc, current=current)

    def patch(self, document_id: str, fields: Mapping[str, Any], component: str = "") -> dict[str, Any]:
        """Shallow-merge ``fields`` into a document; a value of ``values.MISSING`` removes the field.
        Returns the new document."""
        info, internal = self._resolve_id(document_id, component)
        current = self._current(info.tablet, internal)
        if current is None or current[0] or current[3] is None:
            raise DocumentNotFoundError(document_id)
        doc = dict(current[3])
        for key, value in fields.items():
            if key in ("_id", CREATION_TIME):
                if value != doc[key]:
                    raise InvalidValueError(f"Cannot change the system field {key}", path=f".{key}")
                continue
            if value is values.MISSING:
                doc.pop(key, None)
            else:
                doc[key] = value
        self._write(info, internal, doc, current=current)
        return doc

    def delete(self, document_id: str, component: str = "") -> None:
        info, internal = self._resolve_id(document_id, component)
        current = self._current(info.tablet, internal)
        if current is None or current[0]:
            raise DocumentNotFoundError(document_id)
        self._write(info, internal, None, current=current)

    def _write(
        self,
        info: TableInfo,
        internal: bytes,
        doc: dict[str, Any] | None,
        *,
        current: tuple[bool, int, bytes | None, dict | None] | None = None,
        expect_new: bool = False,
        check_exists: bool = True,
    ) -> None:
        """Write a new revision (``doc`` None = delete) and maintain indexes and shapes."""
        key = (info.tablet, internal)
        if doc is not None:
            encoded = values.encode_document(doc)
            if self._schema is not None:
                self._validate_schema(info, doc)
            body, flags, size = encoded.body, encoded.flags, encoded.size
        else:
            body, flags, size = None, 0, 0
        pending = self._pending.get(key)
        if expect_new:
            if pending is not None:
                current = pending
            elif check_exists:
                # A generated id has 14 random bytes: a collision is not worth a read per insert,
                # but an id given by the caller (backup import) may exist or be a tombstone.
                latest = self._s.latest(info.tablet, internal)
                current = None if latest is None else (bool(latest[1]), latest[2], latest[3], None)
            if current is not None and not current[0]:
                document_id = ids.encode_id(info.table_number, internal)
                raise BadRequestError("DuplicateId", f"A document with id {document_id} already exists.")
        self._count_write(size)

        old_doc = current[3] if current is not None and not current[0] else None
        shape = self._shape.get(info.tablet)
        if shape is None:
            shape = self._shape[info.tablet] = {}
        if old_doc is not None:
            add_shape_counts(old_doc, -1, shape)
        if doc is not None:
            add_shape_counts(doc, 1, shape)
        indexes = self._catalog.indexes_of(info.tablet)
        if indexes:
            delta = self._index_delta
            for idx in indexes:
                if old_doc is not None:
                    k = (idx.index_id, _index_key(idx, old_doc), internal)
                    delta[k] = delta.get(k, 0) - 1
                if doc is not None:
                    k = (idx.index_id, _index_key(idx, doc), internal)
                    delta[k] = delta.get(k, 0) + 1

        deleted = doc is None
        self._pending[key] = (deleted, flags, body, doc)
        row = (info.tablet, internal, self.ts, int(deleted), flags, body)
        if pending is not None:
            # Rewriting a document already written in this transaction: same ts, so update in place.
            at = self._row_index.get(key)
            if at is not None:
                self._rows[at] = row
            else:
                self._s.execute(
                    "UPDATE revisions SET deleted = ?, flags = ?, body = ? WHERE tablet = ? AND id = ? AND ts = ?",
                    (int(deleted), flags, body, info.tablet, internal, self.ts),
                )
            return
        if current is not None:
            prev = self._s.latest(info.tablet, internal)
            if prev is not None:
                self._supersede.append((self.ts, info.tablet, internal, prev[0]))
        self._row_index[key] = len(self._rows)
        self._rows.append(row)

    # -- commit -------------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write buffered rows so that SQL reads on this connection see them."""
        if self._rows:
            # Appending in (table, id) order keeps each transaction's rows in change-log order.
            self._rows.sort()
            self._s.insert_revisions(self._rows)
            self._rows = []
            self._row_index = {}
        if self._supersede:
            self._s.supersede(self._supersede)
            self._supersede = []
        if self._index_delta:
            # In index order: neighbouring entries land on the same B-tree pages.
            adds = sorted(k for k, n in self._index_delta.items() if n > 0)
            removes = [k for k, n in self._index_delta.items() if n < 0]
            self._s.remove_index_entries(removes)
            self._s.add_index_entries(adds)
            self._index_delta = {}

    def _finish(self) -> None:
        for tablet, counts in self._shape.items():
            self._s.add_shape_counts(tablet, ((p, t, n) for (p, t), n in counts.items()))
        self._shape = {}
        self._s.execute("DELETE FROM globals WHERE key = ?", ("max_ts",))
        self._s.execute("INSERT INTO globals (key, value) VALUES (?, ?)", ("max_ts", str(self.ts)))
        # Renewing the lease with a commit costs one more row write, about twice a second at most.
        self._lease = self._d._lease_renewal_due(self._d._clock())
        if self._lease is not None:
            self._d._persist_timestamp_high_water(self._s, self._lease)


def open_deployment(
    data_dir: str | Path | None = None,
    *,
    db_url: str | None = None,
    pg_schema: str | None = None,
    config: DeploymentConfig | None = None,
    read_only: bool = False,
    create: bool = True,
) -> Deployment:
    return Deployment.open(
        data_dir=data_dir,
        db_url=db_url,
        pg_schema=pg_schema,
        config=config,
        read_only=read_only,
        create=create,
    )


__all__ = [
    "Change",
    "ChangePage",
    "Deployment",
    "DeploymentConfig",
    "Document",
    "SnapshotPage",
    "IndexInfo",
    "TableInfo",
    "Transaction",
    "open_deployment",
]
