"""Storage engine under concurrency: one writer moving balances between documents of two tables (the sum
is invariant), snapshot readers and a change-log follower running at the same time. Every snapshot must be
transaction-consistent and the log must never show part of a transaction."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from connectors.backend.engine import Deployment
from tests.unit.backend._util import live_docs, snapshot_pages

TABLES = ("acc_a", "acc_b")
PER_TABLE = 15
START_BALANCE = 100
TOTAL = len(TABLES) * PER_TABLE * START_BALANCE
DURATION_S = 1.5


def _run(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def body() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def test_snapshots_and_change_log_see_whole_transactions(deployment: Deployment) -> None:
    dep = deployment
    with dep.transaction() as tx:
        for table in TABLES:
            tx.create_table(table)
            for i in range(PER_TABLE):
                tx.insert(table, {"balance": START_BALANCE, "n": i})
    start = dep.read_timestamp()
    initial = {doc_id: doc["balance"] for table in TABLES for doc_id, doc in live_docs(dep, table).items()}
    assert sum(initial.values()) == TOTAL

    stop = threading.Event()
    errors: list[BaseException] = []
    written: dict[int, set[str]] = {}  # commit ts -> ids written by that transaction
    stats = {"snapshots": 0, "pages": 0, "log_pages": 0}

    def writer() -> None:
        rng = random.Random(1)
        live = {t: list(live_docs(dep, t)) for t in TABLES}
        while not stop.is_set():
            with dep.transaction() as tx:
                touched: set[str] = set()
                kind = rng.random()
                src_t, dst_t = rng.sample(TABLES, 2)  # always across the two tables
                src = rng.choice(live[src_t])
                dst = rng.choice(live[dst_t])
                amount = rng.randrange(1, 20)
                src_balance = tx.get(src)["balance"]
                if kind < 0.1 and len(live[src_t]) > 3:
                    # Delete the source and hand its whole balance over.
                    tx.patch(dst, {"balance": tx.get(dst)["balance"] + src_balance})
                    tx.delete(src)
                    live[src_t].remove(src)
                    touched |= {src, dst}
                elif kind < 0.2:
                    # Open a new account funded by the source.
                    new = tx.insert(dst_t, {"balance": amount, "n": -1})
                    tx.patch(src, {"balance": src_balance - amount})
                    live[dst_t].append(new)
                    touched |= {src, new}
                else:
                    # Move money in two steps; the same document may be written twice.
                    tx.patch(src, {"balance": src_balance - amount})
                    tx.patch(dst, {"balance": tx.get(dst)["balance"] + amount})
                    if kind < 0.4:
                        tx.patch(src, {"balance": tx.get(src)["balance"] - 1})
                        tx.replace(dst, {**tx.get(dst), "balance": tx.get(dst)["balance"] + 1})
                    touched |= {src, dst}
                ts = tx.ts
            written[ts] = touched
            time.sleep(0)

    def snapshot_reader() -> None:
        rng = random.Random(threading.get_ident())
        while not stop.is_set():
            snap = dep.read_timestamp()
            if rng.random() < 0.5:
                total = sum(
                    doc.value()["balance"]
                    for table in TABLES
                    for doc in dep.iter_snapshot(dep.table(table), snap, page_size=rng.randrange(1, 9))
                )
                stats["snapshots"] += 1
            else:
                vals, got_snap = snapshot_pages(dep, snapshot=snap, limit=rng.randrange(2, 12))
                assert got_snap == snap
                assert all(v["_ts"] <= snap for v in vals)
                total = sum(int(v["balance"]) for v in vals)  # json format: Int64 as a string
                stats["pages"] += 1
            assert total == TOTAL, f"snapshot {snap} is not transaction-consistent: {total}"

    replica = dict(initial)
    seen: dict[int, set[str]] = {}

    def follow(cursor: int, rng: random.Random) -> tuple[int, bool]:
        page = dep.read_changes(cursor, rng.randrange(1, 6))
        last_ts = cursor
        for ch in page.changes:
            assert ch.ts > cursor and ch.ts >= last_ts, "timestamps go backwards"
            last_ts = ch.ts
            seen.setdefault(ch.ts, set()).add(ch.id)
            if ch.deleted:
                replica.pop(ch.id, None)
            else:
                replica[ch.id] = ch.value()["balance"]
        if page.has_more:
            assert page.cursor == last_ts
        assert page.cursor >= cursor
        # A page ends on a transaction boundary: the replica is consistent after every page.
        assert sum(replica.values()) == TOTAL, f"page after {cursor} holds part of a transaction"
        stats["log_pages"] += 1
        return page.cursor, page.has_more

    log_cursor = [start]

    def log_reader() -> None:
        rng = random.Random(5)
        while not stop.is_set():
            log_cursor[0] = follow(log_cursor[0], rng)[0]

    threads = [_run(writer, errors), _run(log_reader, errors)]
    threads += [_run(snapshot_reader, errors) for _ in range(2)]
    deadline = time.monotonic() + DURATION_S
    while time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]

    # Catch up with the log: every transaction is seen whole, with one row per written document.
    rng = random.Random(9)
    more = True
    while more:
        log_cursor[0], more = follow(log_cursor[0], rng)
    assert log_cursor[0] >= dep.last_commit_ts
    assert len(written) > 10, written
    assert seen == written
    final: dict[str, Any] = {
        doc_id: doc["balance"] for table in TABLES for doc_id, doc in live_docs(dep, table).items()
    }
    assert replica == final
    assert stats["snapshots"] + stats["pages"] > 5 and stats["log_pages"] > 5, stats
    for table in TABLES:
        assert dep.document_count(table) == len(live_docs(dep, table))
