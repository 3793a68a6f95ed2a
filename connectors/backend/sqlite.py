"""SQLite persistence (the embedded default): one database file in WAL mode under the data directory.

WAL lets readers keep reading a consistent state while the single writer commits. ``synchronous=NORMAL``
keeps every committed transaction across a process crash (kill -9): the WAL frames are written before
COMMIT returns; only an OS crash or power loss could lose the last transactions (``durable=True`` selects
``FULL`` for that).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.backend.persistence import WriteSession
from connectors.backend.sql import SqlPersistence, SqlWriteSession
from connectors.backend.writer_lock import (
    LOCK_FILE,
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    DeploymentNotFoundError,
    FileWriterLock,
    ReadOnlyDeploymentError,
)
from connectors.errors import StorageError

log = logging.getLogger(__name__)

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

    def __init__(
        self,
        data_dir: str | Path,
        *,
        durable: bool = False,
        cache_mib: int = 32,
        read_only: bool = False,
        create: bool = True,
    ) -> None:
        directory = Path(data_dir)
        self.path = directory / DB_FILE
        self.read_only = read_only
        self._pragmas = (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}",
            f"PRAGMA cache_size=-{int(cache_mib) * 1024}",
            "PRAGMA temp_store=MEMORY",
            "PRAGMA busy_timeout=30000",
        )
        self.created = not self.path.exists()
        if self.created and (read_only or not create):
            raise DeploymentNotFoundError(str(directory), f"no {DB_FILE} in it")
        if self.created:
            _make_private_dir(directory)
        _warn_if_not_private(directory, self.path)
        self._lock: FileWriterLock | None = None
        if not read_only:
            lock = self._lock = FileWriterLock(directory / LOCK_FILE, str(directory))
            lock.acquire()
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        if read_only:
            return
        try:
            if self.created:
                # Created private before SQLite opens it; SQLite gives the -wal and -shm files the same mode.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE_MODE))
            self._writer = self._connect()
            self._writer.executescript(SCHEMA)
        except BaseException:
            lock.release()
            raise
        # Checkpoints copy the WAL into the database file and fsync it; done by the committing thread
        # they stall every few commits. A background thread checkpoints instead (PASSIVE never blocks the
        # writer); the writer only checkpoints itself if the WAL grows past ~80 MB.
        self._writer.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True
        )
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
        if self._writer is None:
            raise ReadOnlyDeploymentError()
        with self._write_lock, self._immediate_transaction(self._writer) as session:
            yield session

    @contextlib.contextmanager
    def metadata_transaction(self) -> Iterator[WriteSession]:
        # Its own short-lived connection: SQLite serializes it with the writer of any process (busy_timeout).
        if self._closed:
            raise StorageError("the deployment is closed")
        conn = self._connect()
        try:
            with self._immediate_transaction(conn) as session:
                yield session
        finally:
            conn.close()

    @contextlib.contextmanager
    def _immediate_transaction(self, conn: sqlite3.Connection) -> Iterator[WriteSession]:
        """One ``BEGIN IMMEDIATE`` transaction on ``conn``: committed when the block ends, rolled back when it
        raises."""
        cur = conn.cursor()
        try:
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
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=10)
        with self._readers_lock:
            for conn in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._readers.clear()
        if self._writer is not None:
            with self._write_lock, contextlib.suppress(sqlite3.Error):
                self._writer.close()
        if self._lock is not None:
            self._lock.release()


def _make_private_dir(directory: Path) -> None:
    """The data directory holds every document and the key-signing secret: only its owner may enter it."""
    existed = directory.exists()
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if not existed:
        os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask


def _warn_if_not_private(directory: Path, db_file: Path) -> None:
    candidates = [directory, db_file, *(db_file.with_name(db_file.name + s) for s in ("-wal", "-shm"))]
    open_to_others = []
    for path in candidates:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                open_to_others.append(f"{path} ({mode:04o})")
    if open_to_others:
        log.warning(
            "The deployment is readable by other local users (its documents and the key-signing secret): %s. "
            "Run: chmod 700 %s && chmod 600 %s*",
            ", ".join(open_to_others),
            directory,
            db_file,
        )
