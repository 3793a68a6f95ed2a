"""Streaming export over real HTTP (shared/spec/streaming-export.md), raw ``requests`` to pin the wire."""

from __future__ import annotations

import gzip
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import requests

from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.server.app import ServerConfig
from tests.integration.conftest import LiveServer, ServerFactory

INTERNAL = {"code": "InternalServerError", "message": "Your request couldn't be completed. Try again later."}
RETENTION_MESSAGE = (
    "Trying to synchronize from timestamp {ts}, which is older than the database\u2019s retention window. "
    "This may happen if you paused your Fivetran or Airbyte connector for a long period of time. "
    "Please perform a full sync of the connector. "
    "See https://fivetran.com/docs/connectors/troubleshooting/trigger-historical-re-syncs "
    "or https://docs.airbyte.com/platform/operator-guides/refreshes"
)
INVALID_CURSOR = (
    "Invalid value for the `cursor` argument of list_snapshot. Use a `cursor` returned by a previous "
    "list_snapshot call, and treat it as an opaque value."
)
RUST_HEADERS = {"Convex-Client": "fivetran-export-2.0.2"}
AIRBYTE_HEADERS = {"Convex-Client": "airbyte-export-0.4.0"}
META = ("_component", "_table", "_ts")


def write(
    dep: Deployment, table: str, docs: Sequence[Mapping[str, Any]], component: str = ""
) -> tuple[int, list[str]]:
    """Insert ``docs`` into ``table`` (created if needed) in one transaction: ``(commit ts, ids)``."""
    with dep.transaction() as tx:
        tx.create_table(table, component, exist_ok=True)
        ids = [tx.insert(table, doc, component) for doc in docs]
        ts = tx.ts
    return ts, ids


def seed(dep: Deployment) -> None:
    """Root tables ``users`` (3 docs) and ``posts`` (1), component ``waitlist`` table ``entries`` (2)."""
    write(dep, "users", [{"name": f"u{i}", "password": "pw", "age": i} for i in range(3)])
    write(dep, "posts", [{"title": "hello"}])
    write(dep, "entries", [{"email": "a@x"}, {"email": "b@x"}], component="waitlist")


def body(resp: requests.Response, status: int = 200) -> Any:
    assert resp.status_code == status, (resp.status_code, resp.text)
    # orjson: timestamps are above 2^53 and must be parsed as integers.
    return orjson.loads(resp.content)


def snapshot_all(
    live: LiveServer, *, method: str = "POST", **args: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Page list_snapshot to the end: (values, pages)."""
    values: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    snapshot: int | None = None
    while True:
        if method == "POST":
            resp = live.post("/api/list_snapshot", json={**args, "cursor": cursor, "snapshot": snapshot})
        else:
            params = {
                **args,
                **({"cursor": cursor} if cursor else {}),
                **({"snapshot": snapshot} if snapshot else {}),
            }
            resp = live.get("/api/list_snapshot", params=params)
        page = body(resp)
        pages.append(page)
        values.extend(page["values"])
        assert snapshot is None or page["snapshot"] == snapshot, "snapshot changed between pages"
        snapshot = page["snapshot"]
        if not page["hasMore"]:
            assert page["cursor"] is None
            return values, pages
        assert isinstance(page["cursor"], str)
        cursor = page["cursor"]
        assert len(pages) < 100


def tables_of(values: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(v["_component"], v["_table"]) for v in values}


def assert_error(
    resp: requests.Response, status: int, code: str, message: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"] == "application/json"
    err = orjson.loads(resp.content)
    assert set(err) == {"code", "message"}
    assert err["code"] == code, err
    if message is not None:
        assert err["message"] == message
    return err


# --- test_streaming_export_connection ---------------------------------------------------------------------


def test_connection_returns_exactly_null(live_server: LiveServer) -> None:
    resp = live_server.get("/api/test_streaming_export_connection", headers=RUST_HEADERS)
    assert resp.status_code == 200
    assert resp.content == b"null"
    assert resp.headers["content-type"] == "application/json"
    assert_error(live_server.post("/api/test_streaming_export_connection"), 405, "MethodNotAllowed")


# --- list_snapshot -----------------------------------------------------------------------------------------


def test_empty_deployment_first_page(live_server: LiveServer) -> None:
    before = time.time_ns()
    for resp in (
        live_server.get("/api/list_snapshot", params={"format": "json"}, headers=AIRBYTE_HEADERS),
        live_server.post(
            "/api/list_snapshot",
            json={
                "snapshot": None,
                "cursor": None,
                "selection": {"_other": "included"},
                "format": "convex_encoded_json",
            },
            headers=RUST_HEADERS,
        ),
    ):
        page = body(resp)
        assert resp.headers["content-type"] == "application/json"
        assert set(page) == {"values", "snapshot", "cursor", "hasMore"}
        assert page["values"] == [] and page["cursor"] is None and page["hasMore"] is False
        assert type(page["snapshot"]) is int and page["snapshot"] >= before


def test_values_carry_metadata_and_no_deleted_flag(live_server: LiveServer) -> None:
    seed(live_server.deployment)
    values, pages = snapshot_all(live_server, format="convex_encoded_json", selection={"_other": "included"})
    snapshot = pages[0]["snapshot"]
    assert len(values) == 6
    assert tables_of(values) == {("", "users"), ("", "posts"), ("waitlist", "entries")}
    for v in values:
        assert all(k in v for k in META) and "_deleted" not in v
        assert type(v["_ts"]) is int and v["_ts"] <= snapshot
        assert isinstance(v["_id"], str) and isinstance(v["_creationTime"], float)
    # One traversal is a snapshot: every id once.
    assert len({v["_id"] for v in values}) == 6


def test_paging_never_spans_two_tables_and_allows_empty_pages(server_factory: ServerFactory) -> None:
    live = server_factory.start(DeploymentConfig(background=False, snapshot_page_limit=2))
    dep = live.deployment
    write(dep, "a", [{"i": i} for i in range(3)])
    with dep.transaction() as tx:
        tx.create_table("b")  # empty table: its page is empty but hasMore stays true
    write(dep, "c", [{"i": 9}])
    values, pages = snapshot_all(live)
    assert [[v["_table"] for v in p["values"]] for p in pages] == [["a", "a"], ["a"], [], ["c"]]
    assert [p["hasMore"] for p in pages] == [True, True, True, False]
    # A full page's cursor names its last document, upstream's `{"tablet", "id"}` shape.
    first_cursor = orjson.loads(pages[0]["cursor"])
    assert set(first_cursor) == {"tablet", "id"} and len(first_cursor["tablet"]) == 22
    assert first_cursor["id"] == pages[0]["values"][-1]["_id"]
    assert len({v["_id"] for v in values}) == 4
    # The same traversal through GET query strings (Airbyte) gives the same pages.
    _, get_pages = snapshot_all(live, method="GET", format="json")
    assert [len(p["values"]) for p in get_pages] == [2, 1, 0, 1]


def test_snapshot_is_consistent_and_old_snapshots_show_old_values(server_factory: ServerFactory) -> None:
    live = server_factory.start(DeploymentConfig(background=False, snapshot_page_limit=1))
    dep = live.deployment
    _, ids = write(dep, "users", [{"name": "ada"}, {"name": "bob"}])
    first = body(live.post("/api/list_snapshot", json={}))
    snapshot = first["snapshot"]
    with dep.transaction() as tx:
        for doc_id in ids:
            tx.patch(doc_id, {"name": "changed"})
        tx.insert("users", {"name": "new"})
    # Continuing the traversal at the old snapshot sees neither the patch nor the insert.
    rest = body(live.post("/api/list_snapshot", json={"snapshot": snapshot, "cursor": first["cursor"]}))
    old = first["values"] + rest["values"]
    while rest["hasMore"]:
        rest = body(live.post("/api/list_snapshot", json={"snapshot": snapshot, "cursor": rest["cursor"]}))
        old += rest["values"]
    assert sorted(v["name"] for v in old) == ["ada", "bob"]
    now, _ = snapshot_all(live)
    assert sorted(v["name"] for v in now) == ["changed", "changed", "new"]


def test_snapshot_and_cursors_stay_exact_above_2_pow_53(live_server: LiveServer) -> None:
    write(live_server.deployment, "t", [{"x": 1}])
    page = body(live_server.post("/api/list_snapshot", json={}))
    snapshot = page["snapshot"]
    assert snapshot > 2**53
    again = body(
        live_server.post(
            "/api/list_snapshot",
            data=b'{"snapshot": %d}' % snapshot,
            headers={"Content-Type": "application/json"},
        )
    )
    assert again["snapshot"] == snapshot
    # Query-string form too.
    assert (
        body(live_server.get("/api/list_snapshot", params={"snapshot": str(snapshot)}))["snapshot"]
        == snapshot
    )


def test_list_snapshot_cursor_survives_a_server_restart(server_factory: ServerFactory) -> None:
    config = DeploymentConfig(background=False, snapshot_page_limit=2)
    live = server_factory.start(config)
    write(live.deployment, "users", [{"n": i} for i in range(5)])
    first = body(live.post("/api/list_snapshot", json={}))
    assert first["hasMore"]
    restarted = server_factory.restart(live, config)
    seen = [int(v["n"]) for v in first["values"]]  # Int64 is a string in clean json
    page = first
    while page["hasMore"]:
        # Keys are signed with the deployment's stored secret, so the old key still works too.
        resp = restarted.post(
            "/api/list_snapshot",
            json={"snapshot": first["snapshot"], "cursor": page["cursor"]},
            key=live.admin_key,
        )
        page = body(resp)
        seen += [int(v["n"]) for v in page["values"]]
    assert sorted(seen) == [0, 1, 2, 3, 4]


def test_airbyte_availability_probe_is_harmless(live_server: LiveServer) -> None:
    write(live_server.deployment, "users", [{"n": 1}])
    probe = body(live_server.get("/api/list_snapshot", params={"tableName": "users", "format": "json"}))
    real = body(live_server.get("/api/list_snapshot", params={"tableName": "users", "format": "json"}))
    assert [v["n"] for v in probe["values"]] == [v["n"] for v in real["values"]] == ["1"]


# --- selection -------------------------------------------------------------------------------------------

EVERYTHING = {("", "users"), ("", "posts"), ("waitlist", "entries")}


@pytest.mark.parametrize("spelling", [("included", "excluded"), ("incl", "excl")])
def test_selection_variants_and_spellings(live_server: LiveServer, spelling: tuple[str, str]) -> None:
    start = live_server.deployment.read_timestamp()
    seed(live_server.deployment)
    inc, exc = spelling
    cases: list[tuple[dict[str, Any], set[tuple[str, str]]]] = [
        ({}, EVERYTHING),
        ({"table_name": "users"}, {("", "users")}),
        ({"tableName": "users"}, {("", "users")}),
        ({"tableName": None}, EVERYTHING),
        ({"table_name": "entries", "component": "waitlist"}, {("waitlist", "entries")}),
        ({"tableName": "entries", "component": None}, set()),  # root has no `entries`
        ({"component": "waitlist"}, {("waitlist", "entries")}),
        ({"selection": {"_other": inc}}, EVERYTHING),
        ({"selection": {"_other": exc}}, set()),
        ({"selection": {"": {"users": {"_other": inc}, "_other": exc}, "_other": exc}}, {("", "users")}),
        ({"selection": {"": exc, "waitlist": {"_other": inc}, "_other": exc}}, {("waitlist", "entries")}),
        ({"selection": {"": exc, "_other": inc}}, {("waitlist", "entries")}),
        (
            {"selection": {"": {"posts": exc, "_other": inc}, "_other": inc}},
            {("", "users"), ("waitlist", "entries")},
        ),
        # `selection` wins over the other variants (Exact is tried first).
        ({"selection": {"_other": inc}, "tableName": "users"}, EVERYTHING),
        ({"unknownKey": 1, "_other": "whatever"}, EVERYTHING),
    ]
    for args, expected in cases:
        values, _ = snapshot_all(live_server, **args)
        assert tables_of(values) == expected, args
        # Deltas take the same selection arguments.
        deltas = body(live_server.post("/api/document_deltas", json={**args, "cursor": start}))
        assert tables_of(deltas["values"]) == expected, args
    # GET spellings of the flattened variants (Airbyte sends only tableName).
    for params, expected in [
        ({"tableName": "users"}, {("", "users")}),
        ({"table_name": "posts"}, {("", "posts")}),
        ({"table_name": "entries", "component": "waitlist"}, {("waitlist", "entries")}),
        ({"component": "waitlist"}, {("waitlist", "entries")}),
        ({}, EVERYTHING),
    ]:
        values, _ = snapshot_all(live_server, method="GET", **params)
        assert tables_of(values) == expected, params


def test_column_selection_filters_snapshot_and_deltas(live_server: LiveServer) -> None:
    dep = live_server.deployment
    write(dep, "users", [{"name": "ada", "password": "pw"}])
    selection = {
        "": {
            "users": {"password": "excluded", "_creationTime": "excl", "_other": "included"},
            "_other": "excluded",
        },
        "_other": "excluded",
    }  # noqa: E501
    values, pages = snapshot_all(live_server, selection=selection)
    assert [sorted(v) for v in values] == [sorted([*META, "_id", "name"])]
    cursor = pages[-1]["snapshot"]
    _, ids = write(dep, "users", [{"name": "bob", "password": "pw2"}])
    with dep.transaction() as tx:
        tx.delete(ids[0])
    deltas = body(live_server.post("/api/document_deltas", json={"cursor": cursor, "selection": selection}))
    assert [sorted(v) for v in deltas["values"]] == [
        sorted([*META, "_deleted", "_id", "name"]),
        sorted([*META, "_deleted", "_id"]),
    ]


def test_invalid_selections(live_server: LiveServer) -> None:
    seed(live_server.deployment)
    # Shape errors are client faults (400); names and the `_id` rule are 500 on these legacy endpoints.
    for args in (
        {"selection": {"": {"users": {"_other": "maybe"}, "_other": "excluded"}, "_other": "excluded"}},
        {"selection": {"": "included", "_other": "excluded"}},
        {"selection": {"": {}}},
        {"selection": "everything"},
        {"tableName": 5},
        {"component": ["a"]},
    ):
        assert_error(live_server.post("/api/list_snapshot", json=args), 400, "BadJsonBody")
        assert_error(live_server.post("/api/document_deltas", json={**args, "cursor": 1}), 400, "BadJsonBody")
    for args in (
        {
            "selection": {
                "": {"users": {"_id": "excluded", "_other": "included"}, "_other": "excluded"},
                "_other": "excluded",
            }
        },  # noqa: E501
        {
            "selection": {
                "": {"bad name!": {"_other": "included"}, "_other": "excluded"},
                "_other": "excluded",
            }
        },
        {"selection": {"bad/comp!": {"_other": "included"}, "_other": "excluded"}},
        {"tableName": "1bad"},
    ):
        resp = live_server.post("/api/list_snapshot", json=args)
        assert resp.status_code == 500 and resp.json() == INTERNAL, args
        now = body(live_server.post("/api/list_snapshot", json={}))["snapshot"]
        resp = live_server.post("/api/document_deltas", json={**args, "cursor": now})
        assert resp.status_code == 500 and resp.json() == INTERNAL, args
    # A selection in a query string cannot be an object: refused rather than silently "everything".
    assert_error(live_server.get("/api/list_snapshot", params={"selection": "x"}), 400, "BadQueryArgs")


# --- formats -----------------------------------------------------------------------------------------------

ENCODINGS = {
    "json": {"n": "42", "b": "AQI=", "f": 1.5, "neg": -0.0, "s": "x"},
    "convex_clean_json": {"n": "42", "b": "AQI=", "f": 1.5, "neg": -0.0, "s": "x"},
    "convex_encoded_json": {
        "n": {"$integer": "KgAAAAAAAAA="},
        "b": {"$bytes": "AQI="},
        "f": 1.5,
        "neg": {"$float": "AAAAAAAAAIA="},
        "s": "x",
    },  # noqa: E501
    "convex_json": {
        "n": {"$integer": "KgAAAAAAAAA="},
        "b": {"$bytes": "AQI="},
        "f": 1.5,
        "neg": {"$float": "AAAAAAAAAIA="},
        "s": "x",
    },  # noqa: E501
    "export_json": {"n": 42, "b": {"$bytes": "AQI="}, "f": 1.5, "neg": -0.0, "s": "x"},
}


def test_formats_and_aliases(live_server: LiveServer) -> None:
    dep = live_server.deployment
    before = dep.read_timestamp()
    write(dep, "t", [{"n": 42, "b": b"\x01\x02", "f": 1.5, "neg": -0.0, "s": "x"}])
    for fmt, expected in ENCODINGS.items():
        for resp in (
            live_server.get("/api/list_snapshot", params={"format": fmt}),
            live_server.post("/api/list_snapshot", json={"format": fmt}),
        ):
            (value,) = body(resp)["values"]
            assert {k: value[k] for k in expected} == expected, fmt
            assert type(value["n"]) is type(expected["n"])
        (delta,) = body(live_server.get("/api/document_deltas", params={"cursor": before, "format": fmt}))[
            "values"
        ]
        assert {k: delta[k] for k in expected} == expected, fmt
    # Omitted or null format = json.
    (value,) = body(live_server.post("/api/list_snapshot", json={"format": None}))["values"]
    assert value["n"] == "42"
    bad_format = "format param must be one of [`json`]. Got xml"
    assert_error(
        live_server.get("/api/list_snapshot", params={"format": "xml"}), 400, "BadFormat", bad_format
    )
    assert_error(live_server.post("/api/list_snapshot", json={"format": "xml"}), 400, "BadFormat", bad_format)
    assert_error(
        live_server.post("/api/document_deltas", json={"format": "xml", "cursor": before}), 400, "BadFormat"
    )
    assert_error(live_server.get("/api/json_schemas", params={"format": "xml"}), 400, "BadFormat", bad_format)
    assert_error(live_server.post("/api/list_snapshot", json={"format": 5}), 400, "BadJsonBody")


# --- document_deltas -------------------------------------------------------------------------------------


def test_deltas_pages_never_split_a_transaction(server_factory: ServerFactory) -> None:
    live = server_factory.start(DeploymentConfig(background=False, deltas_page_limit=1))
    dep = live.deployment
    start = body(live.post("/api/list_snapshot", json={}))["snapshot"]
    ts1, ids = write(dep, "users", [{"n": 1}, {"n": 2}, {"n": 3}])
    with dep.transaction() as tx:
        tx.delete(ids[0])
        ts2 = tx.ts
    page1 = body(
        live.post(
            "/api/document_deltas",
            json={"cursor": start, "selection": {"_other": "included"}, "format": "convex_encoded_json"},
            headers=RUST_HEADERS,
        )
    )  # noqa: E501
    assert set(page1) == {"values", "cursor", "hasMore"}
    assert page1["hasMore"] is True and page1["cursor"] == ts1
    assert len(page1["values"]) == 3 and {v["_ts"] for v in page1["values"]} == {ts1}
    for v in page1["values"]:
        assert v["_deleted"] is False and all(k in v for k in META) and "_creationTime" in v
    page2 = body(
        live.get(
            "/api/document_deltas",
            params={"cursor": page1["cursor"], "format": "json"},
            headers=AIRBYTE_HEADERS,
        )
    )  # noqa: E501
    assert page2["values"] == [
        {"_component": "", "_table": "users", "_ts": ts2, "_deleted": True, "_id": ids[0]}
    ]
    assert page2["cursor"] == ts2 and page2["hasMore"] is True
    before = time.time_ns()
    page3 = body(live.get("/api/document_deltas", params={"cursor": page2["cursor"]}))
    # Exhausted: no values, and the cursor advances to the server's "now", past the last write.
    assert page3["values"] == [] and page3["hasMore"] is False
    assert page3["cursor"] >= before > ts2
    # No later commit may get a timestamp at or below a returned cursor.
    ts3, _ = write(dep, "users", [{"n": 4}])
    assert ts3 > page3["cursor"]
    page4 = body(live.get("/api/document_deltas", params={"cursor": page3["cursor"]}))
    assert [v["_ts"] for v in page4["values"]] == [ts3]


def test_deltas_with_a_table_filter_still_advance(live_server: LiveServer) -> None:
    dep = live_server.deployment
    start = body(live_server.post("/api/list_snapshot", json={}))["snapshot"]
    write(dep, "users", [{"n": 1}])
    ts_posts, _ = write(dep, "posts", [{"n": 2}])
    page = body(live_server.get("/api/document_deltas", params={"cursor": start, "tableName": "posts"}))
    assert [(v["_table"], v["_ts"]) for v in page["values"]] == [("posts", ts_posts)]
    assert page["cursor"] >= ts_posts and page["hasMore"] is False
    # Nothing new: empty, not done earlier than the request cursor.
    again = body(
        live_server.post("/api/document_deltas", json={"cursor": page["cursor"], "tableName": "users"})
    )
    assert again["values"] == [] and again["hasMore"] is False and again["cursor"] >= page["cursor"]


def test_deleted_tables_vanish_from_deltas(live_server: LiveServer) -> None:
    dep = live_server.deployment
    start = dep.read_timestamp()
    write(dep, "gone", [{"n": 1}])
    write(dep, "kept", [{"n": 2}])
    with dep.transaction() as tx:
        tx.delete_table("gone")
    page = body(live_server.post("/api/document_deltas", json={"cursor": start}))
    assert [v["_table"] for v in page["values"]] == ["kept"]


# --- schemas and columns -----------------------------------------------------------------------------------


def test_json_schemas(live_server: LiveServer) -> None:
    seed(live_server.deployment)
    with live_server.deployment.transaction() as tx:
        tx.create_table("empty")
    flat = body(
        live_server.get(
            "/api/json_schemas", params={"deltaSchema": "true", "format": "json"}, headers=AIRBYTE_HEADERS
        )
    )  # noqa: E501
    assert set(flat) == {"users", "posts", "entries", "empty"}
    users = flat["users"]
    assert users["type"] == "object" and users["additionalProperties"] is False
    assert users["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert users["properties"]["_id"] == {"$description": "Id(users)", "type": "string"}
    assert users["properties"]["_creationTime"] == {"type": "number"}
    for name, schema in {
        "_table": "string",
        "_component": "string",
        "_ts": "integer",
        "_deleted": "boolean",
    }.items():
        assert users["properties"][name] == {"type": schema}
        assert name not in users["required"]
    assert users["required"] == sorted(users["required"])
    assert flat["empty"]["required"] == ["_creationTime", "_id"]
    plain = body(live_server.get("/api/json_schemas"))
    assert "_deleted" not in plain["users"]["properties"]
    assert body(
        live_server.get("/api/json_schemas", params={"format": "convex_json", "deltaSchema": "false"})
    )
    grouped = body(live_server.get("/api/json_schemas", params={"byComponent": "true"}))
    assert set(grouped) == {"", "waitlist"} and set(grouped["waitlist"]) == {"entries"}
    for bad in ({"deltaSchema": "yes"}, {"byComponent": "1"}, {"deltaSchema": ""}):
        assert_error(live_server.get("/api/json_schemas", params=bad), 400, "BadQueryArgs")


def test_get_table_column_names_and_retired_tables_and_columns(live_server: LiveServer) -> None:
    seed(live_server.deployment)
    with live_server.deployment.transaction() as tx:
        tx.create_table("empty")
    names = body(live_server.get("/api/get_table_column_names", headers=RUST_HEADERS))
    assert set(names) == {"byComponent"}
    root = {t["name"]: t["columns"] for t in names["byComponent"][""]}
    assert root == {
        "users": ["_creationTime", "_id", "age", "name", "password"],
        "posts": ["_creationTime", "_id", "title"],
        "empty": ["_creationTime", "_id"],
    }
    assert names["byComponent"]["waitlist"] == [
        {"name": "entries", "columns": ["_creationTime", "_id", "email"]}
    ]
    flat = body(live_server.get("/api/get_tables_and_columns"))
    assert flat == root


# --- errors (streaming-export.md §3.4) ---------------------------------------------------------------------


def test_argument_errors(live_server: LiveServer) -> None:
    live = live_server
    write(live.deployment, "users", [{"n": 1}])
    now = body(live.post("/api/list_snapshot", json={}))["snapshot"]
    future = now + 3_600 * 10**9
    json_headers = {"Content-Type": "application/json"}
    cases: list[tuple[requests.Response, int, str, str | None]] = [
        (
            live.get("/api/document_deltas"),
            400,
            "DocumentDeltasCursorRequired",
            "/api/document_deltas requires a cursor",
        ),
        (live.post("/api/document_deltas", json={"cursor": None}), 400, "DocumentDeltasCursorRequired", None),
        (live.post("/api/document_deltas", json={}), 400, "DocumentDeltasCursorRequired", None),
        (
            live.get("/api/list_snapshot", params={"cursor": "abc"}),
            400,
            "InvalidListSnapshotCursor",
            INVALID_CURSOR,
        ),
        (
            live.post("/api/list_snapshot", json={"cursor": '{"tablet":"x","id":null}'}),
            400,
            "InvalidListSnapshotCursor",
            INVALID_CURSOR,
        ),  # noqa: E501
        (
            live.post("/api/list_snapshot", json={"snapshot": future}),
            400,
            "SnapshotTooNew",
            f"Snapshot value {future} is in the future.",
        ),  # noqa: E501
        (
            live.get("/api/list_snapshot", params={"snapshot": "1"}),
            400,
            "SnapshotTooOld",
            "Snapshot value 1 is too far in the past.",
        ),  # noqa: E501
        (
            live.post("/api/document_deltas", json={"cursor": 1}),
            400,
            "InvalidWindowToReadDocuments",
            RETENTION_MESSAGE.format(ts=2),
        ),  # noqa: E501
        (
            live.get("/api/document_deltas", params={"cursor": "41"}),
            400,
            "InvalidWindowToReadDocuments",
            RETENTION_MESSAGE.format(ts=42),
        ),  # noqa: E501
        # Query strings that do not deserialize.
        (live.get("/api/list_snapshot", params={"snapshot": "abc"}), 400, "BadQueryArgs", None),
        (live.get("/api/list_snapshot", params={"snapshot": "1.5"}), 400, "BadQueryArgs", None),
        (live.get("/api/list_snapshot", params={"snapshot": "null"}), 400, "BadQueryArgs", None),
        (live.get("/api/list_snapshot", params={"snapshot": str(2**63)}), 400, "BadQueryArgs", None),
        (live.get("/api/list_snapshot", params={"snapshot": "9" * 5000}), 400, "BadQueryArgs", None),
        (live.get("/api/document_deltas", params={"cursor": "abc"}), 400, "BadQueryArgs", None),
        # Bodies that do not deserialize, or are not JSON.
        (
            live.post("/api/list_snapshot", data=b"{}"),
            400,
            "BadJsonBody",
            "Expected request with `Content-Type: application/json`",
        ),  # noqa: E501
        (
            live.post("/api/list_snapshot", data=b"{}", headers={"Content-Type": "text/plain"}),
            400,
            "BadJsonBody",
            "Expected request with `Content-Type: application/json`",
        ),  # noqa: E501
        (live.post("/api/list_snapshot", data=b"{", headers=json_headers), 400, "BadJsonBody", None),
        (live.post("/api/list_snapshot", data=b"", headers=json_headers), 400, "BadJsonBody", None),
        (live.post("/api/list_snapshot", json=[]), 400, "BadJsonBody", None),
        (live.post("/api/list_snapshot", json={"snapshot": "1"}), 400, "BadJsonBody", None),
        (live.post("/api/list_snapshot", json={"snapshot": 1.5}), 400, "BadJsonBody", None),
        (live.post("/api/list_snapshot", json={"snapshot": True}), 400, "BadJsonBody", None),
        (live.post("/api/list_snapshot", json={"cursor": 5}), 400, "BadJsonBody", None),
        (live.post("/api/document_deltas", json={"cursor": "5"}), 400, "BadJsonBody", None),
        (
            live.post("/api/document_deltas", data=b'{"cursor": 9223372036854775808}', headers=json_headers),
            400,
            "BadJsonBody",
            None,
        ),  # noqa: E501
    ]
    for resp, status, code, message in cases:
        assert_error(resp, status, code, message)
    # Messages name the offending key.
    err = assert_error(live.post("/api/list_snapshot", json={"snapshot": "1"}), 400, "BadJsonBody")
    assert "`snapshot`" in err["message"]
    err = assert_error(live.get("/api/document_deltas", params={"cursor": "abc"}), 400, "BadQueryArgs")
    assert "`cursor`" in err["message"]
    # Accepted JSON content types: parameters and `application/*+json`.
    for content_type in (
        "application/json; charset=utf-8",
        "application/vnd.convex+json",
        "Application/JSON",
    ):
        body(live.post("/api/list_snapshot", data=b"{}", headers={"Content-Type": content_type}))
    # Negative timestamps are not convertible to an unsigned timestamp: 500 upstream.
    for resp in (
        live.post("/api/list_snapshot", json={"snapshot": -1}),
        live.get("/api/document_deltas", params={"cursor": "-5"}),
    ):
        assert resp.status_code == 500 and resp.json() == INTERNAL


def test_snapshot_too_old_follows_the_configured_max_age(server_factory: ServerFactory) -> None:
    live = server_factory.start(
        DeploymentConfig(background=False, snapshot_max_age_ns=200_000_000, retention_ns=200_000_000)
    )  # noqa: E501
    write(live.deployment, "users", [{"n": 1}])
    snapshot = body(live.post("/api/list_snapshot", json={}))["snapshot"]
    time.sleep(0.3)
    assert_error(
        live.post("/api/list_snapshot", json={"snapshot": snapshot}),
        400,
        "SnapshotTooOld",
        f"Snapshot value {snapshot} is too far in the past.",
    )
    assert_error(
        live.post("/api/document_deltas", json={"cursor": snapshot}),
        400,
        "InvalidWindowToReadDocuments",
        RETENTION_MESSAGE.format(ts=snapshot + 1),
    )


def test_streaming_export_not_enabled(server_factory: ServerFactory) -> None:
    live = server_factory.start(server_config=ServerConfig(streaming_export_enabled=False))
    message = (
        "Streaming export is not available on your current subscription. "
        "See https://www.convex.dev/plans to upgrade."
    )
    for method, path in [
        ("GET", "/api/test_streaming_export_connection"),
        ("GET", "/api/list_snapshot"),
        ("POST", "/api/list_snapshot"),
        ("GET", "/api/document_deltas"),
        ("POST", "/api/document_deltas"),
        ("GET", "/api/json_schemas"),
        ("GET", "/api/get_table_column_names"),
        ("GET", "/api/get_tables_and_columns"),
    ]:
        # Checked before authentication: with a good key, with none, with a malformed header.
        for headers in ({"Authorization": f"Convex {live.admin_key}"}, {}, {"Authorization": "x"}):
            resp = requests.request(method, live.url + path, headers=headers, json={}, timeout=10)
            assert_error(resp, 403, "StreamingExportNotEnabled", message)
    # Import is unaffected.
    resp = live.get("/api/streaming_import/get_schema")
    assert resp.status_code == 200 and resp.content == b"null"


# --- compression -------------------------------------------------------------------------------------------


def test_gzip_when_accepted(live_server: LiveServer) -> None:
    write(live_server.deployment, "docs", [{"text": "lorem ipsum " * 50, "i": i} for i in range(200)])
    url = live_server.url + "/api/list_snapshot"
    headers = {**live_server.auth(), "Accept-Encoding": "gzip"}
    raw = requests.get(url, headers=headers, stream=True, timeout=30)
    assert raw.status_code == 200
    assert raw.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in raw.headers["vary"].lower()
    compressed = raw.raw.read(decode_content=False)
    page = orjson.loads(gzip.decompress(compressed))
    assert len(page["values"]) == 200
    assert len(compressed) < len(orjson.dumps(page)) // 5
    # Same through requests' transparent decoding (it sends `gzip, deflate`), and POST.
    assert len(body(live_server.post("/api/list_snapshot", json={}))["values"]) == 200
    # Not when refused or not offered, nor for tiny bodies.
    for encoding in ("identity", "gzip;q=0", "br", "*;q=0"):
        resp = requests.get(
            url, headers={**live_server.auth(), "Accept-Encoding": encoding}, stream=True, timeout=30
        )
        assert "content-encoding" not in resp.headers, encoding
        assert len(orjson.loads(resp.raw.read(decode_content=False))["values"]) == 200
    tiny = requests.get(
        live_server.url + "/api/test_streaming_export_connection", headers=headers, timeout=10
    )
    assert "content-encoding" not in tiny.headers and tiny.content == b"null"


def test_concurrent_requests_are_served_in_parallel(live_server: LiveServer) -> None:
    """Domain calls run in the threadpool: many at once complete and agree."""
    from concurrent.futures import ThreadPoolExecutor

    write(live_server.deployment, "t", [{"i": i} for i in range(50)])

    def fetch(_: int) -> int:
        resp = requests.get(live_server.url + "/api/list_snapshot", headers=live_server.auth(), timeout=30)
        return len(body(resp)["values"])

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(fetch, range(16))) == {50}


def test_query_values_are_url_decoded(live_server: LiveServer) -> None:
    write(live_server.deployment, "users", [{"n": 1}])
    first = body(live_server.get("/api/list_snapshot", params={"tableName": "users"}))
    assert first["hasMore"] is False
    # A cursor full of JSON punctuation round-trips through the query string.
    live = live_server
    write(live.deployment, "users", [{"n": i} for i in range(2, 1100)])
    page = body(live.get("/api/list_snapshot", params={"tableName": "users"}))
    assert page["hasMore"] and page["cursor"].startswith("{")
    url = f"{live.url}/api/list_snapshot?tableName=users&cursor={quote(page['cursor'])}&snapshot={page['snapshot']}"
    nxt = body(requests.get(url, headers=live.auth(), timeout=30))
    assert len(page["values"]) + len(nxt["values"]) == 1099


def test_a_future_deltas_cursor_is_refused(live_server: LiveServer) -> None:
    """§5.4: every commit made after a response must have ``ts > cursor``. Echoing a cursor from the future
    (clock-skewed or corrupted client state) would let the next commits fall at or below it and never be
    delivered, so it is refused like list_snapshot's SnapshotTooNew."""
    future = live_server.deployment.read_timestamp() + 3_600 * 10**9
    resp = live_server.post("/api/document_deltas", json={"cursor": future})
    assert body(resp, 400) == {
        "code": "DocumentDeltasCursorTooNew",
        "message": f"Cursor value {future} is in the future.",
    }
