"""PostgreSQL persistence (psycopg 3), for deployments that outgrow one SQLite file.

Same tables and statements as SQLite (``sql.py``). A writer holds a session advisory lock on its schema for
its whole life (``acquire_writer_lease``), so a second writer process is refused at open; writes also take a
transaction-scoped advisory lock so commits can never interleave. Reads use a small connection pool.
An optional ``schema`` keeps several deployments (and the test suite) apart in one database.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from connectors.backend.persistence import WriteSession
from connectors.backend.sql import SqlPersistence, SqlWriteSession, as_bytes
from connectors.backend.writer_lock import (
    DeploymentLockedError,
    DeploymentNotFoundError,
    LockHolder,
    ReadOnlyDeploymentError,
)
from connectors.errors import StorageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS globals (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS components (component_id BIGINT PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS tablets (
  tablet BIGINT PRIMARY KEY, tablet_id BYTEA NOT NULL UNIQUE, component_id BIGINT NOT NULL,
  name TEXT NOT NULL, table_number BIGINT NOT NULL, state TEXT NOT NULL,
  created_ts BIGINT NOT NULL, deleted_ts BIGINT);
CREATE TABLE IF NOT EXISTS indexes (
  index_id BIGINT PRIMARY KEY, tablet BIGINT NOT NULL, name TEXT NOT NULL, fields TEXT NOT NULL,
  state TEXT NOT NULL, is_system INTEGER NOT NULL, created_ts BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS revisions (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tablet BIGINT NOT NULL, id BYTEA NOT NULL,
  ts BIGINT NOT NULL, next_ts BIGINT, deleted INTEGER NOT NULL, flags INTEGER NOT NULL, body BYTEA);
CREATE UNIQUE INDEX IF NOT EXISTS revisions_by_id ON revisions (tablet, id, ts) INCLUDE (next_ts, deleted);
CREATE INDEX IF NOT EXISTS revisions_by_ts ON revisions (ts, seq);
CREATE INDEX IF NOT EXISTS revisions_superseded ON revisions (next_ts) WHERE next_ts IS NOT NULL;
CREATE INDEX IF NOT EXISTS revisions_tombstones ON revisions (ts) WHERE deleted = 1;
CREATE TABLE IF NOT EXISTS index_entries (
  index_id BIGINT NOT NULL, key BYTEA NOT NULL, id BYTEA NOT NULL,
  PRIMARY KEY (index_id, key, id));
CREATE TABLE IF NOT EXISTS shape_counts (
  tablet BIGINT NOT NULL, path TEXT NOT NULL, tag TEXT NOT NULL, n BIGINT NOT NULL,
  PRIMARY KEY (tablet, path, tag));
"""

_WRITER_LOCK_KEY = 0x436F6E766578  # "Convex": serializes commits in one database
# Session advisory lock of the deployment's writer: (class, hash of the schema name).
_WRITER_LEASE_CLASS = 0x436F6E76  # "Conv"
_HOLDER_META_KEY = "writer_holder"
_DEAD_HOLDER_GRACE_S = 10.0
_ANALYZE_MIN_ROWS = 5_000
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# The lookup of many key ranges in one statement: arrays of the ranges, each joined to its bounded index seek.
_INDEX_RANGES = (
    "SELECT k.n, e.key, e.id FROM unnest(%s::int[], %s::bytea[], %s::bytea[]) AS k(n, lo, hi)"
    " CROSS JOIN LATERAL (SELECT key, id FROM index_entries WHERE index_id = %s AND key >= k.lo"
    " AND key < k.hi ORDER BY key, id LIMIT %s) AS e"
)
_INDEX_RANGES_CHUNK = 5000  # ranges per statement (three array parameters)


class PgWriteSession(SqlWriteSession):
    """:class:`SqlWriteSession` with PostgreSQL's one-statement range lookup (``unnest`` + ``LATERAL``)."""

    def index_ranges(
        self, index_id: int, ranges: Sequence[tuple[bytes, bytes | None]], limit: int
    ) -> list[list[tuple[bytes, bytes]]]:
        out: list[list[tuple[bytes, bytes]]] = [[] for _ in ranges]
        bounded = sorted((lower, upper, n) for n, (lower, upper) in enumerate(ranges) if upper is not None)
        for n, (lower, upper) in enumerate(ranges):
            if upper is None:
                out[n] = self.index_range(index_id, lower, None, limit)
        for start in range(0, len(bounded), _INDEX_RANGES_CHUNK):
            part = bounded[start : start + _INDEX_RANGES_CHUNK]
            self._cur.execute(
                _INDEX_RANGES,
                ([n for _, _, n in part], [lo for lo, _, _ in part], [hi for _, hi, _ in part], index_id, limit),
            )
            for n, key, doc_id in self._cur.fetchall():
                out[n].append((as_bytes(key), as_bytes(doc_id)))
        for entries in out:
            entries.sort()
        return out


class PostgresPersistence(SqlPersistence):
    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = 8,
        read_only: bool = False,
        create: bool = True,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError("schema must be a lower-case SQL identifier")
        self._url = url
        self.read_only = read_only
        self.created = False
        kwargs: dict[str, Any] = {}
        if schema:
            kwargs["options"] = f"-c search_path={schema}"
        self._conn_kwargs = kwargs
        self._sql_cache: dict[str, str] = {}
        self._writer: psycopg.Connection | None = None
        try:
            if read_only:
                with psycopg.connect(url, autocommit=True, **kwargs) as conn:
                    _require_deployment(conn, schema)
            else:
                self._writer = self._open_writer(url, schema, create, kwargs)
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                kwargs={"autocommit": True, **kwargs},
                open=True,
            )
        except psycopg.Error as exc:
            if self._writer is not None:
                self._writer.close()
            raise StorageError(f"cannot open PostgreSQL database: {type(exc).__name__}") from exc
        except BaseException:
            if self._writer is not None:
                self._writer.close()
            raise
        self._write_lock = threading.Lock()
        self._unanalyzed = 0
        with self._pool.connection() as conn:
            row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'revisions'::regclass").fetchone()
        self._analyzed_rows = max(0, int(row[0])) if row else 0

    def _open_writer(
        self, url: str, schema: str | None, create: bool, kwargs: dict[str, Any]
    ) -> psycopg.Connection:
        if schema and create:
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        writer = psycopg.connect(url, autocommit=False, **kwargs)
        try:
            with writer.cursor() as cur:
                acquire_writer_lease(cur, schema)
                exists = _deployment_exists(cur)
                if not exists and not create:
                    raise DeploymentNotFoundError(
                        _describe(cur, schema), "no deployment tables in the schema"
                    )
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK_KEY,))
                cur.execute(SCHEMA)
                record_writer(cur)
            writer.commit()
        except BaseException:
            writer.close()
            raise
        self.created = not exists
        return writer

    def _sql(self, sql: str) -> str:
        converted = self._sql_cache.get(sql)
        if converted is None:
            converted = self._sql_cache[sql] = sql.replace("?", "%s")
        return converted

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[WriteSession]:
        writer = self._writer
        if writer is None:
            raise ReadOnlyDeploymentError()
        with self._write_lock:
            cur = writer.cursor()
            try:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK_KEY,))
                session = PgWriteSession(cur, self._sql)
                yield session
            except BaseException:
                writer.rollback()
                raise
            else:
                writer.commit()
                self._keep_statistics_fresh(cur, session.rows_written)
            finally:
                cur.close()

    def _keep_statistics_fresh(self, cur: Any, written: int) -> None:
        """ANALYZE after bulk writes. Until autovacuum gets round to it, a freshly loaded table has no
        statistics and the planner answers every snapshot page with a bitmap scan and a sort of the whole
        table instead of one index seek, turning a listing quadratic."""
        self._unanalyzed += written
        if self._unanalyzed < max(_ANALYZE_MIN_ROWS, self._analyzed_rows // 5):
            return
        cur.execute("ANALYZE revisions")
        cur.execute("ANALYZE index_entries")
        cur.connection.commit()
        self._analyzed_rows += self._unanalyzed
        self._unanalyzed = 0

    @contextlib.contextmanager
    def metadata_transaction(self) -> Iterator[WriteSession]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield PgWriteSession(cur, self._sql)

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pool.close()
        if self._writer is not None:
            with self._write_lock, contextlib.suppress(Exception):
                release_writer_lease(self._writer)
            with self._write_lock, contextlib.suppress(Exception):
                self._writer.close()


# The writer lease. Today a session advisory lock held for the writer's life; the seam where a lease with
# expiry in a table would go when several processes share one PostgreSQL (shared/design.md).


def _lease_key(cur: Any, schema: str | None) -> tuple[int, int]:
    if not schema:
        cur.execute("SELECT current_schema()")
        schema = cur.fetchone()[0] or ""
    objid = zlib.crc32(schema.encode()) - (1 << 31)  # a signed int4, as pg_advisory_lock(int4, int4) wants
    return _WRITER_LEASE_CLASS, objid


def acquire_writer_lease(cur: Any, schema: str | None) -> None:
    """Take the schema's writer lock for the session, or raise ``DeploymentLockedError`` naming the holder.
    ``schema`` None: the connection's current schema (from the URL's search_path)."""
    key = _lease_key(cur, schema)
    deadline = time.monotonic() + _DEAD_HOLDER_GRACE_S
    while True:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        if cur.fetchone()[0]:
            return
        holder = None
        if _deployment_exists(cur):
            cur.execute("SELECT value FROM globals WHERE key = %s", (_HOLDER_META_KEY,))
            row = cur.fetchone()
            holder = LockHolder.from_json(row[0]) if row else None
        # A holder on this host that has died (kill -9) still holds the lock until PostgreSQL notices its
        # closed connection, usually within milliseconds: wait for that rather than refuse.
        if holder is None or not _is_dead_local_process(holder) or time.monotonic() > deadline:
            break
        cur.connection.rollback()
        time.sleep(0.05)
    location = _describe(cur, schema)
    cur.connection.rollback()
    raise DeploymentLockedError(location, holder)


def release_writer_lease(conn: Any) -> None:
    """Release the lease before closing: the server drops a closed session's locks only once its backend has
    exited, a moment after the client is gone, and the next writer must not be refused meanwhile."""
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock_all()")
    conn.commit()


def _is_dead_local_process(holder: LockHolder) -> bool:
    if holder.host != socket.gethostname():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def record_writer(cur: Any) -> None:
    """Record this process as the lease holder, for the message another process gets when refused."""
    cur.execute(
        "INSERT INTO globals (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (_HOLDER_META_KEY, LockHolder.this_process().to_json().decode()),
    )


def _deployment_exists(cur: Any) -> bool:
    cur.execute("SELECT to_regclass('globals') IS NOT NULL")
    return bool(cur.fetchone()[0])


def _describe(cur: Any, schema: str | None) -> str:
    cur.execute("SELECT current_database(), current_schema()")
    database, current = cur.fetchone()
    return f"PostgreSQL database {database!r}, schema {schema or current or '(none)'!r}"


def _require_deployment(conn: Any, schema: str | None) -> None:
    with conn.cursor() as cur:
        if not _deployment_exists(cur):
            raise DeploymentNotFoundError(_describe(cur, schema), "no deployment tables in the schema")
