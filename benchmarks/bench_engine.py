"""Engine benchmarks (in-process Python API) with raw sqlite3 baselines on the same rows.

python -m benchmarks.bench_engine <case> --work DIR --docs N
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import time
from pathlib import Path

from benchmarks.common import Result, emit, peak_rss_mb, standard_documents
from connectors import ids, values
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.backend.sqlite import DB_FILE, SCHEMA

TX_SIZE = 10_000
TABLE = "bench"


def _open(path: Path, db_url: str | None = None) -> Deployment:
    config = DeploymentConfig(background=False)
    if db_url:
        return Deployment.open(db_url=db_url, pg_schema="bench", config=config)
    return Deployment.open(data_dir=path, config=config)


def engine_insert(work: Path, n: int, db_url: str | None) -> Result:
    dep = _open(work / "engine", db_url)
    with dep.transaction() as tx:
        tx.create_table(TABLE)
    docs = standard_documents(n)
    elapsed = 0.0
    done = 0
    while done < n:
        chunk = list(itertools.islice(docs, TX_SIZE))  # generating the data is not timed
        t0 = time.perf_counter()
        with dep.transaction() as tx:
            for doc in chunk:
                tx.insert(TABLE, doc)
        elapsed += time.perf_counter() - t0
        done += len(chunk)
    dep.close()
    return Result(f"engine insert ({'postgres' if db_url else 'sqlite'})", n, elapsed, peak_rss_mb())


def raw_insert(work: Path, n: int) -> Result:
    """Baseline: executemany of the already-encoded rows into the same table and index layout."""
    path = work / "raw"
    path.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path / DB_FILE, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    docs = standard_documents(n)
    elapsed = 0.0
    done = 0
    ts = time.time_ns()
    while done < n:
        rows = []
        for doc in itertools.islice(docs, TX_SIZE):
            internal = ids.new_internal_id()
            doc = {"_id": ids.encode_id(10001, internal), "_creationTime": ts / 1e6, **doc}
            enc = values.encode_document(doc)
            rows.append((1, internal, ts, 0, enc.flags, enc.body))
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO revisions (tablet, id, ts, deleted, flags, body) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        conn.execute("COMMIT")
        elapsed += time.perf_counter() - t0
        done += len(rows)
        ts += 1
    conn.close()
    return Result("raw sqlite3 insert (baseline)", n, elapsed, peak_rss_mb())


def engine_list(work: Path, n: int, db_url: str | None, mode: str) -> Result:
    """mode: "pages" (raw page rows), "documents" (Document tuples), "decode" (Python values)."""
    dep = _open(work / "engine", db_url)
    table = dep.table(TABLE)
    start = time.perf_counter()
    count = 0
    if mode == "pages":
        for page in dep.iter_snapshot_pages(table):
            count += len(page.rows)
    elif mode == "documents":
        for _doc in dep.iter_snapshot(table):
            count += 1
    else:
        for doc in dep.iter_snapshot(table):
            doc.value()
            count += 1
    elapsed = time.perf_counter() - start
    dep.close()
    name = {
        "pages": "engine snapshot listing, pages",
        "documents": "engine snapshot listing, Document objects",
        "decode": "engine snapshot listing + decode to Python values",
    }[mode]
    return Result(f"{name} ({'postgres' if db_url else 'sqlite'})", count, elapsed, peak_rss_mb())


def raw_scan(work: Path) -> Result:
    """Baseline: one indexed scan of the same rows in id order."""
    conn = sqlite3.connect(work / "engine" / DB_FILE)
    start = time.perf_counter()
    count = 0
    for _row in conn.execute("SELECT id, body FROM revisions WHERE tablet = 1 ORDER BY id"):
        count += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return Result("raw sqlite3 indexed scan (baseline)", count, elapsed, peak_rss_mb())


def engine_changes(work: Path, n: int, db_url: str | None) -> Result:
    dep = _open(work / "engine", db_url)
    start = time.perf_counter()
    count = 0
    cursor = 0
    while True:
        page = dep.read_changes(cursor, 1024)
        count += len(page.changes)
        cursor = page.cursor
        if not page.has_more:
            break
    elapsed = time.perf_counter() - start
    dep.close()
    return Result(
        f"engine change-log reading ({'postgres' if db_url else 'sqlite'})", count, elapsed, peak_rss_mb()
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--db-url", default=None)
    a = ap.parse_args()
    if a.case == "insert":
        r = engine_insert(a.work, a.docs, a.db_url)
    elif a.case == "raw_insert":
        r = raw_insert(a.work, a.docs)
    elif a.case in ("list", "list_documents", "list_decode"):
        mode = {"list": "pages", "list_documents": "documents", "list_decode": "decode"}[a.case]
        r = engine_list(a.work, a.docs, a.db_url, mode)
    elif a.case == "raw_scan":
        r = raw_scan(a.work)
    elif a.case == "changes":
        r = engine_changes(a.work, a.docs, a.db_url)
    else:
        raise SystemExit(f"unknown case {a.case}")
    emit(r)


if __name__ == "__main__":
    main()
