"""Streaming import over real HTTP (shared/spec/streaming-import.md), raw ``requests`` to pin the wire."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests

from connectors.backend.engine import Deployment
from connectors.server.app import AIRBYTE_IMPORT_BODY_LIMIT, ServerConfig
from tests.integration.conftest import LiveServer, ServerFactory

INTERNAL = {"code": "InternalServerError", "message": "Your request couldn't be completed. Try again later."}
AIRBYTE_HEADERS = {"Accept": "application/json", "Convex-Client": "streaming-import-0.1.0"}
FIVETRAN_HEADERS = {"Convex-Client": "fivetran-import-0.0.1"}
JSON = {"Content-Type": "application/json"}
BASE = "/api/streaming_import/"


def call(live: LiveServer, method: str, name: str, payload: Any = None, **kwargs: Any) -> requests.Response:
    if payload is not None:
        kwargs["json"] = payload
    return live.request(method, BASE + name, key=kwargs.pop("key", live.import_key), **kwargs)


def ok_empty(resp: requests.Response) -> None:
    """Import success: 200 with an empty body (and so no content type)."""
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert resp.content == b""
    assert "content-type" not in resp.headers


def assert_error(
    resp: requests.Response, status: int, code: str, message: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    err = orjson.loads(resp.content)
    assert set(err) == {"code", "message"} and err["code"] == code, err
    if message is not None:
        assert err["message"] == message, err
    return err


def docs(dep: Deployment, table: str) -> list[dict[str, Any]]:
    info = dep.find_table(table)
    if info is None:
        return []
    return [d.value() for d in dep.iter_snapshot(info)]


def airbyte_batch(table: str, records: list[dict[str, Any]], primary_key: Any = None) -> dict[str, Any]:
    return {
        "tables": {table: {"primaryKey": primary_key, "jsonSchema": {"type": "object", "properties": {}}}},
        "messages": [{"tableName": table, "data": r} for r in records],
    }


# --- Airbyte -----------------------------------------------------------------------------------------------


def test_airbyte_append_and_renaming(live_server: LiveServer) -> None:
    live = live_server
    records = [{"name": "a", "n": 1, "_id": "x", "nested": [{"$k": True}]}, {"name": "b", "n": 2.5}]
    ok_empty(
        call(
            live,
            "POST",
            "import_airbyte_records",
            airbyte_batch("My Table", records),
            headers=AIRBYTE_HEADERS,
        )
    )
    stored = sorted(docs(live.deployment, "source_my_table"), key=lambda d: d["name"])
    assert [d["name"] for d in stored] == ["a", "b"]
    # Every JSON number is a Float64; `_`/`$` keys are renamed at every depth.
    assert type(stored[0]["n"]) is float and stored[0]["n"] == 1.0
    assert stored[0]["source_id"] == "x" and stored[0]["nested"] == [{"source_k": True}]
    # Empty batches are sent on every Airbyte state message.
    ok_empty(call(live, "POST", "import_airbyte_records", {"tables": {}, "messages": []}))
    ok_empty(call(live, "POST", "import_airbyte_records", airbyte_batch("users", [])))
    # `jsonSchema` may be any value, including null, but must be present.
    batch = {"tables": {"t": {"jsonSchema": None}}, "messages": [{"tableName": "t", "data": {"a": 1}}]}
    ok_empty(call(live, "POST", "import_airbyte_records", batch))
    assert len(docs(live.deployment, "t")) == 1


def test_airbyte_dedup_with_primary_key_indexes(live_server: LiveServer) -> None:
    live = live_server
    ok_empty(call(live, "PUT", "add_primary_key_indexes", {"indexes": {"dedup": [["primary_key"]]}}))
    # GET with a JSON body, exactly as Airbyte's `requests.request("GET", url, json=...)` sends it.
    resp = requests.request(
        "GET",
        live.url + BASE + "primary_key_indexes_ready",
        json={"tables": ["dedup", "dedup"]},
        headers={**live.auth(live.import_key), **AIRBYTE_HEADERS},
        timeout=30,
    )
    assert resp.status_code == 200 and orjson.loads(resp.content) == {"indexesReady": True}
    assert resp.headers["content-type"] == "application/json"
    records = [
        {"primary_key": "key1", "value": "value1"},
        {"primary_key": "key1", "value": "value2"},
        {"primary_key": "key2", "value": "value1"},
        {"primary_key": "key3", "value": "value1"},
        {"primary_key": "key3", "_ab_cdc_deleted_at": "2024-01-01T00:00:00Z", "_ab_cdc_lsn": "x"},
    ]
    ok_empty(call(live, "POST", "import_airbyte_records", airbyte_batch("dedup", records, [["primary_key"]])))
    stored = {d["primary_key"]: d["value"] for d in docs(live.deployment, "dedup")}
    assert stored == {"key1": "value2", "key2": "value1"}
    # A record without a value for the key.
    resp = call(
        live, "POST", "import_airbyte_records", airbyte_batch("dedup", [{"value": 1}], [["primary_key"]])
    )
    assert_error(resp, 400, "MissingPrimaryKeyValue")


def test_airbyte_request_errors(live_server: LiveServer) -> None:
    live = live_server
    name = "import_airbyte_records"
    assert_error(
        call(live, "POST", name, airbyte_batch("t", [{"a": 1}], [])),
        400,
        "EmptyPrimaryKey",
        "Primary keys cannot be empty",
    )
    batch = airbyte_batch("t", [])
    batch["messages"] = [{"tableName": "other", "data": {"a": 1}}]
    assert_error(call(live, "POST", name, batch), 400, "MissingStream", "Missing stream for table other")
    # `data` that is not an object is a plain error upstream: generic 500.
    batch = airbyte_batch("t", [])
    batch["messages"] = [{"tableName": "t", "data": [1, 2]}]
    resp = call(live, "POST", name, batch)
    assert resp.status_code == 500 and orjson.loads(resp.content) == INTERNAL
    # Deserialization failures are 400 BadJsonBody naming the key.
    for payload, key in [
        ({"tables": {"t": {"primaryKey": None}}, "messages": []}, "`tables.t.jsonSchema`"),
        ({"messages": []}, "`tables`"),
        ({"tables": {}}, "`messages`"),
        ({"tables": [], "messages": []}, "`tables`"),
        ({"tables": {}, "messages": {}}, "`messages`"),
        ({"tables": {}, "messages": [{"data": {}}]}, "`messages[0].tableName`"),
        ({"tables": {}, "messages": [{"tableName": "t"}]}, "`messages[0].data`"),
        ({"tables": {}, "messages": [{"tableName": 1, "data": {}}]}, "`messages[0].tableName`"),
        ({"tables": {"t": {"primaryKey": "id", "jsonSchema": {}}}, "messages": []}, "`tables.t.primaryKey`"),
        (
            {"tables": {"t": {"primaryKey": [[1]], "jsonSchema": {}}}, "messages": []},
            "`tables.t.primaryKey[0][0]`",
        ),
        ([], "the request body"),
    ]:
        err = assert_error(call(live, "POST", name, payload), 400, "BadJsonBody")
        assert key in err["message"], (payload, err)
    assert_error(
        live.post(BASE + name, data=orjson.dumps({"tables": {}, "messages": []}), key=live.import_key),
        400,
        "BadJsonBody",
        "Expected request with `Content-Type: application/json`",
    )
    assert_error(
        live.post(BASE + name, data=b'{"tables": {', headers=JSON, key=live.import_key), 400, "BadJsonBody"
    )
    # Unknown keys are ignored.
    ok_empty(call(live, "POST", name, {"tables": {}, "messages": [], "extra": 1}))


def test_clear_tables(live_server: LiveServer) -> None:
    live = live_server
    ok_empty(call(live, "PUT", "add_primary_key_indexes", {"indexes": {"users": [["email"]]}}))
    ok_empty(
        call(
            live,
            "POST",
            "import_airbyte_records",
            airbyte_batch("users", [{"email": f"{i}@x"} for i in range(5)]),
        )
    )
    assert len(docs(live.deployment, "users")) == 5
    ok_empty(
        call(live, "PUT", "clear_tables", {"tableNames": ["users", "brand_new"]}, headers=AIRBYTE_HEADERS)
    )
    assert docs(live.deployment, "users") == [] and live.deployment.find_table("brand_new") is not None
    # The primary-key index survives the clear.
    resp = call(live, "GET", "primary_key_indexes_ready", {"tables": ["users"]})
    assert orjson.loads(resp.content) == {"indexesReady": True}
    ok_empty(call(live, "PUT", "clear_tables", {"tableNames": []}))
    assert_error(call(live, "PUT", "clear_tables", {"tableNames": "users"}), 400, "BadJsonBody")
    assert_error(call(live, "PUT", "clear_tables", {"tableNames": [1]}), 400, "BadJsonBody")
    assert_error(call(live, "PUT", "clear_tables", {}), 400, "BadJsonBody")


def test_primary_key_index_errors(live_server: LiveServer) -> None:
    live = live_server
    resp = call(live, "GET", "primary_key_indexes_ready", {"tables": []})
    assert resp.status_code == 200 and orjson.loads(resp.content) == {"indexesReady": True}
    assert_error(call(live, "GET", "primary_key_indexes_ready", {"tables": ["nope"]}), 400, "MissingIndex")
    # A GET without a body has no JSON content type.
    assert_error(call(live, "GET", "primary_key_indexes_ready"), 400, "BadJsonBody")
    assert_error(call(live, "GET", "primary_key_indexes_ready", {"tables": "nope"}), 400, "BadJsonBody")
    assert_error(
        call(live, "PUT", "add_primary_key_indexes", {"indexes": {"t": [["_creationTime"]]}}),
        400,
        "IndexFieldsContainCreationTime",
    )
    assert_error(
        call(live, "PUT", "add_primary_key_indexes", {"indexes": {"t": [["_private"]]}}),
        400,
        "IndexFieldNameReserved",
    )
    assert_error(
        call(live, "PUT", "add_primary_key_indexes", {"indexes": {"t": [["a b"]]}}), 400, "InvalidPrimaryKey"
    )
    assert_error(call(live, "PUT", "add_primary_key_indexes", {"indexes": {"t": ["a"]}}), 400, "BadJsonBody")
    assert_error(call(live, "PUT", "add_primary_key_indexes", {"indexes": []}), 400, "BadJsonBody")


# --- Fivetran --------------------------------------------------------------------------------------------

BOOKS = {
    "tableName": "public_books",
    "indexes": [
        {
            "indexDescriptor": "_fivetran_by_primary_key",
            "fields": ["fivetran.deleted", "id", "_creationTime"],
        },
        {
            "indexDescriptor": "_fivetran_by_synced",
            "fields": ["fivetran.deleted", "fivetran.synced", "_creationTime"],
        },
    ],
    "stagedDbIndexes": [],
    "searchIndexes": [],
    "stagedSearchIndexes": [],
    "vectorIndexes": [],
    "stagedVectorIndexes": [],
    "documentType": {"type": "any"},
}


def int64(n: int) -> dict[str, str]:
    import base64

    return {"$integer": base64.b64encode(n.to_bytes(8, "little", signed=True)).decode()}


def row(n: int, title: str, synced: float, **fivetran: Any) -> dict[str, Any]:
    return {"id": int64(n), "title": title, "fivetran": {"synced": synced, "deleted": False, **fivetran}}


def op(operation: str, r: dict[str, Any], table: str = "public_books") -> dict[str, Any]:
    return {"table": table, "operation": operation, "row": r}


def test_fivetran_operations(live_server: LiveServer) -> None:
    live = live_server
    # The Rust destination's index fields end in `_creationTime`; tolerated (§13.1). A repeat is a no-op.
    for _ in range(2):
        ok_empty(
            call(live, "POST", "fivetran_create_table", {"tableDefinition": BOOKS}, headers=FIVETRAN_HEADERS)
        )
    idx = live.deployment.index("public_books", "_fivetran_by_primary_key")
    assert idx is not None and idx.fields == ("fivetran.deleted", "id", "_creationTime") and idx.is_system
    ops = [
        op("Upsert", row(1, "Dune", 1000.0)),
        op("Upsert", row(2, "Emma", 1000.0)),
        op("Upsert", row(3, "Ulysses", 1000.0)),
    ]
    ok_empty(call(live, "POST", "apply_fivetran_operations", ops, headers=FIVETRAN_HEADERS))
    update = op("Update", {"id": int64(1), "title": "Dune Messiah", "fivetran": {"synced": 2000.0}})
    ok_empty(call(live, "POST", "apply_fivetran_operations", [update, op("HardDelete", {"id": int64(2)})]))
    by_id = {d["id"]: d for d in docs(live.deployment, "public_books")}
    assert set(by_id) == {1, 3}
    assert by_id[1]["title"] == "Dune Messiah" and by_id[1]["fivetran"] == {
        "synced": 2000.0,
        "deleted": False,
    }
    ok_empty(call(live, "POST", "apply_fivetran_operations", []))
    assert_error(
        call(live, "POST", "apply_fivetran_operations", [op("Update", {"id": int64(99), "title": "x"})]),
        404,
        "FivetranMissingUpdatedRow",
        "Fivetran is trying to update a row that doesn\u2019t exist in the Convex destination.",
    )
    assert_error(
        call(
            live,
            "POST",
            "apply_fivetran_operations",
            [op("Upsert", {"title": "no id", "fivetran": {"deleted": False}})],
        ),
        400,
        "MissingValueForFivetranPrimaryKeyIndex",
    )
    assert_error(
        call(live, "POST", "apply_fivetran_operations", [op("Upsert", row(1, "x", 1.0), table="no_index")]),
        400,
        "MissingFivetranPrimaryKeyIndex",
    )
    for payload, key in [
        ({"table": "t"}, "the request body"),
        ([{"table": "public_books", "operation": "Delete", "row": {}}], "`[0].operation`"),
        ([{"table": "public_books", "operation": "Upsert"}], "`[0].row`"),
        ([{"table": "public_books", "operation": "Upsert", "row": []}], "`[0].row`"),
        ([{"operation": "Upsert", "row": {}}], "`[0].table`"),
    ]:
        err = assert_error(call(live, "POST", "apply_fivetran_operations", payload), 400, "BadJsonBody")
        assert key in err["message"], (payload, err)
    assert_error(call(live, "POST", "fivetran_create_table", {}), 400, "BadJsonBody")
    assert_error(call(live, "POST", "fivetran_create_table", {"tableDefinition": []}), 400, "BadJsonBody")


def test_fivetran_truncate(live_server: LiveServer) -> None:
    live = live_server
    ok_empty(call(live, "POST", "fivetran_create_table", {"tableDefinition": BOOKS}))
    ops = [op("Upsert", row(i, f"b{i}", float(i * 1000))) for i in range(10)]
    ok_empty(call(live, "POST", "apply_fivetran_operations", ops))
    truncate = {
        "tableName": "public_books",
        "deleteBefore": "1970-01-01T00:00:03Z",
        "deleteType": "HardDelete",
    }
    ok_empty(call(live, "POST", "fivetran_truncate_table", truncate, headers=FIVETRAN_HEADERS))
    assert sorted(d["id"] for d in docs(live.deployment, "public_books")) == list(range(3, 10))
    # Offsets and fractional seconds: 00:00:05.5+00:00 is 5500 ms.
    soft = {
        "tableName": "public_books",
        "deleteBefore": "1970-01-01T01:00:05.5+01:00",
        "deleteType": "SoftDelete",
    }
    ok_empty(call(live, "POST", "fivetran_truncate_table", soft))
    deleted = {d["id"]: d["fivetran"]["deleted"] for d in docs(live.deployment, "public_books")}
    assert deleted == {i: i < 6 for i in range(3, 10)}
    ok_empty(
        call(
            live,
            "POST",
            "fivetran_truncate_table",
            {"tableName": "missing", "deleteBefore": None, "deleteType": "SoftDelete"},
        )
    )
    ok_empty(
        call(
            live, "POST", "fivetran_truncate_table", {"tableName": "public_books", "deleteType": "HardDelete"}
        )
    )
    assert docs(live.deployment, "public_books") == []
    for payload, key in [
        ({"tableName": "t", "deleteBefore": "yesterday", "deleteType": "HardDelete"}, "`deleteBefore`"),
        ({"tableName": "t", "deleteBefore": "2024-02-09", "deleteType": "HardDelete"}, "`deleteBefore`"),
        (
            {"tableName": "t", "deleteBefore": "2024-02-09T00:00:00", "deleteType": "HardDelete"},
            "`deleteBefore`",
        ),
        ({"tableName": "t", "deleteBefore": 1707436800, "deleteType": "HardDelete"}, "`deleteBefore`"),
        ({"tableName": "t", "deleteBefore": None, "deleteType": "Delete"}, "`deleteType`"),
        ({"tableName": "t", "deleteBefore": None}, "`deleteType`"),
        ({"deleteBefore": None, "deleteType": "HardDelete"}, "`tableName`"),
    ]:
        err = assert_error(call(live, "POST", "fivetran_truncate_table", payload), 400, "BadJsonBody")
        assert key in err["message"], (payload, err)


def test_get_schema_and_version(live_server: LiveServer) -> None:
    resp = call(live_server, "GET", "get_schema", headers=FIVETRAN_HEADERS)
    assert resp.status_code == 200 and resp.content == b"null"
    assert resp.headers["content-type"] == "application/json"
    # Airbyte's check: only the Authorization header.
    resp = requests.get(
        live_server.url + "/version", headers=live_server.auth(live_server.import_key), timeout=10
    )
    assert resp.status_code == 200 and resp.text


# --- body limits -------------------------------------------------------------------------------------------


def padded(payload: bytes, size: int) -> bytes:
    """Valid JSON of exactly ``size`` bytes (whitespace after the value)."""
    assert len(payload) <= size
    return payload + b" " * (size - len(payload))


def test_airbyte_body_limit_is_20_mib(live_server: LiveServer) -> None:
    live = live_server
    url = live.url + BASE + "import_airbyte_records"
    headers = {**live.auth(live.import_key), **JSON}
    at_limit = padded(b'{"tables": {}, "messages": []}', AIRBYTE_IMPORT_BODY_LIMIT)
    assert AIRBYTE_IMPORT_BODY_LIMIT == 20_971_520
    ok_empty(requests.post(url, data=at_limit, headers=headers, timeout=60))
    resp = requests.post(url, data=at_limit + b" ", headers=headers, timeout=60)
    assert_error(resp, 413, "PayloadTooLarge")
    assert resp.headers.get("connection") == "close"

    # Chunked uploads (no Content-Length) are cut at the limit as well.
    def chunks() -> Iterator[bytes]:
        yield b'{"tables": {}, "messages": []}'
        for _ in range(21):
            yield b" " * (1 << 20)

    assert_error(requests.post(url, data=chunks(), headers=headers, timeout=60), 413, "PayloadTooLarge")
    # Other routes accept well over the 2 MiB framework default, e.g. wide Fivetran chunks.
    big = padded(b"[]", 3 << 20)
    ok_empty(
        requests.post(live.url + BASE + "apply_fivetran_operations", data=big, headers=headers, timeout=60)
    )
    # The server is still healthy.
    ok_empty(requests.post(url, data=b'{"tables": {}, "messages": []}', headers=headers, timeout=10))


def test_configured_body_limits(server_factory: ServerFactory) -> None:
    live = server_factory.start(
        server_config=ServerConfig(
            default_body_limit=1024, fivetran_operations_body_limit=4096, airbyte_import_body_limit=2048
        )
    )
    headers = {**live.auth(), **JSON}

    def post(method: str, path: str, data: bytes) -> requests.Response:
        return requests.request(method, live.url + path, data=data, headers=headers, timeout=30)

    ok_empty(post("PUT", BASE + "clear_tables", padded(b'{"tableNames": []}', 1024)))
    assert_error(
        post("PUT", BASE + "clear_tables", padded(b'{"tableNames": []}', 1025)), 413, "PayloadTooLarge"
    )
    ok_empty(post("POST", BASE + "apply_fivetran_operations", padded(b"[]", 4096)))
    assert_error(
        post("POST", BASE + "apply_fivetran_operations", padded(b"[]", 4097)), 413, "PayloadTooLarge"
    )
    ok_empty(post("POST", BASE + "import_airbyte_records", padded(b'{"tables": {}, "messages": []}', 2048)))
    assert_error(post("POST", BASE + "import_airbyte_records", padded(b"{}", 2049)), 413, "PayloadTooLarge")
    # Export POST bodies use the default limit.
    assert_error(post("POST", "/api/list_snapshot", padded(b"{}", 1025)), 413, "PayloadTooLarge")
    assert post("POST", "/api/list_snapshot", padded(b"{}", 1024)).status_code == 200


def test_oversized_body_gets_a_response_not_a_reset(server_factory: ServerFactory) -> None:
    """A client still sending a too-large body (lying about nothing) reads the 413 rather than a reset."""
    live = server_factory.start(server_config=ServerConfig(default_body_limit=1024))
    host, port = live.url.removeprefix("http://").split(":")
    body = b"[" + b" " * (8 << 20) + b"]"
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"PUT {BASE}clear_tables HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Convex {live.admin_key}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b'"code":"PayloadTooLarge"' in response


@pytest.mark.parametrize("name", ["clear_tables", "add_primary_key_indexes"])
def test_put_routes_reject_non_json(live_server: LiveServer, name: str) -> None:
    resp = live_server.put(BASE + name, data=b"tableNames=a", key=live_server.import_key,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert_error(resp, 400, "BadJsonBody", "Expected request with `Content-Type: application/json`")
