"""The one-transaction fast path of the streaming import (primary-key lookups read once per request, kept
up to date as the request writes) gives exactly what applying the items one request at a time gives."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.backend import streaming_import as si
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.backend.streaming_import import AirbyteRecord, AirbyteStream, FivetranOperation
from connectors.errors import InvalidValueError, NotFoundError
from tests.conftest import DeploymentFactory

PK = AirbyteStream((("key",),))


def _state(dep: Deployment, table: str) -> list[dict[str, Any]]:
    out = [{k: v for k, v in d.value().items() if k != "_id"} for d in dep.iter_snapshot(dep.table(table))]
    return sorted(out, key=lambda d: (d["_creationTime"], repr(sorted(d.items()))))


def _without_times(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in d.items() if k != "_creationTime"} for d in docs), key=repr)


def _fivetran(dep: Deployment) -> None:
    si.fivetran_create_table(
        dep,
        {
            "tableName": "books",
            "indexes": [
                {"indexDescriptor": "_fivetran_by_primary_key", "fields": ["fivetran.deleted", "id"]}
            ],
        },
    )


FIVETRAN_OPS = [
    FivetranOperation(
        "books", "Upsert", {"id": 1.0, "t": "a", "fivetran": {"synced": 1.0, "deleted": False}}
    ),
    FivetranOperation("books", "Update", {"id": 1.0, "t": "b", "fivetran": {"synced": 2.0}}),
    FivetranOperation(
        "books", "Upsert", {"id": 2.0, "t": "x", "fivetran": {"synced": 1.0, "deleted": False}}
    ),
    FivetranOperation("books", "Update", {"id": 1.0, "fivetran": {"deleted": True}}),  # soft delete
    FivetranOperation(
        "books", "Upsert", {"id": 1.0, "t": "c", "fivetran": {"synced": 3.0, "deleted": False}}
    ),
    FivetranOperation(
        "books", "Upsert", {"id": 1.0, "t": "d", "fivetran": {"synced": 4.0, "deleted": False}}
    ),
    FivetranOperation("books", "HardDelete", {"id": 2.0}),
    FivetranOperation("books", "HardDelete", {"id": 2.0}),
    FivetranOperation("books", "Upsert", {"id": 2.0, "t": "y", "fivetran": {"synced": 5.0}}),  # no deleted
    FivetranOperation("books", "Upsert", {"id": 2.0, "t": "z", "fivetran": {"synced": 6.0}}),  # cannot match
]

AIRBYTE_RECORDS = [
    AirbyteRecord("events", {"key": "k1", "v": 1}),
    AirbyteRecord("events", {"key": "k1", "v": 2}),
    AirbyteRecord("events", {"key": "k2", "v": 3}),
    AirbyteRecord("events", {"key": "k1", "_ab_cdc_deleted_at": "2024-01-01"}),
    AirbyteRecord("events", {"key": "k1", "v": 4}),
    AirbyteRecord("events", {"key": "k3", "_ab_cdc_deleted_at": "2024-01-01"}),
    AirbyteRecord("events", {"key": "k2", "v": 5}),
]


def test_fivetran_batch_equals_one_operation_at_a_time(deployment_factory: DeploymentFactory) -> None:
    batched, single = (
        deployment_factory.open(),
        deployment_factory.open(location=deployment_factory.new_location()),
    )
    _fivetran(batched)
    _fivetran(single)
    assert si.apply_fivetran_operations(batched, FIVETRAN_OPS).transactions == 1
    for op in FIVETRAN_OPS:
        si.apply_fivetran_operations(single, [op])
    result = _without_times(_state(batched, "books"))
    assert result == _without_times(_state(single, "books"))
    assert sorted(d["t"] for d in result if d["id"] == 1.0) == [
        "b",
        "d",
    ]  # soft-deleted "b" kept, "d" replaced "c"
    assert sorted(d["t"] for d in result if d["id"] == 2.0) == ["y", "z"]


def test_airbyte_dedup_batch_equals_one_record_at_a_time(deployment_factory: DeploymentFactory) -> None:
    batched, single = (
        deployment_factory.open(),
        deployment_factory.open(location=deployment_factory.new_location()),
    )
    for dep in (batched, single):
        si.add_primary_key_indexes(dep, {"events": [["key"]]})
    si.import_airbyte_records(batched, {"events": PK}, AIRBYTE_RECORDS)
    for record in AIRBYTE_RECORDS:
        si.import_airbyte_records(single, {"events": PK}, [record])
    result = _without_times(_state(batched, "events"))
    assert result == _without_times(_state(single, "events"))
    assert result == [{"key": "k1", "v": 4.0}, {"key": "k2", "v": 5.0}]


def test_a_bad_record_or_operation_anywhere_writes_nothing(deployment_factory: DeploymentFactory) -> None:
    dep = deployment_factory.open()
    _fivetran(dep)
    bad_row = [*FIVETRAN_OPS[:3], FivetranOperation("books", "Upsert", {"id": 9.0, "x": "x" * (1 << 20)})]
    with pytest.raises(InvalidValueError) as info:
        si.apply_fivetran_operations(dep, bad_row)
    assert info.value.message.startswith("Operation 3 for table books: ")
    missing = [*FIVETRAN_OPS[:3], FivetranOperation("books", "Update", {"id": 9.0, "t": "?"})]
    with pytest.raises(NotFoundError):
        si.apply_fivetran_operations(dep, missing)
    assert dep.document_count("books") == 0
    with pytest.raises(InvalidValueError) as info:
        si.import_airbyte_records(
            dep,
            {"events": AirbyteStream(None)},
            [AirbyteRecord("events", {"a": 1}), AirbyteRecord("events", {"b": "x" * (1 << 20)})],
        )
    assert info.value.message.startswith("Record 1 for table events: ")
    assert dep.find_table("events") is None or dep.document_count("events") == 0


def test_a_request_larger_than_a_transaction_falls_back_to_commit_and_continue(
    deployment_factory: DeploymentFactory,
) -> None:
    dep = deployment_factory.open(DeploymentConfig(background=False, max_write_bytes_per_transaction=4000))
    records = [AirbyteRecord("events", {"i": i, "pad": "p" * 500}) for i in range(20)]
    result = si.import_airbyte_records(dep, {"events": AirbyteStream(None)}, records)
    assert result.records_committed == 20 and result.transactions > 1
    assert dep.document_count("events") == 20
