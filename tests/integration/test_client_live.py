"""The typed client against the real server (SQLite and PostgreSQL): every endpoint it wraps."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from connectors.backend.engine import DeploymentConfig
from connectors.client import (
    AirbyteMessage,
    AirbyteStream,
    ClientConfig,
    ConvexApiError,
    ConvexClient,
    FivetranOperation,
    encode_row,
)
from connectors.selection import Selection
from tests.integration.conftest import LiveServer, ServerFactory


@pytest.fixture
def small_pages(server_factory: ServerFactory) -> LiveServer:
    return server_factory.start(
        DeploymentConfig(background=False, snapshot_page_limit=3, deltas_page_limit=2)
    )


def client_for(live: LiveServer, key: str | None = None) -> ConvexClient:
    return ConvexClient(
        ClientConfig(deployment_url=live.url, deploy_key=key or live.admin_key, max_retries=1)
    )


def seed(live: LiveServer) -> dict[str, str]:
    dep = live.deployment
    with dep.transaction() as tx:
        tx.create_table("users")
        tx.create_table("jobs", component="cron")
        ids = {
            "ada": tx.insert("users", {"name": "Ada", "age": 36, "blob": b"\x00\x10\x83", "f": -0.0}),
            "bob": tx.insert("users", {"name": "Bob", "nan": float("nan"), "inf": float("-inf")}),
            "job": tx.insert("jobs", {"every": 60.0}, component="cron"),
        }
        for i in range(5):
            tx.insert("users", {"name": f"u{i}", "i": i})
    return ids


def test_connection_schemas_and_columns(live_server: LiveServer) -> None:
    seed(live_server)
    with client_for(live_server) as client:
        client.test_streaming_export_connection()
        assert client.version()
        schemas = client.json_schemas(delta_schema=True)
        assert set(schemas) == {"users", "jobs"}
        assert schemas["users"]["properties"]["_ts"] == {"type": "integer"}
        by_component = client.json_schemas(by_component=True)
        assert set(by_component) == {"", "cron"}
        columns = client.get_table_column_names()
        users = next(t for t in columns[""] if t.name == "users")
        assert {"_id", "_creationTime", "name", "age", "blob"} <= set(users.columns)


def test_snapshot_pages_decode_exact_values(small_pages: LiveServer) -> None:
    ids = seed(small_pages)
    with client_for(small_pages) as client:
        pages = list(client.iter_snapshot_pages())
    assert len({p.snapshot for p in pages}) == 1
    assert not pages[-1].has_more and pages[-1].cursor is None
    values = [v for p in pages for v in p.values]
    assert len(values) == 8
    assert all(v.ts <= pages[0].snapshot and not v.deleted for v in values)
    by_id = {v.document["_id"]: v for v in values}
    ada = by_id[ids["ada"]].document
    assert type(ada["age"]) is int and ada["age"] == 36
    assert ada["blob"] == b"\x00\x10\x83"
    assert ada["f"] == 0.0 and math.copysign(1.0, ada["f"]) == -1.0
    bob = by_id[ids["bob"]].document
    assert math.isnan(bob["nan"]) and bob["inf"] == float("-inf")
    assert by_id[ids["job"]].component == "cron"


def test_snapshot_selection_and_deltas_follow_changes(small_pages: LiveServer) -> None:
    ids = seed(small_pages)
    only_users = Selection.single_table("", "users")
    with client_for(small_pages) as client:
        pages = list(client.iter_snapshot_pages(selection=only_users))
        assert {v.table for p in pages for v in p.values} == {"users"}
        snapshot = pages[-1].snapshot
        with small_pages.deployment.transaction() as tx:
            tx.patch(ids["ada"], {"age": 37})
            tx.delete(ids["bob"])
            tx.insert("jobs", {"every": 5.0}, component="cron")
        deltas = list(client.iter_delta_pages(snapshot, selection=only_users))
    changes = [v for p in deltas for v in p.values]
    # One transaction: one ts, ordered by id; the other table's insert is filtered out.
    assert {(v.document["_id"], v.deleted) for v in changes} == {(ids["ada"], False), (ids["bob"], True)}
    assert len({v.ts for v in changes}) == 1
    assert [v.document["_id"] for v in changes] == sorted(v.document["_id"] for v in changes)
    ada = next(v for v in changes if v.document["_id"] == ids["ada"])
    assert ada.document["age"] == 37
    bob = next(v for v in changes if v.deleted)
    assert bob.document == {"_id": ids["bob"]}
    assert deltas[-1].cursor >= changes[-1].ts and not deltas[-1].has_more


def test_errors_carry_code_and_message(live_server: LiveServer) -> None:
    with client_for(live_server) as client, pytest.raises(ConvexApiError) as info:
        client.list_snapshot(snapshot=live_server.deployment.read_timestamp() + 10**12)
    assert info.value.status == 400 and info.value.code == "SnapshotTooNew"
    with client_for(live_server, key=live_server.import_key) as client, pytest.raises(ConvexApiError) as info:
        client.test_streaming_export_connection()
    assert info.value.status == 403 and info.value.code == "OperationNotPermitted"
    assert live_server.import_key not in str(info.value)


def test_airbyte_import_flow(live_server: LiveServer) -> None:
    with client_for(live_server, key=live_server.import_key) as client:
        client.clear_tables(["events"])
        client.add_primary_key_indexes({"events": [["key"]]})
        client.wait_for_primary_key_indexes(["events"], timeout_s=10, poll_interval_s=0.05)
        assert client.primary_key_indexes_ready(["events"])
        streams = {"events": AirbyteStream(primary_key=[["key"]], json_schema={})}
        client.import_airbyte_records(streams, [])
        client.import_airbyte_records(
            streams,
            [
                AirbyteMessage("events", {"key": "a", "v": 1}),
                AirbyteMessage("events", {"key": "a", "v": 2, "_id": "x"}),
                AirbyteMessage("events", {"key": "b", "v": 3}),
                AirbyteMessage("events", {"key": "b", "_ab_cdc_deleted_at": "2024-01-01T00:00:00Z"}),
            ],
        )
        with pytest.raises(ConvexApiError) as info:
            client.replace_tables({"tmp": "events"})
        assert info.value.code == "OverwriteNotSupported"
    docs = [d.value() for d in live_server.deployment.iter_snapshot(live_server.deployment.table("events"))]
    assert len(docs) == 1
    assert docs[0]["v"] == 2.0 and type(docs[0]["v"]) is float and docs[0]["source_id"] == "x"


def test_fivetran_import_flow(live_server: LiveServer) -> None:
    with client_for(live_server, key=live_server.import_key) as client:
        assert client.get_schema() is None
        client.fivetran_create_table(
            {
                "tableName": "public_books",
                "indexes": [
                    {"indexDescriptor": "_fivetran_by_primary_key", "fields": ["fivetran.deleted", "id"]},
                    {
                        "indexDescriptor": "_fivetran_by_synced",
                        "fields": ["fivetran.deleted", "fivetran.synced"],
                    },
                ],
            }
        )
        synced = 1704773419156.0576
        client.apply_fivetran_operations(
            [
                FivetranOperation(
                    "public_books",
                    "Upsert",
                    encode_row({"id": 1, "title": "Dune", "fivetran": {"synced": synced, "deleted": False}}),
                ),
                FivetranOperation(
                    "public_books",
                    "Upsert",
                    encode_row({"id": 2, "title": "Emma", "fivetran": {"synced": synced, "deleted": False}}),
                ),
                FivetranOperation(
                    "public_books",
                    "Update",
                    encode_row({"id": 1, "title": "Dune!", "fivetran": {"deleted": False}}),
                ),
                FivetranOperation(
                    "public_books", "HardDelete", encode_row({"id": 2, "fivetran": {"deleted": False}})
                ),
            ]
        )
        with pytest.raises(ConvexApiError) as info:
            client.apply_fivetran_operations(
                [
                    FivetranOperation(
                        "public_books", "Update", encode_row({"id": 9, "fivetran": {"deleted": False}})
                    )
                ]
            )
        assert info.value.status == 404 and info.value.code == "FivetranMissingUpdatedRow"
        client.fivetran_truncate_table("public_books", datetime(2100, 1, 1, tzinfo=UTC), "SoftDelete")
    docs = [
        d.value() for d in live_server.deployment.iter_snapshot(live_server.deployment.table("public_books"))
    ]
    assert len(docs) == 1
    assert docs[0]["id"] == 1 and type(docs[0]["id"]) is int and docs[0]["title"] == "Dune!"
    assert docs[0]["fivetran"] == {"synced": synced, "deleted": True}
