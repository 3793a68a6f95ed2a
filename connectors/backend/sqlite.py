"""SQLite persistence (the embedded default): one database file in WAL mode under the data directory.

WAL lets readers keep reading a consistent state while the single writer commits. ``synchronous=NORMAL``
keeps every committed transaction across a process crash (kill -9): the WAL frames are written before
COMMIT returns; only an OS crash or power loss could lose the last transactions (``durable=True`` selects
``FULL`` for that).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.backend.persistence import WriteSession
from connectors.backend.sql import SqlPersistence, SqlWriteSession
from connectors.errors import StorageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS globals (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS components (component_id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS tablets (
  tablet INTEGER PRIMARY KEY, tablet_id BLOB NOT NULL UNIQUE, component_id INTEGER NOT NULL,
  name TEXT NOT NULL, table_number INTEGER NOT NULL, state TEXT NOT NULL,
  created_ts INTEGER NOT NULL, deleted_ts INTEGER);
CREATE TABLE IF NOT EXISTS indexes (
  index_id INTEGER PRIMARY KEY, tablet INTEGER NOT NULL, name TEXT NOT NULL, fields TEXT NOT NULL,
  state TEXT NOT NULL, is_system INTEGER NOT NULL, created_ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revisions (
  seq INTEGER PRIMARY KEY, tablet INTEGER NOT NULL, id BLOB NOT NULL, ts INTEGER NOT NULL,
  next_ts INTEGER, deleted INTEGER NOT NULL, flags INTEGER NOT NULL, body BLOB);
CREATE INDEX IF NOT EXISTS revisions_by_id ON revisions (tablet, id, ts, next_ts, deleted);
CREATE INDEX IF NOT EXISTS revisions_by_ts ON revisions (ts);
CREATE INDEX IF NOT EXISTS revisions_superseded ON revisions (next_ts) WHERE next_ts IS NOT NULL;
CREATE INDEX IF NOT EXISTS revisions_tombstones ON revisions (ts) WHERE deleted = 1;
CREATE TABLE IF NOT EXISTS index_entries (
  index_id INTEGER NOT NULL, key BLOB NOT NULL, id BLOB NOT NULL,
  PRIMARY KEY (index_id, key, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shape_counts (
  tablet INTEGER NOT NULL, path TEXT NOT NULL, tag TEXT NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY (tablet, path, tag)) WITHOUT ROWID;
"""

DB_FILE = "convex.sqlite3"
CHECKPOINT_INTERVAL_S = 0.5
WRITER_AUTOCHECKPOINT_PAGES = 20_000


class SqlitePersistence(SqlPersistence):
    dialect = "sqlite"

    def __init__(self, data_dir: str | Path, *, durable: bool = False, cache_mib: int = 32) -> None:
        self.path = Path(data_dir) / DB_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pragmas = (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}",
            f"PRAGMA cache_size=-{int(cache_mib) * 1024}",
            "PRAGMA temp_store=MEMORY",
            "PRAGMA busy_timeout=30000",
        )
        self._writer = self._connect()
        self._writer.executescript(SCHEMA)
        # Checkpoints copy the WAL into the database file and fsync it; done by the committing thread
        # they stall every few commits. A background thread checkpoints instead (PASSIVE never blocks the
        # writer); the writer only checkpoints itself if the WAL grows past ~80 MB.
        self._writer.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True
        )
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in self._pragmas:
                conn.execute(pragma)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite database: {exc}") from exc
        return conn

    def _checkpoint_loop(self) -> None:
        conn = self._connect()
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL_S):
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[WriteSession]:
        with self._write_lock:
            cur = self._writer.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield SqlWriteSession(cur, self._sql)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StorageError("the deployment is closed")
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        cur = conn.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._checkpointer.join(timeout=10)
        with self._readers_lock:
            for conn in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._readers.clear()
        with self._write_lock, contextlib.suppress(sqlite3.Error):
            self._writer.close()
