"""PostgreSQL persistence (psycopg 3), for deployments that outgrow one SQLite file.

Same tables and statements as SQLite (``sql.py``). Writes take a transaction-scoped advisory lock so two
server processes can never interleave commits on one database; reads use a small connection pool.
An optional ``schema`` keeps several deployments (and the test suite) apart in one database.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from connectors.backend.persistence import WriteSession
from connectors.backend.sql import SqlPersistence, SqlWriteSession
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

_WRITER_LOCK_KEY = 0x436F6E766578  # "Convex": one writer per database schema
_ANALYZE_MIN_ROWS = 5_000
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresPersistence(SqlPersistence):
    dialect = "postgresql"

    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 8) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError("schema must be a lower-case SQL identifier")
        self._url = url
        kwargs: dict[str, Any] = {}
        if schema:
            kwargs["options"] = f"-c search_path={schema}"
        self._conn_kwargs = kwargs
        self._sql_cache: dict[str, str] = {}
        try:
            if schema:
                with psycopg.connect(url, autocommit=True) as admin:
                    admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            self._writer = psycopg.connect(url, autocommit=False, **kwargs)
            with self._writer.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK_KEY,))
                cur.execute(SCHEMA)
            self._writer.commit()
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                kwargs={"autocommit": True, **kwargs},
                open=True,
            )
        except psycopg.Error as exc:
            raise StorageError(f"cannot open PostgreSQL database: {type(exc).__name__}") from exc
        self._write_lock = threading.Lock()
        self._unanalyzed = 0
        with self._pool.connection() as conn:
            row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'revisions'::regclass").fetchone()
        self._analyzed_rows = max(0, int(row[0])) if row else 0

    def _sql(self, sql: str) -> str:
        converted = self._sql_cache.get(sql)
        if converted is None:
            converted = self._sql_cache[sql] = sql.replace("?", "%s")
        return converted

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[WriteSession]:
        with self._write_lock:
            cur = self._writer.cursor()
            try:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK_KEY,))
                session = SqlWriteSession(cur, self._sql)
                yield session
            except BaseException:
                self._writer.rollback()
                raise
            else:
                self._writer.commit()
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
        self._writer.commit()
        self._analyzed_rows += self._unanalyzed
        self._unanalyzed = 0

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pool.close()
        with self._write_lock, contextlib.suppress(Exception):
            self._writer.close()
