"""Storage engine: index queries in Convex order, and index backfill on populated tables while writes
continue. Every result is compared with a brute-force scan of the live documents."""

from __future__ import annotations

import math
import random
import threading
import time

import pytest

from connectors import ids, values
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.errors import BadRequestError, InvalidNameError
from tests.unit.backend._util import convex_sorted, live_docs

# Values of every type, in Convex order (MISSING = field absent sorts first).
ORDERED = [
    values.MISSING,
    None,
    -(2**63),
    -1,
    0,
    7,
    2**63 - 1,
    -math.inf,
    -1.5,
    -0.0,
    0.0,
    2.5,
    math.inf,
    math.nan,
    False,
    True,
    "",
    "A",
    "a",
    "ab",
    "b",
    "\u00e9",
    b"",
    b"\x00",
    b"\x01",
    [],
    [0],
    [0, 1],
    [1],
    {},
    {"a": 1},
    {"b": 0},
]


def _with(field: str, value: object, extra: dict | None = None) -> dict:
    doc = dict(extra or {})
    if value is not values.MISSING:
        doc[field] = value
    return doc


def _same(a: object, b: object) -> bool:
    return values.compare_values(a, b) == 0  # NaN == NaN and -0.0 != 0.0, as in the index


def _encoded(doc: dict) -> bytes:
    return values.encode_document(doc).body  # compares NaN and -0.0 exactly


def expected_entries(docs: dict[str, dict], paths: list[tuple[str, ...]]) -> list[tuple[list, bytes]]:
    """Brute force: ``(index values incl. _creationTime, internal id)`` of every live doc, sorted."""
    items = []
    for doc_id, doc in docs.items():
        key = [values.get_path(doc, p) for p in paths] + [doc["_creationTime"]]
        items.append((key, ids.decode_id(doc_id)[1]))
    return convex_sorted(items)


def check_index(dep: Deployment, table: str, index: str, paths: list[tuple[str, ...]]) -> int:
    """Every equality prefix and `less_than` range of the index returns exactly the matching docs."""
    docs = live_docs(dep, table)
    entries = expected_entries(docs, paths)
    number = dep.table(table).table_number

    def ids_of(items: list[tuple[list, bytes]]) -> list[str]:
        return [ids.encode_id(number, internal) for _, internal in items]

    checks: list[tuple[list, dict, list[str]]] = []  # (equal, less_than/limit, expected ids)
    first_values = list({repr(k[0]): k[0] for k, _ in entries}.values()) + ["not-there", 123456]
    # Range queries read many rows: check every boundary on small tables, a spread of them on big ones.
    step = max(1, len(first_values) // 10) if len(entries) > 200 else 1
    for n, v in enumerate(first_values):
        want = [e for e in entries if _same(e[0][0], v)]
        checks.append(([v], {}, ids_of(want)))
        if v is not values.MISSING and n % step == 0:  # (MISSING as less_than means "no upper bound")
            below = [e for e in entries if values.compare_values(e[0][0], v) < 0]
            checks.append(([], {"less_than": v}, ids_of(below)))
        if len(paths) > 1:
            seconds = {repr(e[0][1]): e[0][1] for e in want}
            for w in list(seconds.values())[:8]:
                eq2 = [e for e in want if _same(e[0][1], w)]
                checks.append(([v, w], {}, ids_of(eq2)))
                if w is not values.MISSING:
                    lt2 = [e for e in want if values.compare_values(e[0][1], w) < 0]
                    checks.append(([v], {"less_than": w}, ids_of(lt2)))
    if entries:
        checks.append(([], {"limit": 3}, ids_of(entries[:3])))
    pos = 0
    while pos < len(checks):
        # A transaction may read at most 32000 rows: spread the queries over several.
        with dep.transaction() as tx:
            while pos < len(checks) and tx.read_rows < 20_000:
                equal, kw, want_ids = checks[pos]
                assert [i for i, _ in tx.index_query(table, index, equal, **kw)] == want_ids, (equal, kw)
                pos += 1
    with dep.transaction() as tx:
        got = tx.index_query(table, index, [])
    assert [i for i, _ in got] == ids_of(entries)
    assert all(_encoded(doc) == _encoded(docs[i]) for i, doc in got)
    return len(entries)


def test_index_order_follows_convex_order(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        tx.add_index("t", "by_v", ["v"])
        shuffled = list(enumerate(ORDERED))
        random.Random(7).shuffle(shuffled)
        by_rank = {tx.insert("t", _with("v", v, {"rank": rank})): rank for rank, v in shuffled}
    with deployment.transaction() as tx:
        ranks = [doc["rank"] for _, doc in tx.index_query("t", "by_v", [])]
    assert ranks == list(range(len(ORDERED)))
    assert sorted(by_rank.values()) == ranks
    assert check_index(deployment, "t", "by_v", [("v",)]) == len(ORDERED)
    with deployment.transaction() as tx:
        # Documents without the field are found with an equality on MISSING.
        (missing,) = tx.index_query("t", "by_v", [values.MISSING])
        assert "v" not in missing[1]
        # less_than ranges: everything below a boundary, in order.
        below_float = [d["rank"] for _, d in tx.index_query("t", "by_v", [], less_than=-math.inf)]
        assert below_float == [0, 1, 2, 3, 4, 5, 6]  # missing, null, ints (int < float)
        below_str = [d["rank"] for _, d in tx.index_query("t", "by_v", [], less_than="")]
        assert below_str == list(range(ORDERED.index("")))  # ... floats, booleans


def test_compound_and_nested_index(deployment: Deployment) -> None:
    rng = random.Random(3)
    with deployment.transaction() as tx:
        tx.create_table("t")
        tx.add_index("t", "by_a_b", ["a", "n.b"])
        for i in range(120):
            doc = {"i": i, "n": {"b": rng.choice([1, 2, 2.0, "x", None, [1]])}}
            if i % 7:
                doc["a"] = rng.choice(["p", "q", 1, True])
            if i % 11 == 0:
                doc["n"] = "not an object"
            tx.insert("t", doc)
    assert [i.fields for i in deployment.indexes("t")] == [("a", "n.b", "_creationTime")]
    assert check_index(deployment, "t", "by_a_b", [("a",), ("n", "b")]) == 120


def test_index_errors(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
    for name in ("_system", "bad name", ""):
        with pytest.raises(InvalidNameError), deployment.transaction() as tx:
            tx.add_index("t", name, ["a"])
    for field in ("a..b", "", "a b", "1a"):
        with pytest.raises(InvalidNameError), deployment.transaction() as tx:
            tx.add_index("t", "ok", [field])
    with pytest.raises(InvalidNameError, match="16"), deployment.transaction() as tx:
        tx.add_index("t", "wide", [f"f{i}" for i in range(16)])
    with deployment.transaction() as tx:
        tx.add_index("t", "widest", [f"f{i}" for i in range(15)])
        with pytest.raises(BadRequestError, match="does not exist"):
            tx.index_query("t", "nope", [])
    with pytest.raises(BadRequestError, match="does not exist"), deployment.transaction() as tx:
        tx.drop_index("t", "nope")
    assert [i.name for i in deployment.indexes("t")] == ["widest"]


def test_add_identical_index_is_a_no_op_and_changed_fields_rebuild(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        first = tx.add_index("t", "by_a", ["a"])
        ids_ = [tx.insert("t", {"a": i % 3, "b": -i}) for i in range(10)]
    with deployment.transaction() as tx:
        assert tx.add_index("t", "by_a", ["a"]) == first
    with deployment.transaction() as tx:
        changed = tx.add_index("t", "by_a", ["b"])
    assert changed.index_id != first.index_id
    assert deployment.index("t", "by_a").fields == ("b", "_creationTime")
    assert deployment.index("t", "by_a").ready  # background=False: backfilled after the commit
    with deployment.transaction() as tx:
        assert [i for i, _ in tx.index_query("t", "by_a", [])] == list(reversed(ids_))
        tx.drop_index("t", "by_a")
    assert deployment.indexes("t") == []
    assert int(deployment.persistence.read("SELECT COUNT(*) FROM index_entries")[0][0]) == 0


def _populate(dep: Deployment, n: int, rng: random.Random) -> None:
    with dep.transaction() as tx:
        tx.create_table("t")
        for i in range(n):
            tx.insert("t", {"k": rng.randrange(40), "i": i, "s": "x" * rng.randrange(20)})


def _random_write(tx, rng: random.Random, doc_ids: list[str]) -> None:
    op = rng.random()
    if op < 0.3 or not doc_ids:
        doc_ids.append(tx.insert("t", {"k": rng.randrange(40), "i": -1}))
    elif op < 0.8:
        new_k = rng.choice([rng.randrange(40), rng.randrange(40), None, "s", 1.5, values.MISSING])
        tx.patch(rng.choice(doc_ids), {"k": new_k})
    else:
        tx.delete(doc_ids.pop(rng.randrange(len(doc_ids))))


def test_backfill_in_background_with_concurrent_writes(deployment_factory) -> None:
    rng = random.Random(11)
    dep = deployment_factory.open(DeploymentConfig(background=True, backfill_batch=100))
    _populate(dep, 2500, rng)
    doc_ids = list(live_docs(dep, "t"))
    with dep.transaction() as tx:
        idx = tx.add_index("t", "by_k", ["k"])
        assert idx.state == "backfilling"
        with pytest.raises(BadRequestError, match="backfilling") as err:
            tx.index_query("t", "by_k", [1])
        assert err.value.code == "IndexNotReady"
        # Writes in the transaction that created the index.
        for _ in range(20):
            _random_write(tx, rng, doc_ids)
    assert not dep.index("t", "by_k").ready
    writes = writes_during_backfill = 0
    deadline = time.monotonic() + 20
    while not dep.index("t", "by_k").ready or writes < 300:
        assert time.monotonic() < deadline, "backfill did not finish"
        backfilling = not dep.index("t", "by_k").ready
        with dep.transaction() as tx:
            for _ in range(5):
                _random_write(tx, rng, doc_ids)
                writes += 1
                writes_during_backfill += backfilling
    assert writes_during_backfill > 0
    assert dep.wait_for_index("t", "by_k", timeout_s=20)
    with dep.transaction() as tx:
        for _ in range(30):
            _random_write(tx, rng, doc_ids)
    assert check_index(dep, "t", "by_k", [("k",)]) == len(doc_ids)
    n_entries = int(dep.persistence.read("SELECT COUNT(*) FROM index_entries")[0][0])
    assert n_entries == len(doc_ids)  # no stale entries left behind


def test_backfill_synchronously(deployment_factory) -> None:
    rng = random.Random(5)
    dep = deployment_factory.open(DeploymentConfig(background=False, backfill_batch=100))
    _populate(dep, 1000, rng)
    with dep.transaction() as tx:
        tx.add_index("t", "by_k", ["k"])
        tx.add_index("t", "by_s_k", ["s", "k"])
        assert not tx.indexes("t")[0].ready
    # background=False: the backfill ran right after the commit.
    assert all(i.ready for i in dep.indexes("t"))
    assert dep.wait_for_index("t", "by_k", timeout_s=0)
    assert check_index(dep, "t", "by_k", [("k",)]) == 1000
    assert check_index(dep, "t", "by_s_k", [("s",), ("k",)]) == 1000
    # An index on an empty table is ready at once.
    with dep.transaction() as tx:
        tx.create_table("empty")
        assert tx.add_index("empty", "by_x", ["x"]).ready


def test_index_stays_ready_when_a_transaction_commits_while_backfill_finishes(deployment_factory) -> None:
    """Regression: the backfill used to mark the index ready in the in-memory catalog after releasing the
    writer lock, so a transaction that began in between (with the old catalog) put it back to
    "backfilling" when it committed. This test opens that window on purpose."""
    dep = deployment_factory.open(DeploymentConfig(background=False))
    with dep.transaction() as tx:
        tx.create_table("t")
        for i in range(10):
            tx.insert("t", {"k": i})
    hook_fired = threading.Event()
    writer_in_tx = threading.Event()
    errors: list[BaseException] = []

    class Cursors(dict):
        def pop(self, *args: object) -> object:
            # Called by the backfill when it has committed the last batch.
            hook_fired.set()
            writer_in_tx.wait(0.3)  # with the bug, the writer gets in here
            return super().pop(*args)

    dep._backfill_cursors = Cursors()

    def writer() -> None:
        try:
            assert hook_fired.wait(10)
            with dep.transaction() as tx:
                writer_in_tx.set()
                time.sleep(0.1)
                tx.insert("t", {"k": 100})
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    with dep.transaction() as tx:
        tx.add_index("t", "by_k", ["k"])
    thread.join(10)
    assert hook_fired.is_set() and not errors
    assert dep.index("t", "by_k").ready
    with dep.transaction() as tx:
        assert len(tx.index_query("t", "by_k", [])) == 11
    assert check_index(dep, "t", "by_k", [("k",)]) == 11


def test_backfill_of_a_deleted_table_stops(deployment_factory) -> None:
    dep = deployment_factory.open(DeploymentConfig(background=True, backfill_batch=10))
    _populate(dep, 500, random.Random(1))
    with dep.transaction() as tx:
        tx.add_index("t", "by_k", ["k"])
    with dep.transaction() as tx:
        tx.delete_table("t")
    assert dep.wait_for_index("t", "by_k", timeout_s=1) is False
    assert dep.index("t", "by_k") is None
    deadline = time.monotonic() + 5
    while int(dep.persistence.read("SELECT COUNT(*) FROM index_entries")[0][0]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with dep.transaction() as tx:
        tx.create_table("t")
        tx.add_index("t", "by_k", ["k"])
    assert dep.wait_for_index("t", "by_k", timeout_s=5)


def test_backfill_interrupted_by_close_resumes_after_reopen(deployment_factory) -> None:
    rng = random.Random(8)
    dep = deployment_factory.open(DeploymentConfig(background=True, backfill_batch=5))
    _populate(dep, 1500, rng)
    doc_ids = list(live_docs(dep, "t"))
    with dep.transaction() as tx:
        tx.add_index("t", "by_k", ["k"])
        for _ in range(50):
            _random_write(tx, rng, doc_ids)
    dep.close()  # in the middle of the backfill (300 batches)
    dep = deployment_factory.open(DeploymentConfig(background=False), location=deployment_factory.location)
    assert dep.index("t", "by_k").ready  # background=False: backfilled while opening
    assert check_index(dep, "t", "by_k", [("k",)]) == len(doc_ids)
    assert int(dep.persistence.read("SELECT COUNT(*) FROM index_entries")[0][0]) == len(doc_ids)
