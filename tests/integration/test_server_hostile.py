"""Hostile input through the live server (issue #7 items 6-9): over-deep values, the JSON literal ``-0``,
malformed ``list_snapshot`` cursors and limits that must fail before the first write. On SQLite and
PostgreSQL."""

from __future__ import annotations

import base64
import logging
from typing import Any

import orjson
import pytest
import requests

from connectors import ids
from connectors.backend.engine import DeploymentConfig
from connectors.backend.streaming_import import FIVETRAN_PRIMARY_KEY_INDEX
from tests.integration.conftest import LiveServer, ServerFactory
from tests.integration.test_server_import import BOOKS, assert_error, call, docs, ok_empty

NEG_ZERO = {"$float": "AAAAAAAAAIA="}
MiB = 1 << 20


def post_raw(live: LiveServer, name: str, body: bytes) -> requests.Response:
    return call(live, "POST", name, data=body, headers={"Content-Type": "application/json"})


def nested_object(depth: int) -> bytes:
    """``{"a":{"a":…1…}}``: ``depth`` levels of objects."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def airbyte_body(data: bytes, table: str = "t") -> bytes:
    return (
        b'{"tables":{"' + table.encode() + b'":{"primaryKey":null,"jsonSchema":null}},'
        b'"messages":[{"tableName":"' + table.encode() + b'","data":' + data + b"}]}"
    )


def fivetran_body(row: bytes, table: str = "public_books") -> bytes:
    return b'[{"table":"' + table.encode() + b'","operation":"Upsert","row":' + row + b"}]"


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        text = record.getMessage()
        assert record.exc_info is None, text[:300]
        assert "Traceback" not in text and "RecursionError" not in text and "Unhandled" not in text, text[
            :300
        ]


# --- item 6: deep nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "named"), [(400, "400"), (1000, "1000"), (100_000, "more than 1024")])
def test_deep_airbyte_data_is_a_400_naming_the_depth(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture, depth: int, named: str
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = post_raw(live_server, "import_airbyte_records", airbyte_body(nested_object(depth)))
    err = assert_error(resp, 400, "InvalidValue")
    assert f"nested {named} levels deep" in err["message"], err
    assert "the limit is 16" in err["message"]
    if depth <= 1000:  # parsed, then refused by the record conversion: it names the record
        assert err["message"].startswith("Record 0 for table t: ")
    assert len(err["message"]) < 1000
    assert_no_traceback(caplog)
    assert docs(live_server.deployment, "t") == []


@pytest.mark.parametrize(("depth", "named"), [(400, "400"), (1000, "1000"), (100_000, "more than 1024")])
def test_deep_fivetran_row_is_a_400_naming_the_depth(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture, depth: int, named: str
) -> None:
    caplog.set_level(logging.DEBUG)
    ok_empty(call(live_server, "POST", "fivetran_create_table", {"tableDefinition": BOOKS}))
    row = b'{"id":1.0,"deep":' + nested_object(depth) + b"}"
    resp = post_raw(live_server, "apply_fivetran_operations", fivetran_body(row))
    err = assert_error(resp, 400, "InvalidValue")
    # The row is level 1, so its "deep" field is one level more.
    assert f"nested {depth + 1 if depth <= 1000 else named} levels deep" in err["message"], err
    if depth <= 1000:
        assert err["message"].startswith("Operation 0 for table public_books: ")
    assert len(err["message"]) < 1000
    assert_no_traceback(caplog)
    assert docs(live_server.deployment, "public_books") == []


def test_sixteen_levels_are_accepted_and_seventeen_are_not(live_server: LiveServer) -> None:
    ok_empty(post_raw(live_server, "import_airbyte_records", airbyte_body(nested_object(16))))
    err = assert_error(
        post_raw(live_server, "import_airbyte_records", airbyte_body(nested_object(17))), 400, "InvalidValue"
    )
    assert "nested 17 levels deep" in err["message"]
    assert len(docs(live_server.deployment, "t")) == 1


# --- item 7: -0 -----------------------------------------------------------------------------------------


def encoded_snapshot(live: LiveServer, table: str) -> list[dict[str, Any]]:
    resp = live.post(
        "/api/list_snapshot",
        json={
            "format": "convex_encoded_json",
            "selection": {"_other": "excluded", "": {"_other": "excluded", table: {"_other": "included"}}},
        },
        key=live.export_key,
    )
    assert resp.status_code == 200, resp.text
    return orjson.loads(resp.content)["values"]


def test_airbyte_negative_zero_is_float64_negative_zero(live_server: LiveServer) -> None:
    # The text "-0" inside strings must stay as it is.
    data = b'{"z":-0,"list":[-0, 0, -0.5, -0e0],"s":"-0","t":"a\\"-0"}'
    ok_empty(post_raw(live_server, "import_airbyte_records", airbyte_body(data)))
    (value,) = encoded_snapshot(live_server, "t")
    assert value["z"] == NEG_ZERO
    assert value["list"] == [NEG_ZERO, 0.0, -0.5, NEG_ZERO]
    assert value["s"] == "-0" and value["t"] == 'a"-0'


def test_fivetran_negative_zero_is_float64_negative_zero(live_server: LiveServer) -> None:
    ok_empty(call(live_server, "POST", "fivetran_create_table", {"tableDefinition": BOOKS}))
    row = b'{"id":{"$integer":"AQAAAAAAAAA="},"n":-0,"s":"-0","fivetran":{"synced":1.0,"deleted":false}}'
    ok_empty(post_raw(live_server, "apply_fivetran_operations", fivetran_body(row)))
    (value,) = encoded_snapshot(live_server, "public_books")
    assert value["n"] == NEG_ZERO
    assert value["s"] == "-0"


# --- item 8: list_snapshot cursors ----------------------------------------------------------------------


def test_malformed_list_snapshot_cursors_are_refused(live_server: LiveServer) -> None:
    live = live_server
    dep = live.deployment
    with dep.transaction() as tx:
        for table in ("a", "b"):
            tx.create_table(table)
            for i in range(3):
                tx.insert(table, {"i": i})
    first = live.post("/api/list_snapshot", json={"format": "json"}, key=live.export_key)
    assert first.status_code == 200
    page = first.json()
    snapshot, good = page["snapshot"], page["cursor"]
    tablet = orjson.loads(good)["tablet"]
    other_table_id = ids.encode_id(ids.MAX_TABLE_NUMBER, b"\x01" * ids.INTERNAL_ID_LEN)
    unknown_tablet = base64.urlsafe_b64encode(b"\xfe" * 16).rstrip(b"=").decode()
    bad_cursors = [
        "not json",
        "[]",
        "null",
        '"a string"',
        "{}",
        orjson.dumps({"id": None}).decode(),
        orjson.dumps({"tablet": 5, "id": None}).decode(),
        orjson.dumps({"tablet": "!" * 22, "id": None}).decode(),  # not base64
        orjson.dumps({"tablet": "~~~~~~~~~~~~~~~~~~~~AA", "id": None}).decode(),
        orjson.dumps({"tablet": tablet[:-1], "id": None}).decode(),  # wrong length
        orjson.dumps({"tablet": tablet + "A", "id": None}).decode(),
        orjson.dumps({"tablet": tablet[:-1] + "B", "id": None}).decode(),  # non-zero padding bits
        orjson.dumps({"tablet": tablet, "id": 5}).decode(),
        orjson.dumps({"tablet": tablet, "id": "not an id"}).decode(),
        orjson.dumps({"tablet": tablet, "id": other_table_id}).decode(),  # a document of another table
        orjson.dumps({"tablet": unknown_tablet, "id": None}).decode(),  # no such table at this snapshot
    ]
    for cursor in bad_cursors:
        for resp in (
            live.post(
                "/api/list_snapshot",
                json={"snapshot": snapshot, "cursor": cursor, "format": "json"},
                key=live.export_key,
            ),
            live.get(
                "/api/list_snapshot",
                params={"snapshot": str(snapshot), "cursor": cursor, "format": "json"},
                key=live.export_key,
            ),
        ):
            assert_error(resp, 400, "InvalidListSnapshotCursor", None)
            assert "treat it as an opaque value" in resp.json()["message"], cursor
    # The real cursor still works.
    ok = live.post(
        "/api/list_snapshot",
        json={"snapshot": snapshot, "cursor": good, "format": "json"},
        key=live.export_key,
    )
    assert ok.status_code == 200, ok.text


# --- item 9: limits before the first write --------------------------------------------------------------


@pytest.mark.parametrize("problem", ["fields", "size"])
def test_airbyte_record_over_a_limit_with_system_fields_writes_nothing(
    server_factory: ServerFactory, problem: str
) -> None:
    # Two records per transaction, so the good records before the bad one would commit on their own.
    live = server_factory.start(DeploymentConfig(max_writes_per_transaction=2))
    if problem == "fields":
        bad: dict[str, Any] = {f"f{i}": i for i in range(1024)}  # 1024 user fields + _id + _creationTime
    else:
        # A user document 40 bytes under 1 MiB: the system fields take it over.
        bad = {"s": "x" * (MiB - 40 - len(b'{"s":""}'))}
        assert len(orjson.dumps(bad)) == MiB - 40
    records = [{"i": i} for i in range(5)] + [bad]
    body = orjson.dumps(
        {
            "tables": {"t": {"primaryKey": None, "jsonSchema": None}},
            "messages": [{"tableName": "t", "data": r} for r in records],
        }
    )
    err = assert_error(post_raw(live, "import_airbyte_records", body), 400, "InvalidValue")
    assert err["message"].startswith("Record 5 for table t: "), err
    assert "1024" in err["message"] or "too large" in err["message"]
    assert docs(live.deployment, "t") == []


def test_fivetran_row_over_a_limit_with_system_fields_writes_nothing(server_factory: ServerFactory) -> None:
    live = server_factory.start(DeploymentConfig(max_writes_per_transaction=2))
    ok_empty(call(live, "POST", "fivetran_create_table", {"tableDefinition": BOOKS}))

    def row(n: int, **extra: Any) -> dict[str, Any]:
        return {"id": float(n), "fivetran": {"synced": 1.0, "deleted": False}, **extra}

    fields = {f"f{i}": 1.0 for i in range(1022)}  # + id + fivetran = 1024 user fields
    ops = [{"table": "public_books", "operation": "Upsert", "row": row(i)} for i in range(5)]
    ops.append({"table": "public_books", "operation": "Upsert", "row": row(99, **fields)})
    err = assert_error(post_raw(live, "apply_fivetran_operations", orjson.dumps(ops)), 400, "InvalidValue")
    assert err["message"].startswith("Operation 5 for table public_books: "), err
    assert "1026 fields" in err["message"] and "the limit is 1024" in err["message"]
    assert docs(live.deployment, "public_books") == []
    assert live.deployment.index("public_books", FIVETRAN_PRIMARY_KEY_INDEX) is not None


def test_documents_that_fit_with_their_system_fields_are_written(live_server: LiveServer) -> None:
    fields: dict[str, Any] = {f"f{i}": i for i in range(1022)}
    ok_empty(post_raw(live_server, "import_airbyte_records", airbyte_body(orjson.dumps(fields))))
    (doc,) = docs(live_server.deployment, "t")
    assert len(doc) == 1024


@pytest.mark.parametrize("depth", [400, 1000, 100_000])
def test_deep_fivetran_table_definition_is_a_400(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    caplog.set_level(logging.DEBUG)
    validator = b'{"type":"array","value":' * depth + b'{"type":"any"}' + b"}" * depth
    body = b'{"tableDefinition":{"tableName":"t","indexes":[],"documentType":' + validator + b"}}"
    resp = post_raw(live_server, "fivetran_create_table", body)
    assert resp.status_code == 400, resp.text
    message = resp.json()["message"]
    assert "levels deep" in message and len(message) < 500
    assert_no_traceback(caplog)
