"""Convex's Rust Fivetran source (crate 2.0.2) replayed against a live server.

The requests are those of ``crates/fivetran_source/src/convex_api.rs`` (``clients.RustSource``): GET for
``test_streaming_export_connection`` and ``get_table_column_names``; POST with every key present for
``list_snapshot`` and ``document_deltas``, ``format: "convex_encoded_json"``, the selection on every call.
The checks are what the client deserializes (``ListSnapshotResponse``, ``DocumentDeltasResponse``: all keys
required, ``_component``/``_table``/``_ts`` on every value, ``_deleted`` on every delta value) and the
invariants its state machine relies on (fivetran-source.md §6; streaming-export.md §4–5).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from connectors.backend.engine import DeploymentConfig
from tests.conformance.clients import (
    THING,
    THING_ENCODED,
    RustSource,
    decode_encoded,
    error_body,
    ok_json,
    typed,
    write,
)
from tests.integration.conftest import LiveServer, ServerFactory

EVERYTHING = {"_other": "included"}
SNAPSHOT_KEYS = {"values", "snapshot", "cursor", "hasMore"}
DELTA_KEYS = {"values", "cursor", "hasMore"}
META = {"_component", "_table", "_ts"}
Key = tuple[str, str, str]  # (component, table, _id)


@dataclass
class Seeded:
    users: list[str]
    things: list[str]
    posts: list[str]  # component `child`


def seed(live: LiveServer) -> Seeded:
    dep = live.deployment
    _, users = write(dep, "users", [{"name": f"u{i}", "password": "pw", "age": i} for i in range(3)])
    _, things = write(dep, "things", [THING])
    write(dep, "empty", [])
    _, posts = write(dep, "posts", [{"title": f"c{i}"} for i in range(3)], component="child")
    return Seeded(users, things, posts)


@pytest.fixture
def live(server_factory: ServerFactory) -> LiveServer:
    return server_factory.start(
        DeploymentConfig(background=False, snapshot_page_limit=2, deltas_page_limit=2)
    )


def check_snapshot_page(page: Any, snapshot: int | None) -> None:
    assert isinstance(page, dict) and set(page) == SNAPSHOT_KEYS, page
    assert type(page["snapshot"]) is int and type(page["hasMore"]) is bool
    if snapshot is not None:
        assert page["snapshot"] == snapshot, "snapshot changed between pages"
    if page["hasMore"]:
        assert type(page["cursor"]) is str, "Missing cursor when has_more was set"
    else:
        assert page["cursor"] is None
    for value in page["values"]:
        assert type(value["_component"]) is str and type(value["_table"]) is str
        assert type(value["_ts"]) is int and value["_ts"] <= page["snapshot"]
        assert "_deleted" not in value and type(value["_id"]) is str
        decode_encoded({k: v for k, v in value.items() if k not in META})  # `$float` only for specials


def check_delta_page(page: Any, request_cursor: int) -> None:
    assert isinstance(page, dict) and set(page) == DELTA_KEYS, page
    assert type(page["cursor"]) is int and type(page["hasMore"]) is bool
    assert page["cursor"] >= request_cursor
    timestamps = [v["_ts"] for v in page["values"]]
    assert timestamps == sorted(timestamps)
    for value in page["values"]:
        assert type(value["_component"]) is str and type(value["_table"]) is str
        assert type(value["_ts"]) is int and request_cursor < value["_ts"] <= page["cursor"]
        assert type(value["_deleted"]) is bool and type(value["_id"]) is str
        if value["_deleted"]:
            assert set(value) == {*META, "_deleted", "_id"}, value
        else:
            decode_encoded({k: v for k, v in value.items() if k not in META and k != "_deleted"})
    # Within one transaction: table by table, ids ascending (string order is byte order for IdV6).
    groups: dict[tuple[int, str, str], list[str]] = defaultdict(list)
    for value in page["values"]:
        groups[(value["_ts"], value["_component"], value["_table"])].append(value["_id"])
    assert all(ids == sorted(ids) for ids in groups.values())


def initial_sync(
    source: RustSource, selection: Mapping[str, Any] = EVERYTHING
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """fivetran-source.md §6.2: page with the returned snapshot and cursor until hasMore is false."""
    snapshot: int | None = None
    cursor: str | None = None
    values: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    while True:
        page = ok_json(source.list_snapshot(snapshot, cursor, selection))
        check_snapshot_page(page, snapshot)
        pages.append(page)
        values.extend(page["values"])
        if not page["hasMore"]:
            return values, pages
        snapshot, cursor = page["snapshot"], page["cursor"]
        assert len(pages) < 200


def delta_pages(source: RustSource, cursor: int, selection: Mapping[str, Any] = EVERYTHING) -> Iterator[dict]:
    """fivetran-source.md §6.3: at least one call; loop while hasMore; checkpoint every page's cursor."""
    while True:
        page = ok_json(source.document_deltas(cursor, selection))
        check_delta_page(page, cursor)
        yield page
        if not page["hasMore"]:
            return
        assert page["cursor"] > cursor or page["values"], "a page with hasMore must make progress"
        cursor = page["cursor"]


def fields(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in META and k != "_deleted"}


def key(value: Mapping[str, Any]) -> Key:
    return (value["_component"], value["_table"], value["_id"])


# --- Test and Schema ---------------------------------------------------------------------------------------


def test_connection_body_is_exactly_null(live: LiveServer) -> None:
    resp = RustSource(live.url, live.export_key).test_connection()
    assert resp.status_code == 200
    assert resp.content == b"null"  # a unit value: `{}` or an empty body fail the Test
    assert resp.headers["content-type"].split(";")[0] == "application/json"
    bad = RustSource(live.url, "prod:x|not-a-key").test_connection()
    assert 400 <= bad.status_code < 500 and bad.text  # shown to the user as the body text


def test_get_table_column_names_shape(live: LiveServer) -> None:
    seed(live)
    body = ok_json(RustSource(live.url, live.export_key).get_table_column_names())
    assert set(body) == {"byComponent"}
    by_component = body["byComponent"]
    assert set(by_component) == {"", "child"}
    tables: dict[tuple[str, str], list[str]] = {}
    for component, entries in by_component.items():
        assert isinstance(entries, list)
        for entry in entries:
            assert set(entry) == {"name", "columns"}
            assert type(entry["name"]) is str and not entry["name"].startswith("_")
            assert all(type(c) is str for c in entry["columns"])
            tables[(component, entry["name"])] = entry["columns"]
    assert set(tables) == {("", "users"), ("", "things"), ("", "empty"), ("child", "posts")}
    assert tables[("", "users")] == ["_creationTime", "_id", "age", "name", "password"]
    assert tables[("", "empty")] == ["_creationTime", "_id"]
    assert tables[("", "things")] == sorted(["_creationTime", "_id", *THING])
    assert tables[("child", "posts")] == ["_creationTime", "_id", "title"]


# --- initial sync -------------------------------------------------------------------------------------------


def test_initial_sync_request_bytes_and_pages(live: LiveServer) -> None:
    seeded = seed(live)
    source = RustSource(live.url, live.export_key)
    values, pages = initial_sync(source)
    first = source.sent[0]
    assert first.method == "POST" and first.url == live.url + "/api/list_snapshot"
    assert first.body == (
        b'{"snapshot":null,"cursor":null,"selection":{"_other":"included"},"format":"convex_encoded_json"}'
    )
    assert first.headers["content-type"] == "application/json"
    assert first.headers["convex-client"] == "fivetran-export-2.0.2"
    follow_up = orjson.loads(source.sent[1].body or b"")
    assert list(follow_up) == ["snapshot", "cursor", "selection", "format"]
    assert follow_up["snapshot"] == pages[0]["snapshot"] and follow_up["cursor"] == pages[0]["cursor"]

    assert len(pages) >= 5  # page size 2, four tables (one of them empty)
    keys = [key(v) for v in values]
    assert len(keys) == len(set(keys)) == 7
    assert {k[2] for k in keys} == {*seeded.users, *seeded.things, *seeded.posts}
    assert {(k[0], k[1]) for k in keys} == {("", "users"), ("", "things"), ("child", "posts")}
    (thing,) = [v for v in values if v["_table"] == "things"]
    assert typed({k: v for k, v in fields(thing).items() if not k.startswith("_")}) == typed(THING_ENCODED)
    assert type(thing["_creationTime"]) is float
    user = next(v for v in values if v["_table"] == "users")
    assert set(user) == {*META, "_id", "_creationTime", "name", "password", "age"}
    assert user["age"]["$integer"]  # Int64 as `{"$integer": <b64>}`


def test_empty_deployment_then_quiet_deltas(live: LiveServer) -> None:
    source = RustSource(live.url, live.export_key)
    values, pages = initial_sync(source)
    assert values == [] and len(pages) == 1 and pages[0]["cursor"] is None
    snapshot = pages[0]["snapshot"]
    (page,) = list(delta_pages(source, snapshot))
    assert page["values"] == [] and page["cursor"] >= snapshot


@pytest.mark.parametrize("spelling", [("included", "excluded"), ("incl", "excl")], ids=["2.0.2", "2.0.0"])
def test_selections_in_both_spellings(live: LiveServer, spelling: tuple[str, str]) -> None:
    inc, exc = spelling
    seeded = seed(live)
    source = RustSource(live.url, live.export_key)
    everything, pages = initial_sync(source, {"_other": inc})
    assert len(everything) == 7
    snapshot = pages[-1]["snapshot"]

    # The Fivetran mapping of "only app.users, without password; no new schemas or tables".
    users_only = {"": {"users": {"password": exc, "_other": inc}, "_other": exc}, "_other": exc}
    values, _ = initial_sync(source, users_only)
    assert {key(v) for v in values} == {("", "users", i) for i in seeded.users}
    assert all(set(v) == {*META, "_id", "_creationTime", "name", "age"} for v in values)

    # Columns may exclude `_creationTime` too; `_id` always stays.
    bare = {"": {"users": {"_creationTime": exc, "name": exc, "_other": inc}, "_other": exc}, "_other": exc}
    values, _ = initial_sync(source, bare)
    assert all(set(v) == {*META, "_id", "password", "age"} for v in values) and len(values) == 3

    # Components only: the root excluded, everything else included.
    values, _ = initial_sync(source, {"": exc, "_other": inc})
    assert {(v["_component"], v["_table"]) for v in values} == {("child", "posts")}

    # Deltas take the same selection: filtered columns, deletes still carry `_id`.
    with live.deployment.transaction() as tx:
        tx.patch(seeded.users[0], {"name": "renamed", "password": "new"})
        tx.delete(seeded.users[1])
        tx.insert("posts", {"title": "c3"}, "child")
        tx.patch(seeded.things[0], {"s": "changed"})
    changes = [v for page in delta_pages(source, snapshot, users_only) for v in page["values"]]
    assert [(v["_id"], v["_deleted"]) for v in changes] == sorted(
        [(seeded.users[0], False), (seeded.users[1], True)]
    )
    patched = next(v for v in changes if not v["_deleted"])
    assert fields(patched)["name"] == "renamed" and "password" not in patched


# --- deltas -------------------------------------------------------------------------------------------------


def test_deltas_after_initial_sync(live: LiveServer) -> None:
    seeded = seed(live)
    dep = live.deployment
    source = RustSource(live.url, live.export_key)
    values, pages = initial_sync(source)
    replica = {key(v): fields(v) for v in values}
    cursor = pages[-1]["snapshot"]
    with dep.transaction() as tx:
        new_user = tx.insert("users", {"name": "new", "password": "x", "age": 10})
        tx.insert("posts", {"title": "c-new"}, "child")
    with dep.transaction() as tx:
        tx.patch(seeded.users[0], {"name": "u0-patched"})
        tx.replace(seeded.things[0], {"only": b"\xff"})
    with dep.transaction() as tx:
        tx.delete(seeded.users[2])
        tx.delete(seeded.posts[0], "child")

    source.sent.clear()
    checkpoints: list[int] = []
    for page in delta_pages(source, cursor):
        for value in page["values"]:
            if value["_deleted"]:
                replica.pop(key(value))
            else:
                replica[key(value)] = fields(value)
        checkpoints.append(page["cursor"])
    first = source.sent[0]
    assert first.url == live.url + "/api/document_deltas"
    assert (
        first.body
        == b'{"cursor":%d,"selection":{"_other":"included"},"format":"convex_encoded_json"}' % cursor
    )
    assert checkpoints == sorted(checkpoints)

    # The replica now equals the deployment, field by field and type by type.
    expected = {}
    for table, component in (("users", ""), ("things", ""), ("empty", ""), ("posts", "child")):
        info = dep.table(table, component)
        for doc in dep.iter_snapshot(info):
            expected[(component, table, doc.id)] = typed(doc.value())
    assert {k: typed(decode_encoded(v)) for k, v in replica.items()} == expected
    assert ("", "users", new_user) in replica and replica[("", "things", seeded.things[0])]["only"] == {
        "$bytes": "/w=="
    }

    # Quiet deployment: one page, no values, the cursor does not go back.
    (quiet,) = list(delta_pages(source, checkpoints[-1]))
    assert quiet["values"] == [] and quiet["cursor"] >= checkpoints[-1]


def test_deltas_never_split_a_transaction(live: LiveServer) -> None:
    """Page limit 2 (the fixture): each transaction's rows arrive together in one page, however many."""
    seeded = seed(live)
    dep = live.deployment
    source = RustSource(live.url, live.export_key)
    _, pages = initial_sync(source)
    start = pages[-1]["snapshot"]
    transactions: dict[int, set[tuple[str, str, str, bool]]] = {}
    plan = [1, 5, 2, 7, 3, 1]
    for n, size in enumerate(plan):
        with dep.transaction() as tx:
            rows: set[tuple[str, str, str, bool]] = set()
            for i in range(size):
                if i % 3 == 0:
                    doc_id = tx.insert("posts", {"title": f"t{n}-{i}"}, "child")
                    rows.add(("child", "posts", doc_id, False))
                elif i % 3 == 1:
                    doc_id = tx.insert("users", {"name": f"t{n}-{i}"})
                    rows.add(("", "users", doc_id, False))
                else:
                    doc_id = tx.insert("things", {"k": i})
                    rows.add(("", "things", doc_id, False))
            if n == 3:  # deletes and patches in the same transaction
                tx.delete(seeded.users[0])
                tx.patch(seeded.posts[1], {"title": "patched"}, "child")
                rows |= {("", "users", seeded.users[0], True), ("child", "posts", seeded.posts[1], False)}
            transactions[tx.ts] = rows

    seen_in: dict[int, int] = {}
    got: dict[int, set[tuple[str, str, str, bool]]] = defaultdict(set)
    all_pages = list(delta_pages(source, start))
    for number, page in enumerate(all_pages):
        for value in page["values"]:
            ts = value["_ts"]
            assert seen_in.setdefault(ts, number) == number, f"transaction {ts} split across pages"
            got[ts].add((value["_component"], value["_table"], value["_id"], value["_deleted"]))
        if page["hasMore"] and page["values"]:
            # cursor = the last transaction's ts: the next page starts after it.
            assert page["cursor"] == page["values"][-1]["_ts"]
    assert dict(got) == transactions
    assert len(all_pages) > 1 and all_pages[-1]["hasMore"] is False

    # A selection that skips most rows: pages may be empty with hasMore true, and the selected rows of a
    # transaction still come together.
    only_things = {"": {"things": {"_other": "included"}, "_other": "excluded"}, "_other": "excluded"}
    filtered: dict[int, set[str]] = defaultdict(set)
    filtered_in: dict[int, int] = {}
    for number, page in enumerate(delta_pages(source, start, only_things)):
        for value in page["values"]:
            assert value["_table"] == "things"
            assert filtered_in.setdefault(value["_ts"], number) == number
            filtered[value["_ts"]].add(value["_id"])
    expected_things = {
        ts: ids for ts, rows in transactions.items() if (ids := {r[2] for r in rows if r[1] == "things"})
    }
    assert dict(filtered) == expected_things


def test_snapshot_is_stable_while_writing_and_deltas_catch_up(live: LiveServer) -> None:
    seeded = seed(live)
    dep = live.deployment
    source = RustSource(live.url, live.export_key)
    first = ok_json(source.list_snapshot(None, None, EVERYTHING))
    check_snapshot_page(first, None)
    snapshot = first["snapshot"]
    before = {key(v): typed(decode_encoded(fields(v))) for v in first["values"]}
    # Writes after the first page: none of them may show up in the rest of the snapshot.
    with dep.transaction() as tx:
        for doc_id in seeded.users:
            tx.patch(doc_id, {"name": "late"})
        tx.delete(seeded.posts[2], "child")
        tx.insert("things", {"late": True})
    page = first
    values = list(first["values"])
    while page["hasMore"]:
        page = ok_json(source.list_snapshot(snapshot, page["cursor"], EVERYTHING))
        check_snapshot_page(page, snapshot)
        values += page["values"]
    assert len(values) == 7
    assert all(fields(v).get("name") != "late" and "late" not in v for v in values)
    assert {key(v): typed(decode_encoded(fields(v))) for v in first["values"]} == before
    changes = [v for p in delta_pages(source, snapshot) for v in p["values"]]
    assert len(changes) == 5 and all(v["_ts"] > snapshot for v in changes)


def test_checkpoints_survive_a_server_restart(server_factory: ServerFactory) -> None:
    config = DeploymentConfig(background=False, snapshot_page_limit=2, deltas_page_limit=2)
    live = server_factory.start(config)
    seeded = seed(live)
    source = RustSource(live.url, live.export_key)
    page = ok_json(source.list_snapshot(None, None, EVERYTHING))
    checkpoint = (page["snapshot"], page["cursor"])  # InitialSync{snapshot, cursor}
    restarted = server_factory.restart(live, config)
    resumed = RustSource(restarted.url, live.export_key)  # keys outlive the process
    values = list(page["values"])
    snapshot, cursor = checkpoint
    while cursor is not None:
        page = ok_json(resumed.list_snapshot(snapshot, cursor, EVERYTHING))
        check_snapshot_page(page, snapshot)
        values += page["values"]
        cursor = page["cursor"]
    assert len({key(v) for v in values}) == len(values) == 7
    write(restarted.deployment, "users", [{"name": "after-restart"}])
    changes = [v for p in delta_pages(resumed, snapshot) for v in p["values"]]
    assert [fields(v)["name"] for v in changes] == ["after-restart"]
    assert seeded.users[0] in {v["_id"] for v in values}


def test_malformed_snapshot_cursor_is_a_client_error(live: LiveServer) -> None:
    seed(live)
    resp = RustSource(live.url, live.export_key).list_snapshot(None, "not-a-cursor", EVERYTHING)
    error_body(resp, 400, "InvalidListSnapshotCursor")
