"""Storage engine: CRUD in transactions, typed errors, rollback, timestamps, MVCC reads and the change log.

Every test runs on real SQLite and real PostgreSQL (the ``deployment``/``deployment_factory`` fixtures).
"""

from __future__ import annotations

import math
import threading
import time

import orjson
import pytest

from connectors import ids, values
from connectors.backend import export
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.errors import (
    BadRequestError,
    DocumentNotFoundError,
    InvalidIdError,
    InvalidNameError,
    InvalidValueError,
    TableNotFoundError,
    TransactionLimitError,
)
from connectors.selection import Selection
from connectors.values import ValueFormat
from tests.unit.backend._util import all_changes, count_rows, live_docs, snapshot_pages

# --- CRUD -----------------------------------------------------------------------------------------


def test_insert_get_patch_replace_delete(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        info = tx.create_table("users")
        a = tx.insert("users", {"name": "Ada", "age": 42, "tags": ["x", "y"], "nested": {"k": 1.5}})
        b = tx.insert("users", {"name": "Bob"})
        ts1 = tx.ts
    assert info.table_number == 10001
    assert ids.decode_id(a)[0] == ids.decode_id(b)[0] == 10001
    assert a != b

    with deployment.transaction() as tx:
        doc = tx.get(a)
        assert doc == {
            "_id": a,
            "_creationTime": ts1 / 1_000_000,
            "name": "Ada",
            "age": 42,
            "tags": ["x", "y"],
            "nested": {"k": 1.5},
        }
        assert type(doc["age"]) is int and type(doc["_creationTime"]) is float
        patched = tx.patch(a, {"name": "Ada L.", "tags": values.MISSING, "extra": None})
        assert "tags" not in patched and patched["extra"] is None and patched["name"] == "Ada L."
        # Removing a field that is not there is a no-op.
        tx.patch(b, {"nope": values.MISSING})
    with deployment.transaction() as tx:
        assert tx.get(a) == patched
        # Replace keeps the system fields and drops everything else.
        tx.replace(a, {"only": True})
        assert tx.get(a) == {"_id": a, "_creationTime": ts1 / 1_000_000, "only": True}
        tx.delete(b)
        assert tx.get(b) is None
    assert live_docs(deployment, "users") == {a: {"_id": a, "_creationTime": ts1 / 1_000_000, "only": True}}
    assert deployment.document_count("users") == 1


def test_value_round_trip_through_storage(deployment: Deployment) -> None:
    doc = {
        "null": None,
        "t": True,
        "f": False,
        "int_max": values.INT64_MAX,
        "int_min": values.INT64_MIN,
        "zero": 0,
        "float": 1.5,
        "float_int": 3.0,
        "negzero": -0.0,
        "inf": math.inf,
        "ninf": -math.inf,
        "nan": math.nan,
        "str": "héllo \u2019 \U0001f600 \x00 end",
        "empty": "",
        "bytes": b"\x00\xff\x10",
        "empty_bytes": b"",
        "arr": [1, 1.0, None, [b"x", {"deep": [math.inf]}], {}],
        "obj": {"a": {"b": {"c": -1}}, "with space": "ok"},
    }
    with deployment.transaction() as tx:
        tx.create_table("vals")
        doc_id = tx.insert("vals", doc)
    stored = live_docs(deployment, "vals")[doc_id]
    for key, value in doc.items():
        got = stored[key]
        if key == "nan":
            assert isinstance(got, float) and math.isnan(got)
        elif key == "negzero":
            assert got == 0.0 and math.copysign(1.0, got) < 0
        else:
            assert got == value and type(got) is type(value), key
    assert type(stored["float_int"]) is float and type(stored["arr"][0]) is int
    # Exported as convex_encoded_json: Int64 as $integer, special floats as $float, bytes as $bytes.
    page = export.list_snapshot(
        deployment, snapshot=None, cursor=None, fmt=ValueFormat.ENCODED, selection=Selection.everything()
    )
    (exported,) = orjson.loads(page.to_json())["values"]
    assert exported["int_max"] == {"$integer": "/////////38="}
    assert exported["negzero"] == {"$float": "AAAAAAAAAIA="}
    assert exported["bytes"] == {"$bytes": "AP8Q"}
    assert exported["float"] == 1.5


def test_read_your_writes_inside_a_transaction(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        tx.add_index("t", "by_n", ["n"])
        a = tx.insert("t", {"n": 1})
        assert tx.get(a)["n"] == 1
        # The same document written several times in one transaction.
        tx.patch(a, {"n": 2})
        tx.patch(a, {"m": "x"})
        assert tx.get(a) == {"_id": a, "_creationTime": tx.ts / 1_000_000, "n": 2, "m": "x"}
        # An index query flushes buffered writes; later writes to flushed documents still work.
        assert [i for i, _ in tx.index_query("t", "by_n", [2])] == [a]
        tx.patch(a, {"n": 3})
        assert tx.index_query("t", "by_n", [2]) == []
        assert [d["n"] for _, d in tx.index_query("t", "by_n", [3])] == [3]
        b = tx.insert("t", {"n": 3})
        assert [i for i, _ in tx.index_query("t", "by_n", [3])] == sorted(
            [a, b], key=lambda i: ids.decode_id(i)[1]
        )
        tx.delete(b)
        assert tx.get(b) is None
        assert [i for i, _ in tx.index_query("t", "by_n", [3])] == [a]
        # Deleted and inserted again in one transaction (with its old id).
        old_b = {"_id": b, "_creationTime": tx.ts / 1_000_000, "n": 4}
        tx.insert_with_id("t", old_b)
        assert tx.get(b) == old_b
        c = tx.insert("t", {"n": 9})
        tx.delete(c)
        ts = tx.ts
    assert live_docs(deployment, "t") == {
        a: {"_id": a, "_creationTime": ts / 1_000_000, "n": 3, "m": "x"},
        b: old_b,
    }
    with deployment.transaction() as tx:
        assert [i for i, _ in tx.index_query("t", "by_n", [3])] == [a]
        assert [i for i, _ in tx.index_query("t", "by_n", [4])] == [b]
        assert tx.index_query("t", "by_n", [9]) == []
    # One log row per document written, all at the transaction's timestamp, with the final state.
    changes, _ = all_changes(deployment, 0)
    assert {(ch.id, ch.ts, ch.deleted) for ch in changes} == {(a, ts, False), (b, ts, False), (c, ts, True)}
    assert deployment.document_count("t") == 2


def test_rollback_on_exception_leaves_nothing(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("keep")
        kept = tx.insert("keep", {"k": 1})
        tx.add_index("keep", "by_k", ["k"])
    before = {
        name: count_rows(deployment, name)
        for name in ("revisions", "tablets", "indexes", "index_entries", "shape_counts", "components")
    }
    shape_before = deployment.table_shape("keep").json_schema("keep", "json")
    read_ts = deployment.read_timestamp()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), deployment.transaction() as tx:
        tx.create_table("new_table")
        tx.create_table("other", component="comp")
        tx.insert("new_table", {"x": 1})
        tx.insert("keep", {"k": 2, "new_field": "s"})
        tx.patch(kept, {"k": 3})
        tx.add_index("new_table", "by_x", ["x"])
        tx.add_index("keep", "by_new", ["new_field"])
        tx.index_query("keep", "by_k", [3])  # forces a flush to the database first
        tx.delete(kept)
        raise Boom

    assert deployment.find_table("new_table") is None
    assert deployment.find_table("other", "comp") is None
    assert [t.name for t in deployment.tables()] == ["keep"]
    assert deployment.components() == [""]
    assert [i.name for i in deployment.indexes("keep")] == ["by_k"]
    assert live_docs(deployment, "keep") == {kept: live_docs(deployment, "keep")[kept]}
    assert live_docs(deployment, "keep")[kept]["k"] == 1
    after = {name: count_rows(deployment, name) for name in before}
    assert after == before
    assert deployment.table_shape("keep").json_schema("keep", "json") == shape_before
    assert all_changes(deployment, read_ts)[0] == []
    # The engine is still usable, and the table name is free again.
    with deployment.transaction() as tx:
        tx.create_table("new_table")
        assert [i for i, _ in tx.index_query("keep", "by_k", [1])] == [kept]


# --- typed errors -------------------------------------------------------------------------------------


def test_invalid_values_name_the_path(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
    cases = [
        ({"a": {"b": [1, {"c": object()}]}}, ".a.b[1].c"),
        ({"n": 2**63}, ".n"),
        ({"list": [0, [1, -(2**63) - 1]]}, ".list[1][1]"),
        ({"o": {"$bad": 1}}, ".o"),
        ({"_system": 1}, ""),
        ({"s": {"x": "\ud800"}}, ".s.x"),
        (
            {
                "deep": {
                    "a": {
                        "a": {
                            "a": {
                                "a": {
                                    "a": {
                                        "a": {
                                            "a": {
                                                "a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": 1}}}}}}}}
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
            ".deep",
        ),  # noqa: E501
    ]
    for doc, path in cases:
        with pytest.raises(InvalidValueError) as err, deployment.transaction() as tx:
            tx.insert("t", doc)
        assert path in err.value.message, (doc, err.value.message)
        assert err.value.code == "InvalidValue"
    # The same checks apply to patches and replaces.
    with deployment.transaction() as tx:
        doc_id = tx.insert("t", {"ok": 1})
    with pytest.raises(InvalidValueError, match=r"\.bad\[0\]"), deployment.transaction() as tx:
        tx.patch(doc_id, {"bad": [{1, 2}]})
    with pytest.raises(InvalidValueError, match=r"\.x"), deployment.transaction() as tx:
        tx.replace(doc_id, {"x": 2**64})
    assert deployment.document_count("t") == 1


def test_oversized_document(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        tx.insert("t", {"s": "x" * (values.MAX_DOCUMENT_SIZE - 200)})
    with pytest.raises(InvalidValueError, match="too large") as err, deployment.transaction() as tx:
        tx.insert("t", {"s": "x" * values.MAX_DOCUMENT_SIZE})
    assert err.value.status == 400
    assert deployment.document_count("t") == 1


@pytest.mark.parametrize("name", ["", "bad name", "1abc", "_system", "a" * 65, "naïve", "___", "a-b"])
def test_invalid_table_names(deployment: Deployment, name: str) -> None:
    with pytest.raises(InvalidNameError), deployment.transaction() as tx:
        tx.create_table(name)
    assert deployment.tables() == []


def test_write_to_missing_table_and_missing_documents(deployment: Deployment) -> None:
    with pytest.raises(TableNotFoundError) as err, deployment.transaction() as tx:
        tx.insert("nope", {"a": 1})
    assert err.value.code == "TableNotFound" and '"nope"' in err.value.message
    with deployment.transaction() as tx:
        tx.create_table("t")
        live = tx.insert("t", {"a": 1})
        gone = tx.insert("t", {"a": 2})
    with deployment.transaction() as tx:
        tx.delete(gone)
    number, _ = ids.decode_id(live)
    never = ids.new_id(number)
    other_table = ids.new_id(number + 5)
    for missing in (gone, never, other_table):
        for op in ("patch", "replace", "delete"):
            with pytest.raises(DocumentNotFoundError) as nf, deployment.transaction() as tx:
                if op == "delete":
                    tx.delete(missing)
                else:
                    getattr(tx, op)(missing, {"a": 3})
            assert nf.value.document_id == missing and missing in nf.value.message
        with deployment.transaction() as tx:
            assert tx.get(missing) is None
        assert deployment.get_at(missing, deployment.read_timestamp()) is None
    # A document id in a component is not found from the root component.
    with pytest.raises(DocumentNotFoundError), deployment.transaction() as tx:
        tx.delete(live, component="comp")


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "J57000820C20A1G7104GM2RC1M70YNR8",  # upper case
        "j57000820c20a1g7104gm2rc1m70ynr0",  # footer mismatch
        "0400000000000000000000000000249",  # non-zero padding bits: not canonical
        "mz1xn7tymdnktmmzqy5xxhn7tjs2nkkfmtjjr",  # table number does not fit in u32
        "j57000820c20a1g7104gm2rc1m70ynri",  # not in the alphabet
        "j57000820c20a1g7104gm2rc1m70ynr8a",  # 33 characters
    ],
)
def test_malformed_ids(deployment: Deployment, bad: str) -> None:
    assert ids.decode_id("0400000000000000000000000000248") == (1, bytes(16))
    with deployment.transaction() as tx:
        tx.create_table("t")
    for op in ("get", "patch", "replace", "delete"):
        with pytest.raises(InvalidIdError) as err, deployment.transaction() as tx:
            if op in ("get", "delete"):
                getattr(tx, op)(bad)
            else:
                getattr(tx, op)(bad, {"a": 1})
        assert err.value.code == "InvalidId"
    with pytest.raises(InvalidIdError):
        deployment.get_at(bad, deployment.read_timestamp())


def test_system_fields_cannot_be_set(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        doc_id = tx.insert("t", {"a": 1})
    other = ids.new_id(10001)
    for field in ("_id", "_creationTime"):
        value = other if field == "_id" else 1.0
        with pytest.raises(InvalidValueError, match=field) as err, deployment.transaction() as tx:
            tx.insert("t", {field: value, "a": 1})
        assert err.value.path == f".{field}"
        with pytest.raises(InvalidValueError, match=field), deployment.transaction() as tx:
            tx.patch(doc_id, {field: value})
        with pytest.raises(InvalidValueError, match=field), deployment.transaction() as tx:
            tx.replace(doc_id, {field: value})
    with deployment.transaction() as tx:
        # Passing the unchanged system fields back is allowed.
        current = tx.get(doc_id)
        tx.patch(doc_id, {"_id": doc_id, "_creationTime": current["_creationTime"], "a": 2})
        tx.replace(doc_id, {**current, "a": 3})
        assert tx.get(doc_id)["a"] == 3
    with pytest.raises(BadRequestError, match="already exists"), deployment.transaction() as tx:
        tx.insert_with_id("t", current)
    with pytest.raises(BadRequestError, match="already exists"), deployment.transaction() as tx:
        tx.create_table("t")
    assert deployment.document_count("t") == 1


# --- timestamps --------------------------------------------------------------------------------------


def test_commit_timestamps(deployment: Deployment) -> None:
    seen = [deployment.read_timestamp()]
    commit_ts = []
    with deployment.transaction() as tx:
        tx.create_table("t")
        tx.create_table("u")
    for i in range(20):
        with deployment.transaction() as tx:
            tx.insert("t", {"i": i})
            tx.insert("u", {"i": i})
            tx.insert("t", {"i": -i})
            commit_ts.append(tx.ts)
        assert deployment.last_commit_ts == tx.ts
        seen.append(deployment.read_timestamp())
        assert seen[-1] >= tx.ts
    assert commit_ts == sorted(set(commit_ts))  # strictly increasing
    assert seen == sorted(seen)  # never backwards
    changes, _ = all_changes(deployment, seen[0])
    by_ts: dict[int, int] = {}
    for ch in changes:
        by_ts[ch.ts] = by_ts.get(ch.ts, 0) + 1
    assert by_ts == dict.fromkeys(commit_ts, 3)  # all writes of a transaction share its ts
    values_ = snapshot_pages(deployment)[0]
    assert {v["_ts"] for v in values_} == set(commit_ts)
    assert all(v["_creationTime"] == v["_ts"] / 1_000_000 for v in values_)


def test_read_timestamp_with_a_frozen_clock(deployment_factory) -> None:
    """Even when the wall clock stands still (or runs behind), commits get ts above any handed-out ts."""
    frozen = 1_700_000_000_000_000_000
    dep = deployment_factory.open(DeploymentConfig(background=False, clock_ns=lambda: frozen))
    t0 = dep.read_timestamp()
    assert t0 == frozen
    with dep.transaction() as tx:
        tx.create_table("t")
        assert tx.ts > t0
    last = tx.ts
    for _ in range(5):
        handed = dep.read_timestamp()
        assert handed >= last
        with dep.transaction() as tx:
            tx.insert("t", {})
            assert tx.ts > handed
        last = tx.ts
        page = dep.read_changes(handed)
        assert [c.ts for c in page.changes] == [last]
        assert page.cursor == dep.read_timestamp() == last and not page.has_more


def test_cursor_invariant_with_a_transaction_in_flight(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
    started = threading.Event()
    release = threading.Event()
    result: dict[str, int] = {}

    def writer() -> None:
        with deployment.transaction() as tx:
            tx.insert("t", {"a": 1})
            tx.insert("t", {"a": 2})
            result["ts"] = tx.ts
            started.set()
            assert release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert started.wait(10)
        handed = [deployment.read_timestamp() for _ in range(5)]
        # While the transaction is open, every handed-out ts is below its commit ts...
        assert all(h < result["ts"] for h in handed)
        # ... and reading the log up to such a cursor does not see it.
        page = deployment.read_changes(handed[0])
        assert page.changes == [] and page.cursor < result["ts"]
    finally:
        release.set()
        thread.join(10)
    # After the commit, reading after the handed-out ts returns the whole transaction.
    changes, cursor = all_changes(deployment, handed[-1])
    assert [c.ts for c in changes] == [result["ts"], result["ts"]]
    assert cursor >= result["ts"]
    assert deployment.read_timestamp() >= result["ts"]


# --- MVCC ----------------------------------------------------------------------------------------------


def test_reads_at_old_snapshots(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
    s0 = deployment.read_timestamp()
    with deployment.transaction() as tx:
        a = tx.insert("t", {"v": "a1"})
        b = tx.insert("t", {"v": "b1"})
        c = tx.insert("t", {"v": "c1"})
    s1 = deployment.read_timestamp()
    with deployment.transaction() as tx:
        tx.patch(a, {"v": "a2"})
        tx.delete(b)
    s2 = deployment.read_timestamp()
    with deployment.transaction() as tx:
        b_doc = {"_id": b, "_creationTime": 1.0, "v": "b3"}
        tx.insert_with_id("t", b_doc)  # re-inserted with its old id
        tx.replace(c, {"v": "c3"})
        d = tx.insert("t", {"v": "d3"})
    s3 = deployment.read_timestamp()
    with deployment.transaction() as tx:
        tx.delete(a)
        tx.delete(d)
    s4 = deployment.read_timestamp()

    def state(ts: int) -> dict[str, str]:
        return {i: doc["v"] for i, doc in live_docs(deployment, "t", ts).items()}

    expected = {
        s0: {},
        s1: {a: "a1", b: "b1", c: "c1"},
        s2: {a: "a2", c: "c1"},
        s3: {a: "a2", b: "b3", c: "c3", d: "d3"},
        s4: {b: "b3", c: "c3"},
    }
    for ts, want in expected.items():
        assert state(ts) == want, ts
        for doc_id in (a, b, c, d):
            got = deployment.get_at(doc_id, ts)
            assert (None if got is None else got.value()["v"]) == want.get(doc_id)
            if got is not None:
                assert got.ts <= ts and got.id == doc_id
    # The list_snapshot pages at an old snapshot show the old state, with the revision's _ts.
    for limit in (1, 2, None):
        vals, snap = snapshot_pages(deployment, snapshot=s2, limit=limit)
        assert snap == s2
        assert {v["_id"]: v["v"] for v in vals} == expected[s2]
        assert all(v["_ts"] <= s2 and v["_table"] == "t" and v["_component"] == "" for v in vals)
        assert [v["_id"] for v in vals] == sorted(expected[s2], key=lambda i: ids.decode_id(i)[1])
    assert {v["_id"]: v["_ts"] for v in snapshot_pages(deployment, snapshot=s3)[0]}[a] < s2


def test_list_snapshot_paging_across_tables_and_components(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("a")
        tx.create_table("empty")
        tx.create_table("b", component="comp/sub")
        tx.create_table("c")
        created: dict[str, list[str]] = {}
        for name, comp in (("a", ""), ("b", "comp/sub"), ("c", "")):
            created[name] = [tx.insert(name, {"n": i}, component=comp) for i in range(5)]
    snap = deployment.read_timestamp()
    with deployment.transaction() as tx:
        tx.insert("a", {"n": 99})  # after the snapshot: never listed
        tx.create_table("late")
        tx.insert("late", {})
    cursor = None
    pages = []
    while True:
        page = export.list_snapshot(
            deployment,
            snapshot=snap,
            cursor=cursor,
            fmt=ValueFormat.JSON,
            selection=Selection.everything(),
            limit=2,
        )
        body = orjson.loads(page.to_json())
        pages.append(body)
        assert body["snapshot"] == snap
        assert len({(v["_component"], v["_table"]) for v in body["values"]}) <= 1  # never spans two tables
        if not body["hasMore"]:
            break
        cursor = body["cursor"]
    listed = [(v["_component"], v["_table"], v["_id"]) for p in pages for v in p["values"]]
    assert len(listed) == len(set(listed)) == 15
    assert any(p["values"] == [] and p["hasMore"] for p in pages)  # the empty table's page
    tables = [(t, c) for c, t, _ in listed]
    assert [k for i, k in enumerate(tables) if i == 0 or tables[i - 1] != k] == [
        ("a", ""),
        ("b", "comp/sub"),
        ("c", ""),
    ]
    for name, doc_ids in created.items():
        assert [i for _, t, i in listed if t == name] == sorted(doc_ids, key=lambda i: ids.decode_id(i)[1])
    # An explicit cursor resumes after the document it names.
    first = export.list_snapshot(
        deployment,
        snapshot=snap,
        cursor=None,
        fmt=ValueFormat.JSON,
        selection=Selection.everything(),
        limit=1,
    )
    rest = export.list_snapshot(
        deployment, snapshot=snap, cursor=first.cursor, fmt=ValueFormat.JSON, selection=Selection.everything()
    )
    assert orjson.loads(rest.values_json)[0]["_id"] == listed[1][2]
    assert orjson.loads(first.cursor)["id"] == listed[0][2]


# --- change log --------------------------------------------------------------------------------------


def test_change_log_order_and_tombstones(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t1")
        tx.create_table("t2")
        tx.create_table("t1", component="comp")
    start = deployment.read_timestamp()
    with deployment.transaction() as tx:  # written out of order on purpose
        x = [tx.insert("t2", {"i": i}) for i in range(4)]
        y = [tx.insert("t1", {"i": i}, component="comp") for i in range(3)]
        z = [tx.insert("t1", {"i": i}) for i in range(4)]
        ts1 = tx.ts
    with deployment.transaction() as tx:
        tx.delete(x[0])
        tx.patch(z[1], {"i": 10})
        tx.delete(y[2], component="comp")
        tx.insert("t2", {"i": 5})
        ts2 = tx.ts
    changes, cursor = all_changes(deployment, start)
    assert cursor >= ts2
    keys = [(c.ts, c.table.tablet, c.internal_id) for c in changes]
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == 11 + 4
    assert {c.ts for c in changes} == {ts1, ts2}
    tombstones = {(c.id, c.table.component) for c in changes if c.deleted}
    assert tombstones == {(x[0], ""), (y[2], "comp")}
    for c in changes:
        if c.deleted:
            assert c.body is None and c.value() is None and c.ts == ts2
        else:
            assert c.value()["_id"] == c.id
    assert next(c for c in changes if c.ts == ts2 and c.id == z[1]).value()["i"] == 10
    # The same through document_deltas: deletes carry only _id and the metadata keys.
    page = export.document_deltas(
        deployment, cursor=start, fmt=ValueFormat.JSON, selection=Selection.everything(), limit=1000
    )
    body = orjson.loads(page.to_json())
    assert body["hasMore"] is False and body["cursor"] >= ts2
    deleted = [v for v in body["values"] if v["_deleted"]]
    assert sorted(deleted, key=lambda v: v["_id"]) == sorted(
        [
            {"_component": "", "_table": "t2", "_ts": ts2, "_deleted": True, "_id": x[0]},
            {"_component": "comp", "_table": "t1", "_ts": ts2, "_deleted": True, "_id": y[2]},
        ],
        key=lambda v: v["_id"],
    )
    assert [(v["_ts"], v["_id"]) for v in body["values"]] == [(c.ts, c.id) for c in changes]
    # Paging with small limits yields the same sequence and never splits a transaction.
    for limit in (1, 2, 3, 5):
        paged = []
        cursor = start
        while True:
            p = deployment.read_changes(cursor, limit)
            if p.has_more:
                assert p.cursor == p.changes[-1].ts
                assert all(c.ts <= p.cursor for c in p.changes)
            paged.extend(p.changes)
            cursor = p.cursor
            if not p.has_more:
                break
        assert [(c.ts, c.id) for c in paged] == [(c.ts, c.id) for c in changes]


def test_page_limit_never_splits_a_transaction(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
    start = deployment.read_timestamp()
    with deployment.transaction() as tx:
        first = sorted(
            [tx.insert("t", {"n": 1}), tx.insert("t", {"n": 2})], key=lambda i: ids.decode_id(i)[1]
        )
        ts1 = tx.ts
    with deployment.transaction() as tx:
        tx.insert("t", {"n": 3})
        ts2 = tx.ts
    page = export.document_deltas(
        deployment, cursor=start, fmt=ValueFormat.JSON, selection=Selection.everything(), limit=1
    )
    body = orjson.loads(page.to_json())
    assert [v["_id"] for v in body["values"]] == first
    assert body["hasMore"] is True and body["cursor"] == ts1
    page2 = orjson.loads(
        export.document_deltas(
            deployment, cursor=ts1, fmt=ValueFormat.JSON, selection=Selection.everything(), limit=1
        ).to_json()
    )
    assert [v["_ts"] for v in page2["values"]] == [ts2]
    # A table filter skips other tables' rows, but the cursor still advances.
    with deployment.transaction() as tx:
        tx.create_table("other")
        tx.insert("other", {})
        ts3 = tx.ts
    only_t = Selection.single_table("", "t")
    filtered = export.document_deltas(deployment, cursor=ts2, fmt=ValueFormat.JSON, selection=only_t)
    assert filtered.count == 0 and filtered.cursor >= ts3 and not filtered.has_more


def test_empty_log_returns_the_read_timestamp(deployment_factory) -> None:
    clock = {"now": 1_700_000_000_000_000_000}
    dep = deployment_factory.open(DeploymentConfig(background=False, clock_ns=lambda: clock["now"]))
    page = dep.read_changes(5)
    assert page.changes == [] and not page.has_more and page.cursor == clock["now"]
    clock["now"] += 1000
    with dep.transaction() as tx:
        tx.create_table("t")
    cursor = dep.read_timestamp()
    clock["now"] += 5000
    page = dep.read_changes(cursor)
    assert page.changes == [] and not page.has_more and page.cursor == clock["now"] > cursor
    # The cursor never goes below the request's cursor.
    assert dep.read_changes(clock["now"] + 10).cursor == clock["now"] + 10
    # document_deltas: values [], hasMore false, cursor >= the request cursor.
    body = orjson.loads(
        export.document_deltas(
            dep, cursor=cursor, fmt=ValueFormat.JSON, selection=Selection.everything()
        ).to_json()
    )
    assert body == {"values": [], "cursor": clock["now"], "hasMore": False}


def test_deleted_tables_vanish_from_the_log(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("gone")
        tx.create_table("stays")
    start = deployment.read_timestamp()
    with deployment.transaction() as tx:
        gone = [tx.insert("gone", {"i": i}) for i in range(3)]
        stays = [tx.insert("stays", {"i": i}) for i in range(3)]
    with deployment.transaction() as tx:
        tx.delete(gone[0])
        tx.patch(stays[0], {"i": 9})
    before, _ = all_changes(deployment, start)
    assert {c.table.name for c in before} == {"gone", "stays"}
    with deployment.transaction() as tx:
        tx.delete_table("gone")
        assert tx.table("gone") is None
    after, _ = all_changes(deployment, start)
    assert [(c.ts, c.id) for c in after] == [(c.ts, c.id) for c in before if c.table.name == "stays"]
    assert deployment.find_table("gone") is None
    assert [t.name for t in deployment.tables()] == ["stays"]
    assert "gone" in [t.name for t in deployment.tables(include_deleted=True)]
    with pytest.raises(TableNotFoundError), deployment.transaction() as tx:
        tx.insert("gone", {})
    # A deleted table is gone from new snapshots but still listed at snapshots before the delete.
    assert {v["_table"] for v in snapshot_pages(deployment)[0]} == {"stays"}
    # A new table with the same name gets a new table number.
    with deployment.transaction() as tx:
        again = tx.create_table("gone")
    assert again.table_number != ids.decode_id(gone[1])[0]


def test_clear_table_swaps_in_an_empty_table(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        old = tx.create_table("t")
        tx.add_index("t", "by_a", ["a"])
        tx.add_index("t", "by_b_c", ["b", "c.d"])
        tx.create_table("other")
    start = deployment.read_timestamp()
    with deployment.transaction() as tx:
        old_ids = [tx.insert("t", {"a": i, "b": "x", "c": {"d": i}}) for i in range(4)]
        other = tx.insert("other", {"z": 1})
    with deployment.transaction() as tx:
        new = tx.clear_table("t")
        assert tx.index_query("t", "by_a", []) == []
        fresh = tx.insert("t", {"a": 1, "b": "y"})
        ts = tx.ts
    assert new.table_number == old.table_number
    assert new.tablet != old.tablet and new.tablet_id != old.tablet_id and new.tablet_id > old.tablet_id
    assert [(i.name, i.fields, i.state) for i in deployment.indexes("t")] == [
        ("by_a", ("a", "_creationTime"), "ready"),
        ("by_b_c", ("b", "c.d", "_creationTime"), "ready"),
    ]
    assert live_docs(deployment, "t") == {
        fresh: {"_id": fresh, "_creationTime": ts / 1_000_000, "a": 1, "b": "y"}
    }
    assert ids.decode_id(fresh)[0] == old.table_number
    assert deployment.document_count("t") == 1
    with deployment.transaction() as tx:
        assert [i for i, _ in tx.index_query("t", "by_a", [1])] == [fresh]
        assert [i for i, _ in tx.index_query("t", "by_b_c", ["y"])] == [fresh]
        assert tx.index_query("t", "by_b_c", ["x"]) == []
        for old_id in old_ids:
            assert tx.get(old_id) is None
            with pytest.raises(DocumentNotFoundError):
                tx.delete(old_id)
    changes, _ = all_changes(deployment, start)
    assert [c.id for c in changes] == [other, fresh]
    # Clearing a missing table creates it (or fails when asked not to).
    with deployment.transaction() as tx:
        created = tx.clear_table("brand_new")
        assert created.name == "brand_new"
    with pytest.raises(TableNotFoundError), deployment.transaction() as tx:
        tx.clear_table("absent", create_if_missing=False)


# --- more transaction behaviour ---------------------------------------------------------------------


def test_generated_ids(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        tx.create_table("u")
        tx.create_table("t", component="comp")
        t_ids = [tx.insert("t", {}) for _ in range(300)]
        u_id = tx.insert("u", {})
        comp_id = tx.insert("t", {}, component="comp")
    today = int(time.time()) // 86_400
    assert len(set(t_ids)) == 300
    for doc_id in t_ids:
        number, internal = ids.decode_id(doc_id)
        assert len(doc_id) == 32 and number == 10001
        assert int.from_bytes(internal[14:], "big") in (today, today + 1)
        assert ids.encode_id(number, internal) == doc_id
    assert ids.decode_id(u_id)[0] == 10002
    assert ids.decode_id(comp_id)[0] == 10001  # table numbers are per component
    # Id strings sort like internal ids within a table, which is the listing order.
    listed = [d.id for d in deployment.iter_snapshot(deployment.table("t"))]
    assert listed == sorted(t_ids)
    # An id of the component's table does not resolve in the root component (and vice versa).
    with deployment.transaction() as tx:
        assert tx.get(comp_id, component="comp") is not None
        assert tx.get(comp_id) is None
        assert tx.get(t_ids[0], component="comp") is None


def test_transaction_limits(deployment_factory) -> None:
    dep = deployment_factory.open(
        DeploymentConfig(
            background=False,
            max_writes_per_transaction=5,
            max_write_bytes_per_transaction=2000,
            max_read_rows_per_transaction=8,
        )
    )
    with dep.transaction() as tx:
        tx.create_table("t")
        doc_ids = [tx.insert("t", {"i": i}) for i in range(5)]
    with pytest.raises(TransactionLimitError, match="writes"), dep.transaction() as tx:
        for i in range(6):
            tx.insert("t", {"i": i})
    with pytest.raises(TransactionLimitError, match="bytes"), dep.transaction() as tx:
        tx.insert("t", {"s": "x" * 1500})
        tx.insert("t", {"s": "x" * 1500})
    with pytest.raises(TransactionLimitError, match="read"), dep.transaction() as tx:
        for _ in range(2):
            for doc_id in doc_ids:
                tx.get(doc_id)
    assert dep.document_count("t") == 5
    with dep.transaction() as tx:
        assert tx.insert("t", {"s": "x" * 1500})


def test_rollback_of_table_swaps_and_deletes(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        tx.add_index("t", "by_a", ["a"])
        doc_ids = [tx.insert("t", {"a": i}) for i in range(3)]
    before = deployment.tables(include_deleted=True)
    for op in ("clear_table", "delete_table"):
        with pytest.raises(ZeroDivisionError), deployment.transaction() as tx:
            getattr(tx, op)("t")
            if op == "clear_table":
                tx.insert("t", {"a": 99})
            _ = 1 / 0
        assert deployment.tables(include_deleted=True) == before
        assert sorted(live_docs(deployment, "t")) == sorted(doc_ids)
        with deployment.transaction() as tx:
            assert len(tx.index_query("t", "by_a", [])) == 3
        assert deployment.document_count("t") == 3


def test_snapshots_across_clear_table(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        old = [tx.insert("t", {"gen": 1}) for _ in range(3)]
    s1 = deployment.read_timestamp()
    with deployment.transaction() as tx:
        tx.clear_table("t")
        new = [tx.insert("t", {"gen": 2}) for _ in range(2)]
    s2 = deployment.read_timestamp()
    vals1, _ = snapshot_pages(deployment, snapshot=s1, limit=2)
    vals2, _ = snapshot_pages(deployment, snapshot=s2, limit=2)
    assert sorted(v["_id"] for v in vals1) == sorted(old)
    assert sorted(v["_id"] for v in vals2) == sorted(new)
    assert {v["gen"] for v in vals1} == {"1"} and {v["gen"] for v in vals2} == {"2"}


def test_closed_deployment_refuses_transactions(deployment_factory) -> None:
    dep = deployment_factory.open()
    dep.close()
    dep.close()  # idempotent
    with pytest.raises(BadRequestError) as err, dep.transaction():
        pass
    assert err.value.code == "DeploymentClosed"


def test_nested_transaction_is_refused_not_deadlocked(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        with pytest.raises(BadRequestError) as info, deployment.transaction():
            pass
        assert info.value.code == "NestedTransaction"
        with pytest.raises(BadRequestError):
            deployment.set_meta_if_absent("k", "v")
    # The outer transaction still commits normally.
    assert deployment.find_table("t") is not None
