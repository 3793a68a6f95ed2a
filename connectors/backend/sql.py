"""SQL shared by the SQLite and PostgreSQL persistence implementations.

Statements are written once with ``?`` placeholders; the PostgreSQL driver rewrites them to ``%s``.
Every value reaches the database as a bound parameter — nothing is formatted into SQL text.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from connectors.backend.persistence import LogRow, Persistence, SnapshotRow, WriteSession

# Field paths use \x00 / \x01 as separators in memory; PostgreSQL text cannot hold NUL, so they are
# stored as \x1e / \x1f (field names are printable ASCII, so neither can collide).
_PATH_TO_DB = str.maketrans({"\x00": "\x1e", "\x01": "\x1f"})
_PATH_FROM_DB = str.maketrans({"\x1e": "\x00", "\x1f": "\x01"})


def path_to_db(path: str) -> str:
    return path.translate(_PATH_TO_DB)


def path_from_db(path: str) -> str:
    return path.translate(_PATH_FROM_DB)


INSERT_REVISION = "INSERT INTO revisions (tablet, id, ts, deleted, flags, body) VALUES (?, ?, ?, ?, ?, ?)"
SUPERSEDE = "UPDATE revisions SET next_ts = ? WHERE tablet = ? AND id = ? AND ts = ?"
LATEST = "SELECT ts, deleted, flags, body FROM revisions WHERE tablet = ? AND id = ? ORDER BY ts DESC LIMIT 1"
LATEST_LIVE_PAGE = (
    "SELECT id, ts, flags, body FROM revisions WHERE tablet = ? AND id > ? AND next_ts IS NULL"
    " AND deleted = 0 ORDER BY id LIMIT ?"
)
SNAPSHOT_PAGE = (
    "SELECT id, ts, flags, body FROM revisions WHERE tablet = ? AND id > ? AND ts <= ?"
    " AND (next_ts IS NULL OR next_ts > ?) AND deleted = 0 ORDER BY id LIMIT ?"
)
REVISION_AT = (
    "SELECT ts, flags, body FROM revisions WHERE tablet = ? AND id = ? AND ts <= ?"
    " AND (next_ts IS NULL OR next_ts > ?) AND deleted = 0"
)
# The log is read in commit (seq) order, which follows ts; rows of one ts are re-sorted by the engine.
LOG_PAGE = (
    "SELECT ts, tablet, id, deleted, flags, body, seq FROM revisions WHERE ts > ? AND ts <= ?"
    " ORDER BY ts, seq LIMIT ?"
)
LOG_REST_OF_TS = (
    "SELECT ts, tablet, id, deleted, flags, body, seq FROM revisions WHERE ts = ? AND seq > ? ORDER BY seq"
)
ADD_INDEX_ENTRY = "INSERT INTO index_entries (index_id, key, id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
REMOVE_INDEX_ENTRY = "DELETE FROM index_entries WHERE index_id = ? AND key = ? AND id = ?"
INDEX_RANGE = (
    "SELECT key, id FROM index_entries WHERE index_id = ? AND key >= ? AND key < ? ORDER BY key, id LIMIT ?"
)
INDEX_RANGE_OPEN = (
    "SELECT key, id FROM index_entries WHERE index_id = ? AND key >= ? ORDER BY key, id LIMIT ?"
)
ADD_SHAPE_COUNT = (
    "INSERT INTO shape_counts (tablet, path, tag, n) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (tablet, path, tag) DO UPDATE SET n = shape_counts.n + excluded.n"
)


_IN_CHUNK = 500  # ids per IN (...) list; well under SQLite's and PostgreSQL's parameter limits
_RANGES_CHUNK = 500  # index ranges per lookup statement (1,500 parameters)
# Entries a one-scan range lookup may read beyond ``limit`` per range before it gives up (other keys
# between the ranges).
_SCAN_SLACK = 64
_ENTRIES_CHUNK = 200  # index entries per multi-row INSERT (600 parameters)


def _index_ranges_sql(count: int) -> str:
    """Entries of ``count`` key ranges ``(n, lower, upper)`` of one index, at most ``limit`` per range in
    ``(key, id)`` order: ``n, key, id`` rows. Parameters: the ranges' triples, then index id and limit."""
    values = ", ".join(["(?, ?, ?)"] * count)
    return (
        f"WITH k(n, lo, hi) AS (VALUES {values}) SELECT n, key, id FROM (SELECT k.n AS n, e.key AS key,"
        " e.id AS id, row_number() OVER (PARTITION BY k.n ORDER BY e.key, e.id) AS r FROM k"
        " JOIN index_entries AS e ON e.index_id = ? AND e.key >= k.lo AND e.key < k.hi) AS m WHERE r <= ?"
    )


class SqlWriteSession(WriteSession):
    """Write operations on a DB-API cursor; the owning persistence handles BEGIN/COMMIT."""

    def __init__(self, cursor: Any, convert: Any) -> None:
        self._cur = cursor
        self._sql = convert  # placeholder conversion for the dialect
        self._add_entries_sql: dict[int, str] = {}  # multi-row ADD_INDEX_ENTRY by row count
        self._ranges_sql: dict[int, str] = {}  # index_ranges statement by range count
        self.rows_written = 0  # revisions and index entries, for statistics upkeep

    def insert_revisions(self, rows: Sequence[tuple]) -> None:
        if rows:
            self._cur.executemany(self._sql(INSERT_REVISION), rows)
            self.rows_written += len(rows)

    def supersede(self, rows: Sequence[tuple[int, int, bytes, int]]) -> None:
        if rows:
            self._cur.executemany(self._sql(SUPERSEDE), rows)

    def latest(self, tablet: int, doc_id: bytes) -> tuple[int, int, int, bytes | None] | None:
        self._cur.execute(self._sql(LATEST), (tablet, doc_id))
        row = self._cur.fetchone()
        return None if row is None else (row[0], row[1], row[2], as_bytes(row[3]))

    def current_many(
        self, tablet: int, doc_ids: Sequence[bytes]
    ) -> dict[bytes, tuple[int, int, bytes | None]]:
        out: dict[bytes, tuple[int, int, bytes | None]] = {}
        for start in range(0, len(doc_ids), _IN_CHUNK):
            chunk = doc_ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            self._cur.execute(
                self._sql(
                    f"SELECT id, deleted, flags, body FROM revisions WHERE tablet = ? AND next_ts IS NULL"
                    f" AND id IN ({marks})"
                ),
                (tablet, *chunk),
            )
            for doc_id, deleted, flags, body in self._cur.fetchall():
                out[as_bytes(doc_id)] = (deleted, flags, as_bytes(body))
        return out

    def latest_live_page(self, tablet: int, after_id: bytes, limit: int) -> list[SnapshotRow]:
        self._cur.execute(self._sql(LATEST_LIVE_PAGE), (tablet, after_id, limit))
        return [(as_bytes(r[0]), r[1], r[2], as_bytes(r[3])) for r in self._cur.fetchall()]

    def add_index_entries(self, rows: Sequence[tuple[int, bytes, bytes]]) -> None:
        # Multi-row INSERTs: a batch's entries cost about half of one executed statement each.
        for start in range(0, len(rows), _ENTRIES_CHUNK):
            part = rows[start : start + _ENTRIES_CHUNK]
            sql = self._add_entries_sql.get(len(part))
            if sql is None:
                values = ", ".join(["(?, ?, ?)"] * len(part))
                sql = self._sql(f"INSERT INTO index_entries (index_id, key, id) VALUES {values} ON CONFLICT DO NOTHING")
                if len(self._add_entries_sql) < 8:
                    self._add_entries_sql[len(part)] = sql
            self._cur.execute(sql, [x for row in part for x in row])
        self.rows_written += len(rows)

    def remove_index_entries(self, rows: Sequence[tuple[int, bytes, bytes]]) -> None:
        if rows:
            self._cur.executemany(self._sql(REMOVE_INDEX_ENTRY), rows)

    def index_range(
        self, index_id: int, lower: bytes, upper: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        if upper is None:
            self._cur.execute(self._sql(INDEX_RANGE_OPEN), (index_id, lower, limit))
        else:
            self._cur.execute(self._sql(INDEX_RANGE), (index_id, lower, upper, limit))
        return [(as_bytes(k), as_bytes(i)) for k, i in self._cur.fetchall()]

    def index_ranges(
        self, index_id: int, ranges: Sequence[tuple[bytes, bytes | None]], limit: int
    ) -> list[list[tuple[bytes, bytes]]]:
        # One statement per chunk: the bounded ranges as a VALUES list joined to the index (one seek per
        # range), at most ``limit`` entries each by row_number(). Open ranges (an empty key) are rare: one
        # seek each.
        out: list[list[tuple[bytes, bytes]]] = [[] for _ in ranges]
        bounded: list[tuple[bytes, bytes, int]] = [
            (lower, upper, n) for n, (lower, upper) in enumerate(ranges) if upper is not None
        ]
        bounded.sort()  # in key order: neighbouring seeks land on the same B-tree pages
        for n, (lower, upper) in enumerate(ranges):
            if upper is None:
                out[n] = self.index_range(index_id, lower, None, limit)
        if len(bounded) > 1 and self._ranges_by_one_scan(index_id, bounded, limit, out):
            bounded = []
        for start in range(0, len(bounded), _RANGES_CHUNK):
            part = bounded[start : start + _RANGES_CHUNK]
            sql = self._ranges_sql.get(len(part))
            if sql is None:
                sql = self._sql(_index_ranges_sql(len(part)))
                if len(self._ranges_sql) < 8:
                    self._ranges_sql[len(part)] = sql
            params: list[Any] = [x for lower, upper, n in part for x in (n, lower, upper)]
            params += [index_id, limit]
            self._cur.execute(sql, params)
            for n, key, doc_id in self._cur.fetchall():
                out[n].append((as_bytes(key), as_bytes(doc_id)))
        for entries in out:
            entries.sort()
        return out

    def _ranges_by_one_scan(
        self,
        index_id: int,
        bounded: Sequence[tuple[bytes, bytes, int]],
        limit: int,
        out: list[list[tuple[bytes, bytes]]],
    ) -> bool:
        """The entries of disjoint sorted ranges from one scan of the span they cover, when that span holds
        few other entries (a batch of new or contiguous keys: one seek instead of one per range).

        False, with ``out`` untouched, when the ranges overlap or the scan meets more than ``_SCAN_SLACK``
        entries it does not keep (keys spread over a filled index, e.g. random ones): it stops there, so
        the per-range lookup that follows costs little more than it would alone."""
        for (_, upper, _), (lower, _, _) in zip(bounded, bounded[1:]):  # noqa: B905 - one shorter
            if upper > lower:
                return False  # a repeated key or a key that is a prefix of another: per-range seeks
        cap = limit * len(bounded) + _SCAN_SLACK + 1
        self._cur.execute(self._sql(INDEX_RANGE), (index_id, bounded[0][0], bounded[-1][1], cap))
        kept: list[tuple[int, bytes, bytes]] = []
        taken = [0] * len(bounded)
        strays = 0
        i = 0
        last = len(bounded)
        for raw_key, doc_id in self._cur:  # stepped lazily, both in key order: a merge
            key = as_bytes(raw_key)
            while i < last and key >= bounded[i][1]:
                i += 1
            if i < last and key >= bounded[i][0] and taken[i] < limit:
                taken[i] += 1
                kept.append((bounded[i][2], key, as_bytes(doc_id)))
                continue
            strays += 1
            if strays > _SCAN_SLACK:
                return False
        for n, key, doc_id in kept:
            out[n].append((key, doc_id))
        return True

    def clear_index(self, index_id: int) -> None:
        self._cur.execute(self._sql("DELETE FROM index_entries WHERE index_id = ?"), (index_id,))

    def add_shape_counts(self, tablet: int, deltas: Iterable[tuple[str, str, int]]) -> None:
        rows = [(tablet, path_to_db(p), t, n) for p, t, n in deltas if n]
        if rows:
            self._cur.executemany(self._sql(ADD_SHAPE_COUNT), rows)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self._cur.execute(self._sql(sql), tuple(params))
        if self._cur.description is None:
            return []
        return self._cur.fetchall()


def as_bytes(value: Any) -> Any:
    """A BLOB/bytea column value as bytes."""
    # psycopg returns bytea as bytes already; sqlite3 returns bytes for BLOB. memoryview only
    # appears with some adapters, so normalise defensively.
    return bytes(value) if isinstance(value, memoryview) else value


class SqlPersistence(Persistence):
    """Reader-side queries shared by both dialects; subclasses provide connections."""

    def _sql(self, sql: str) -> str:
        return sql

    @abc.abstractmethod
    def _reader(self) -> contextlib.AbstractContextManager[Any]:
        """A cursor on a reader connection (one per thread for SQLite, pooled for PostgreSQL)."""

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._reader() as cur:
            cur.execute(self._sql(sql), tuple(params))
            return cur.fetchall()

    def snapshot_page(self, tablet: int, snapshot_ts: int, after_id: bytes, limit: int) -> list[SnapshotRow]:
        with self._reader() as cur:
            cur.execute(self._sql(SNAPSHOT_PAGE), (tablet, after_id, snapshot_ts, snapshot_ts, limit))
            return cur.fetchall()

    def log_page(self, after_ts: int, up_to_ts: int, limit: int) -> list[LogRow]:
        with self._reader() as cur:
            cur.execute(self._sql(LOG_PAGE), (after_ts, up_to_ts, limit))
            return cur.fetchall()

    def log_rest_of_ts(self, ts: int, after_seq: int) -> list[LogRow]:
        with self._reader() as cur:
            cur.execute(self._sql(LOG_REST_OF_TS), (ts, after_seq))
            return cur.fetchall()

    def revision_at(self, tablet: int, doc_id: bytes, snapshot_ts: int) -> tuple[int, int, bytes] | None:
        with self._reader() as cur:
            cur.execute(self._sql(REVISION_AT), (tablet, doc_id, snapshot_ts, snapshot_ts))
            row = cur.fetchone()
            return None if row is None else (row[0], row[1], as_bytes(row[2]))

    def prune(self, cutoff_ts: int, batch: int) -> int:
        """Two passes, each bounded by ``batch``: superseded revisions, then old tombstones (whose
        older revisions were superseded by them and so are gone with the first pass)."""
        with self.write_transaction() as session:
            superseded = session.execute(
                "SELECT seq FROM revisions WHERE next_ts IS NOT NULL AND next_ts < ? LIMIT ?",
                (cutoff_ts, batch),
            )
            tombstones = session.execute(
                "SELECT seq, tablet, id, ts FROM revisions WHERE deleted = 1 AND ts < ? LIMIT ?",
                (cutoff_ts, batch),
            )
            self._delete_seqs(session, superseded)
            # A tombstone can go only once nothing older of that document is left.
            gone = [
                (seq,)
                for seq, tablet, doc_id, ts in tombstones
                if not session.execute(
                    "SELECT 1 FROM revisions WHERE tablet = ? AND id = ? AND ts < ? LIMIT 1",
                    (tablet, doc_id, ts),
                )
            ]
            self._delete_seqs(session, gone)
        return len(superseded) + len(gone)

    def _delete_seqs(self, session: WriteSession, seqs: list[tuple]) -> None:
        for (seq,) in seqs:
            session.execute("DELETE FROM revisions WHERE seq = ?", (seq,))

    def drop_tablet_rows(self, tablet: int, batch: int) -> int:
        with self.write_transaction() as session:
            rows = session.execute("SELECT seq FROM revisions WHERE tablet = ? LIMIT ?", (tablet, batch))
            self._delete_seqs(session, rows)
            return len(rows)
