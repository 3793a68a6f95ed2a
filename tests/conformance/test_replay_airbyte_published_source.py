"""Airbyte ``source-convex`` (0.4.x, and the 0.2.0 wire variant) replayed against a live server.

``ConvexStreamReplay`` reproduces the connector's paging state machine (airbyte.md §1.6: ``request_params``,
``next_page_token``, ``path``, ``read_records``) and the CDK 0.80 availability probe, over the exact GET
requests of ``clients.AirbyteSource``. Every response field the connector reads is checked: ``values``,
``cursor``, ``snapshot``, ``hasMore``, and ``_ts`` / ``_deleted`` on each record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from connectors.backend.engine import DeploymentConfig
from tests.conformance.clients import (
    THING,
    THING_CLEAN,
    THING_ENCODED,
    AirbyteSource,
    error_body,
    ok_json,
    typed,
    write,
)
from tests.integration.conftest import LiveServer, ServerFactory

META = ("_component", "_table", "_ts")
DELTA_PROPERTIES = {
    "_table": {"type": "string"},
    "_component": {"type": "string"},
    "_ts": {"type": "integer"},
    "_deleted": {"type": "boolean"},
}


@dataclass
class ConvexStreamReplay:
    """``source_convex.ConvexStream`` 0.4.x for one table, driven over HTTP."""

    client: AirbyteSource
    table: str
    snapshot_cursor: str | None = None
    snapshot_has_more: bool = True
    delta_cursor: int | None = None
    delta_has_more: bool = True
    pages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> dict[str, Any]:
        return {
            "snapshot_cursor": self.snapshot_cursor,
            "snapshot_has_more": self.snapshot_has_more,
            "delta_cursor": self.delta_cursor,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        # CDK 0.80 only assigns a non-empty stored state.
        if state:
            self.snapshot_cursor = state["snapshot_cursor"]
            self.snapshot_has_more = state["snapshot_has_more"]
            self.delta_cursor = state["delta_cursor"]

    def _fetch(self) -> dict[str, Any]:
        if self.snapshot_has_more:
            resp = self.client.list_snapshot(self.table, self.snapshot_cursor, self.delta_cursor)
        else:
            resp = self.client.document_deltas(self.table, self.delta_cursor)
        page = ok_json(resp)
        check_page_shape(page, is_delta=not self.snapshot_has_more)
        return page

    def _next_page_token(self, page: dict[str, Any]) -> bool:
        if self.snapshot_has_more:
            self.snapshot_cursor = page["cursor"]
            self.snapshot_has_more = page["hasMore"]
            self.delta_cursor = page["snapshot"]
        else:
            self.delta_cursor = page["cursor"]
            self.delta_has_more = page["hasMore"]
        return self.snapshot_has_more or self.delta_has_more

    def probe(self) -> None:
        """CDK 0.80 ``HttpAvailabilityStrategy``: ``next(read_records(full_refresh))``. The generator is
        dropped after its first record, so the state only moves when the first page is empty."""
        self.delta_has_more = False
        page = self._fetch()
        if not page["values"]:
            self._next_page_token(page)

    def read(self, *, incremental: bool) -> list[dict[str, Any]]:
        """``read_records``: pages until neither phase has more; records decorated like the connector."""
        self.delta_has_more = incremental
        records: list[dict[str, Any]] = []
        while True:
            page = self._fetch()
            self.pages.append(page)
            for value in page["values"]:
                record = dict(value)
                ts_ns = record["_ts"]
                assert type(ts_ns) is int
                record["_ab_cdc_lsn"] = ts_ns
                record["_deleted"] = "_deleted" in record and record["_deleted"]
                records.append(record)
            if not self._next_page_token(page):
                return records


def check_page_shape(page: dict[str, Any], *, is_delta: bool) -> None:
    if is_delta:
        assert set(page) == {"values", "cursor", "hasMore"}, page.keys()
        assert type(page["cursor"]) is int
    else:
        assert set(page) == {"values", "snapshot", "cursor", "hasMore"}, page.keys()
        assert type(page["snapshot"]) is int
        assert (type(page["cursor"]) is str) if page["hasMore"] else page["cursor"] is None
    assert type(page["hasMore"]) is bool and isinstance(page["values"], list)
    for value in page["values"]:
        assert type(value["_component"]) is str and type(value["_table"]) is str
        assert type(value["_ts"]) is int and type(value["_id"]) is str
        if is_delta:
            assert type(value["_deleted"]) is bool
        else:
            assert "_deleted" not in value
            assert value["_ts"] <= page["snapshot"]


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def seed(live: LiveServer) -> dict[str, list[str]]:
    """Root ``posts`` (3), ``users`` (2), ``things`` (1), empty ``empty``; component ``child`` has its
    own ``posts`` (2), which a root-table stream must never see."""
    dep = live.deployment
    _, posts = write(dep, "posts", [{"title": f"p{i}", "n": i} for i in range(3)])
    _, users = write(dep, "users", [{"name": "ada"}, {"name": "bob"}])
    _, things = write(dep, "things", [THING])
    write(dep, "empty", [])
    _, child = write(dep, "posts", [{"title": "child-a"}, {"title": "child-b"}], component="child")
    return {"posts": posts, "users": users, "things": things, "child_posts": child}


@pytest.fixture
def live(server_factory: ServerFactory) -> LiveServer:
    # Small pages so every read spans several snapshot and delta pages.
    return server_factory.start(
        DeploymentConfig(background=False, snapshot_page_limit=2, deltas_page_limit=3)
    )


# --- check / discover --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.4.0", "0.2.0"])
def test_check_and_discover(live: LiveServer, version: str) -> None:
    seed(live)
    client = AirbyteSource(live.url, live.export_key, version)
    resp = client.json_schemas()
    fmt = "json" if version == "0.4.0" else "convex_json"
    assert query(client.sent[-1].url or "") == [("deltaSchema", "true"), ("format", fmt)]
    schemas = ok_json(resp)  # check: 200 is all it needs
    assert isinstance(schemas, dict)
    assert {"posts", "users", "things", "empty"} <= set(schemas)
    for table, schema in schemas.items():
        assert schema, f"{table}: an empty schema gives the stream no properties"
        assert schema["type"] == "object"
        properties = schema["properties"]  # discover raises KeyError without it
        assert isinstance(properties, dict)
        for name, prop in DELTA_PROPERTIES.items():
            assert properties.get(name) == prop, (table, name)
            assert name not in schema.get("required", [])
        assert properties["_id"]["type"] == "string"
        assert properties["_creationTime"] == {"type": "number"}
        # What discover does to each schema must work (on a copy).
        copy = orjson.loads(orjson.dumps(schema))
        copy["additionalProperties"] = True
        copy["properties"]["_ab_cdc_deleted_at"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert set(schemas["empty"]["properties"]) == {"_id", "_creationTime", *DELTA_PROPERTIES}
    assert sorted(schemas["empty"]["required"]) == ["_creationTime", "_id"]
    assert "name" in schemas["users"]["properties"]
    # `posts` exists in the root and in `child`: the flat map keeps one of them (unspecified which).
    assert "title" in schemas["posts"]["properties"]


def test_check_reports_code_and_message_on_failure(live: LiveServer) -> None:
    resp = AirbyteSource(live.url, "prod:nope|invalid").json_schemas()
    # format_http_error reads `code` and `message`; the CDK does not retry 4xx.
    assert 400 <= resp.status_code < 500
    err = resp.json()
    assert isinstance(err["code"], str) and err["code"] and isinstance(err["message"], str)


# --- read ------------------------------------------------------------------------------------------------


def test_full_refresh_reads_one_root_table_over_several_pages(live: LiveServer) -> None:
    ids = seed(live)
    client = AirbyteSource(live.url, live.export_key)
    stream = ConvexStreamReplay(client, "posts")
    stream.probe()
    records = stream.read(incremental=False)
    # Probe, then the real first page: both with no cursor and no snapshot.
    assert [query(r.url or "") for r in client.sent[:2]] == [[("tableName", "posts"), ("format", "json")]] * 2
    for sent in client.sent[2:]:
        params = dict(query(sent.url or ""))
        assert urlsplit(sent.url or "").path == "/api/list_snapshot"
        assert set(params) == {"tableName", "format", "cursor", "snapshot"}
    assert len(stream.pages) >= 2, "page limit 2 with 3 documents needs several pages"
    snapshots = {page["snapshot"] for page in stream.pages}
    assert len(snapshots) == 1
    assert sorted(r["_id"] for r in records) == sorted(ids["posts"])
    assert all((r["_component"], r["_table"]) == ("", "posts") for r in records)
    assert sorted(r["title"] for r in records) == ["p0", "p1", "p2"]
    assert all(r["_deleted"] is False for r in records)
    assert stream.state == {
        "snapshot_cursor": None,
        "snapshot_has_more": False,
        "delta_cursor": snapshots.pop(),
    }


def test_empty_table_and_empty_first_probe_page(live: LiveServer) -> None:
    seed(live)
    stream = ConvexStreamReplay(AirbyteSource(live.url, live.export_key), "empty")
    stream.probe()  # an empty first page: the probe moves the stream to the delta phase
    assert stream.snapshot_has_more is False and type(stream.delta_cursor) is int
    assert stream.read(incremental=True) == []
    assert stream.delta_has_more is False


def test_incremental_sync_then_resumed_delta_sync(live: LiveServer) -> None:
    ids = seed(live)
    dep = live.deployment
    first = ConvexStreamReplay(AirbyteSource(live.url, live.export_key), "posts")
    first.probe()
    assert len(first.read(incremental=True)) == 3
    state = first.state
    assert state["snapshot_has_more"] is False and type(state["delta_cursor"]) is int

    # Changes: root posts (insert, patch, replace, delete, several per transaction) and, interleaved,
    # writes to other tables and to the component's own `posts`, which this stream must not see.
    with dep.transaction() as tx:
        new_id = tx.insert("posts", {"title": "p3"})
        tx.patch(ids["posts"][0], {"title": "p0-patched"})
        tx.insert("users", {"name": "cy"})
    with dep.transaction() as tx:
        tx.insert("posts", {"title": "child-c"}, "child")
        tx.patch(ids["child_posts"][0], {"title": "child-a2"}, "child")
    with dep.transaction() as tx:
        tx.replace(ids["posts"][1], {"title": "p1-replaced", "extra": True})
        tx.delete(ids["posts"][2])
    write(dep, "users", [{"name": f"u{i}"} for i in range(4)])

    client = AirbyteSource(live.url, live.export_key)
    resumed = ConvexStreamReplay(client, "posts")
    resumed.probe()  # before the state is assigned: a cursor-less list_snapshot, records dropped
    resumed.set_state(state)
    records = resumed.read(incremental=True)
    assert [urlsplit(r.url or "").path for r in client.sent] == ["/api/list_snapshot"] + [
        "/api/document_deltas"
    ] * len(resumed.pages)
    assert query(client.sent[1].url or "") == [
        ("tableName", "posts"),
        ("format", "json"),
        ("cursor", str(state["delta_cursor"])),
    ]
    assert all((r["_component"], r["_table"]) == ("", "posts") for r in records)
    by_id = {r["_id"]: r for r in records}
    assert len(by_id) == len(records) == 4
    assert by_id[new_id]["title"] == "p3" and by_id[new_id]["_deleted"] is False
    assert by_id[ids["posts"][0]]["title"] == "p0-patched" and by_id[ids["posts"][0]]["n"] == "0"
    assert {k: v for k, v in by_id[ids["posts"][1]].items() if not k.startswith("_")} == {
        "title": "p1-replaced",
        "extra": True,
    }
    deleted = by_id[ids["posts"][2]]
    assert set(deleted) - {"_ab_cdc_lsn"} == {"_id", "_deleted", *META}
    assert deleted["_deleted"] is True
    timestamps = [r["_ts"] for r in records]
    assert timestamps == sorted(timestamps) and timestamps[0] > state["delta_cursor"]
    cursors = [page["cursor"] for page in resumed.pages]
    assert cursors == sorted(cursors) and cursors[-1] >= timestamps[-1]
    assert [page["hasMore"] for page in resumed.pages][-1] is False

    # Nothing new for `posts`: no records, and the cursor still moves forward.
    again = ConvexStreamReplay(AirbyteSource(live.url, live.export_key), "posts")
    again.set_state(resumed.state)
    assert again.read(incremental=True) == []
    assert again.delta_cursor is not None and again.delta_cursor >= resumed.state["delta_cursor"]


def test_exhausted_deltas_advance_past_other_tables_writes(live: LiveServer) -> None:
    seed(live)
    dep = live.deployment
    stream = ConvexStreamReplay(AirbyteSource(live.url, live.export_key), "posts")
    stream.read(incremental=True)
    start = stream.delta_cursor
    assert start is not None
    last_ts = 0
    for i in range(5):  # only other tables: more log rows than one delta page reads
        last_ts, _ = write(dep, "users", [{"name": f"x{i}"}, {"name": f"y{i}"}])
    page = ok_json(stream.client.document_deltas("posts", start))
    while page["hasMore"]:  # pages may be empty with hasMore true
        assert page["values"] == []
        page = ok_json(stream.client.document_deltas("posts", page["cursor"]))
    assert page["values"] == [] and page["cursor"] >= last_ts
    ts, (post_id,) = write(dep, "posts", [{"title": "later"}])
    later = ok_json(stream.client.document_deltas("posts", page["cursor"]))
    assert [(v["_id"], v["_ts"]) for v in later["values"]] == [(post_id, ts)]
    assert later["cursor"] >= ts and later["hasMore"] is False


# --- encodings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "expected"), [("0.4.0", THING_CLEAN), ("0.2.0", THING_ENCODED)])
def test_value_encodings_in_snapshot_and_deltas(
    live: LiveServer, version: str, expected: dict[str, Any]
) -> None:
    ids = seed(live)
    stream = ConvexStreamReplay(AirbyteSource(live.url, live.export_key, version), "things")
    (record,) = stream.read(incremental=True)
    user_fields = {k: v for k, v in record.items() if not k.startswith("_")}
    assert typed(user_fields) == typed(expected)
    assert type(record["_creationTime"]) is float and record["_id"] == ids["things"][0]
    with live.deployment.transaction() as tx:
        tx.patch(ids["things"][0], {"s": "patched"})
    (delta,) = stream.read(incremental=True)
    assert typed({k: v for k, v in delta.items() if not k.startswith("_")}) == typed(
        {**expected, "s": "patched"}
    )
    assert delta["_deleted"] is False


def test_unknown_format_is_a_client_error(live: LiveServer) -> None:
    client = AirbyteSource(live.url, live.export_key)
    resp = client.send("GET", "/api/list_snapshot", params=[("tableName", "posts"), ("format", "csv")])
    error_body(resp, 400, "BadFormat", "format param must be one of [`json`]. Got csv")
