"""Streaming import operations (streaming-import.md), on real SQLite and PostgreSQL deployments.

Covers §14 items 1-15 (those that are not HTTP-only), the vectors of §3/§5 (through import_airbyte_records),
§6, §10.2 and §10.3, commit-and-continue at transaction limits (§4), partial imports, and validation of the
whole request before the first write.
"""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.backend import streaming_import as si
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.backend.streaming_import import (
    AirbyteRecord,
    AirbyteStream,
    FivetranOperation,
    ImportResult,
)
from connectors.errors import BadRequestError, ConvexError, NotFoundError, PlainError
from connectors.schema import parse_database_schema
from tests.conftest import DeploymentFactory

APPEND = AirbyteStream(None)
PK = AirbyteStream((("primary_key",),))
PARTIAL = " ({n} records were committed before this error; the rest of the request was not applied.)"
S1 = 1704739927754.6853
S2 = 1704773419156.0576


# --- Helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def small(deployment_factory: DeploymentFactory) -> Deployment:
    """A deployment whose transactions take at most 5 writes, to exercise commit-and-continue quickly."""
    return deployment_factory.open(DeploymentConfig(background=False, max_writes_per_transaction=5))


def docs(dep: Deployment, table: str) -> list[dict[str, Any]]:
    """User fields of every live document of ``table``, in id order (random, not insertion order)."""
    info = dep.table(table)
    return [
        {k: v for k, v in d.value().items() if k not in ("_id", "_creationTime")}
        for d in dep.iter_snapshot(info)
    ]


def sorted_docs(dep: Deployment, table: str, key: str) -> list[dict[str, Any]]:
    return sorted(docs(dep, table), key=lambda d: repr(d.get(key)))


def rec(table: str, **data: Any) -> AirbyteRecord:
    return AirbyteRecord(table, data)


def expect(error: BaseException, cls: type[ConvexError], code: str, status: int) -> ConvexError:
    assert isinstance(error, cls)
    assert error.code == code
    assert error.status == status
    return error


def i64(n: int) -> dict[str, str]:
    """Convex internal JSON of an Int64."""
    return {"$integer": base64.b64encode(struct.pack("<q", n)).decode()}


def upsert(table: str, row: dict[str, Any]) -> FivetranOperation:
    return FivetranOperation(table, "Upsert", row)


def update(table: str, row: dict[str, Any]) -> FivetranOperation:
    return FivetranOperation(table, "Update", row)


def hard_delete(table: str, row: dict[str, Any]) -> FivetranOperation:
    return FivetranOperation(table, "HardDelete", row)


def fivetran_table(
    dep: Deployment, table: str, pk: list[str], *, soft_deletes: bool = True, synced_index: bool = True
) -> None:
    """Create the system indexes the way our Fivetran destination does (no `_creationTime`)."""
    deleted = ["fivetran.deleted"] if soft_deletes else []
    indexes = [{"indexDescriptor": "_fivetran_by_primary_key", "fields": pk}]
    if synced_index:
        indexes.append({"indexDescriptor": "_fivetran_by_synced", "fields": [*deleted, "fivetran.synced"]})
    si.fivetran_create_table(dep, {"tableName": table, "indexes": indexes})


# --- Airbyte: append, clear, limits (§14 items 1, 8, 10) ---------------------------------------------


def test_append_spans_transactions_then_clear_keeps_table(small: Deployment) -> None:
    messages = [rec("stream", n=i) for i in range(12)]
    result = si.import_airbyte_records(small, {"stream": APPEND}, messages)
    assert result == ImportResult(records_committed=12, transactions=3)
    assert sorted(d["n"] for d in docs(small, "stream")) == [float(i) for i in range(12)]

    si.clear_tables(small, ["stream"])
    assert small.find_table("stream") is not None
    assert docs(small, "stream") == []


@pytest.mark.slow
def test_append_more_than_the_real_write_limit(deployment: Deployment) -> None:
    n = deployment.config.max_writes_per_transaction + 5  # 16000 + 5
    result = si.import_airbyte_records(deployment, {"stream": APPEND}, [rec("stream", n=i) for i in range(n)])
    assert result == ImportResult(n, 2)
    assert deployment.document_count("stream") == n
    si.clear_tables(deployment, ["stream"])
    assert deployment.document_count("stream") == 0


def test_empty_messages_are_valid(deployment: Deployment) -> None:
    assert si.import_airbyte_records(deployment, {"stream": APPEND}, []) == ImportResult(0, 0)
    assert si.import_airbyte_records(deployment, {}, []) == ImportResult(0, 0)
    assert deployment.find_table("stream") is None


def test_append_inserts_every_record_and_ignores_deletes(deployment: Deployment) -> None:
    # §13.4: append is append-only; a CDC delete is inserted with its CDC fields removed.
    messages = [
        rec("t", id=1, v="a"),
        rec("t", id=1, v="a"),
        rec("t", id=1, _ab_cdc_deleted_at="2024-01-01", _ab_cdc_lsn="x"),
    ]
    assert si.import_airbyte_records(deployment, {"t": APPEND}, messages).records_committed == 3
    assert sorted(docs(deployment, "t"), key=len) == [
        {"id": 1.0},
        {"id": 1.0, "v": "a"},
        {"id": 1.0, "v": "a"},
    ]


def test_clear_tables_creates_missing_and_keeps_indexes(deployment: Deployment) -> None:
    si.clear_tables(deployment, ["never_written", "My Table"])
    assert docs(deployment, "never_written") == []
    assert docs(deployment, "source_my_table") == []

    si.add_primary_key_indexes(deployment, {"t": [["primary_key"]]})
    si.import_airbyte_records(deployment, {"t": PK}, [rec("t", primary_key="k", value=1)])
    before = deployment.index("t", si.AIRBYTE_PRIMARY_KEY_INDEX)
    si.clear_tables(deployment, ["t"])
    after = deployment.index("t", si.AIRBYTE_PRIMARY_KEY_INDEX)
    assert before is not None and after is not None
    assert after.fields == before.fields == ("primary_key", "_creationTime")
    assert after.ready and after.is_system
    assert docs(deployment, "t") == []
    # The surviving index works: dedup goes on without add_primary_key_indexes.
    si.import_airbyte_records(deployment, {"t": PK}, [rec("t", primary_key="k", value=2)] * 2)
    assert docs(deployment, "t") == [{"primary_key": "k", "value": 2.0}]


def test_clear_tables_is_atomic(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    si.import_airbyte_records(deployment, {"a": APPEND, "b": APPEND}, [rec("a", x=1), rec("b", x=1)])
    # An index still backfilling on `b` makes the whole clear fail, so `a` keeps its document too.
    monkeypatch.setattr(deployment, "run_backfill", lambda max_batches=None: False)
    si.add_primary_key_indexes(deployment, {"b": [["x"]]})
    with pytest.raises(BadRequestError) as ei:
        si.clear_tables(deployment, ["a", "b"])
    e = expect(ei.value, BadRequestError, "InvalidImport", 400)
    assert e.message == (
        "b is still backfilling indexes, so it cannot be replaced. Wait for indexes to complete backfilling"
    )
    assert docs(deployment, "a") == [{"x": 1.0}]


# --- Airbyte: dedup (§6, §13.3) -----------------------------------------------------------------------


def test_dedup_vector(deployment: Deployment) -> None:
    si.add_primary_key_indexes(deployment, {"stream": [["primary_key"]]})
    assert si.primary_key_indexes_ready(deployment, ["stream"])
    messages = [
        rec("stream", primary_key="key1", value="value1"),
        rec("stream", primary_key="key1", value="value2"),
        rec("stream", primary_key="key2", value="value1"),
        rec("stream", primary_key="key3", value="value1"),
        rec("stream", primary_key="key3", _ab_cdc_deleted_at="2024-01-01T00:00:00Z"),
    ]
    result = si.import_airbyte_records(deployment, {"stream": PK}, messages)
    assert result.records_committed == 5
    assert sorted_docs(deployment, "stream", "primary_key") == [
        {"primary_key": "key1", "value": "value2"},
        {"primary_key": "key2", "value": "value1"},
    ]


def test_dedup_replace_is_wholesale_and_nested_keys_work(deployment: Deployment) -> None:
    si.add_primary_key_indexes(deployment, {"t": [["a", "b"], ["c"]]})
    stream = AirbyteStream((("a", "b"), ("c",)))
    si.import_airbyte_records(deployment, {"t": stream}, [rec("t", a={"b": 1}, c=None, old=True)])
    si.import_airbyte_records(deployment, {"t": stream}, [rec("t", a={"b": 1}, c=None, new=True)])
    si.import_airbyte_records(deployment, {"t": stream}, [rec("t", a={"b": 2}, c=None)])
    assert sorted_docs(deployment, "t", "a") == [
        {"a": {"b": 1.0}, "c": None, "new": True},
        {"a": {"b": 2.0}, "c": None},
    ]


def test_dedup_deleted_record_without_match_is_a_no_op(deployment: Deployment) -> None:
    """DELIBERATE DEVIATION from upstream (streaming-import.md §13.3): upstream inserts a CDC-deleted record
    that matches nothing; we follow the recommendation and do nothing."""
    si.add_primary_key_indexes(deployment, {"t": [["primary_key"]]})
    result = si.import_airbyte_records(
        deployment, {"t": PK}, [rec("t", primary_key="gone", _ab_cdc_deleted_at="2024-01-01T00:00:00Z")]
    )
    assert result.records_committed == 1
    assert deployment.find_table("t") is not None  # created by add_primary_key_indexes
    assert docs(deployment, "t") == []


def test_dedup_spans_transactions(small: Deployment) -> None:
    si.add_primary_key_indexes(small, {"t": [["primary_key"]]})
    messages = [rec("t", primary_key=f"k{i % 4}", v=i) for i in range(13)]
    result = si.import_airbyte_records(small, {"t": PK}, messages)
    assert result == ImportResult(13, 3)
    assert sorted_docs(small, "t", "primary_key") == [
        {"primary_key": f"k{i}", "v": float(8 + i + (4 if i == 0 else 0))} for i in range(4)
    ]


def test_dedup_without_index(deployment: Deployment) -> None:
    with pytest.raises(BadRequestError) as ei:
        si.import_airbyte_records(deployment, {"t": PK}, [rec("t", primary_key="k")])
    e = expect(ei.value, BadRequestError, "MissingIndex", 400)
    assert e.message.startswith("Missing index: t._by_airbyte_primary_key. ")
    assert "add_primary_key_indexes" in e.message and "primary_key_indexes_ready" in e.message
    assert deployment.find_table("t") is None


def test_dedup_with_index_on_other_fields(deployment: Deployment) -> None:
    si.add_primary_key_indexes(deployment, {"t": [["other"]]})
    with pytest.raises(BadRequestError) as ei:
        si.import_airbyte_records(deployment, {"t": PK}, [rec("t", primary_key="k", other=1)])
    assert "add_primary_key_indexes" in expect(ei.value, BadRequestError, "MissingIndex", 400).message


def test_dedup_with_backfilling_index(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    si.import_airbyte_records(deployment, {"t": APPEND}, [rec("t", primary_key="k", v=1)])
    monkeypatch.setattr(deployment, "run_backfill", lambda max_batches=None: False)
    si.add_primary_key_indexes(deployment, {"t": [["primary_key"]]})
    assert si.primary_key_indexes_ready(deployment, ["t"]) is False
    with pytest.raises(BadRequestError) as ei:
        si.import_airbyte_records(deployment, {"t": PK}, [rec("t", primary_key="k", v=2)])
    e = expect(ei.value, BadRequestError, "IndexNotReady", 400)
    assert "primary_key_indexes_ready" in e.message
    monkeypatch.undo()
    deployment.run_backfill()
    assert si.primary_key_indexes_ready(deployment, ["t"]) is True
    si.import_airbyte_records(deployment, {"t": PK}, [rec("t", primary_key="k", v=2)])
    assert docs(deployment, "t") == [{"primary_key": "k", "v": 2.0}]


def test_dedup_missing_primary_key_value(deployment: Deployment) -> None:
    si.add_primary_key_indexes(deployment, {"t": [["primary_key"]]})
    # The key is read from the renamed record: `_primary_key` became `source_primary_key`.
    for data in ({"other": 1}, {"_primary_key": 1}):
        with pytest.raises(BadRequestError) as ei:
            si.import_airbyte_records(
                deployment, {"t": PK}, [rec("t", primary_key="ok"), AirbyteRecord("t", data)]
            )
        e = expect(ei.value, BadRequestError, "MissingPrimaryKeyValue", 400)
        assert e.message == 'Missing value for primary key field: "primary_key".'
    assert docs(deployment, "t") == []  # nothing written: checked before the first write


# --- Airbyte: request validation (§6 steps 2-4, §14 item 9) -----------------------------------------


def test_empty_primary_key(deployment: Deployment) -> None:
    with pytest.raises(BadRequestError) as ei:
        si.import_airbyte_records(deployment, {"t": AirbyteStream(())}, [])
    e = expect(ei.value, BadRequestError, "EmptyPrimaryKey", 400)
    assert e.message == "Primary keys cannot be empty"


def test_missing_stream_writes_nothing(deployment: Deployment) -> None:
    messages = [rec("t", x=1), rec("t", x=2), rec("other", x=3)]
    with pytest.raises(BadRequestError) as ei:
        si.import_airbyte_records(deployment, {"t": APPEND}, messages)
    e = expect(ei.value, BadRequestError, "MissingStream", 400)
    assert e.message == "Missing stream for table other"
    assert deployment.find_table("t") is None


@pytest.mark.parametrize(
    "primary_key",
    [
        (("bad-name",),),
        (("ok", "sp ace"),),
        ((),),
        (("_id",),),
    ],
)
def test_invalid_stream_primary_key_is_a_plain_error(deployment: Deployment, primary_key: Any) -> None:
    with pytest.raises(PlainError) as ei:
        si.import_airbyte_records(deployment, {"t": AirbyteStream(primary_key)}, [])
    assert ei.value.status == 500
    assert str(ei.value).startswith(
        "Invalid primary key: Identifiers must start with a letter and can only contain letters, digits, and"
        " underscores. [["
    )


@pytest.mark.parametrize(
    ("primary_key", "message"),
    [
        (
            (("a",), ("b", "c"), ("a",)),
            'Invalid primary key: the field path ["a"] appears more than once in [["a"], ["b", "c"], ["a"]].'
            " List each field once.",
        ),
        (
            tuple((f"f{i}",) for i in range(17)),
            "Invalid primary key: it has 17 field paths; the limit is 16. Use at most 16 fields that together"
            " identify a record.",
        ),
    ],
)
def test_primary_key_shape_errors_say_what_is_wrong(
    deployment: Deployment, primary_key: Any, message: str
) -> None:
    # Duplicates and too many paths used to be reported as an identifier problem.
    with pytest.raises(PlainError) as ei:
        si.import_airbyte_records(deployment, {"t": AirbyteStream(primary_key)}, [])
    assert str(ei.value) == message
    with pytest.raises(BadRequestError) as ei2:
        si.add_primary_key_indexes(deployment, {"t": [list(p) for p in primary_key]})
    assert (ei2.value.code, ei2.value.message) == ("InvalidPrimaryKey", message)


def test_primary_key_message_cuts_long_names(deployment: Deployment) -> None:
    with pytest.raises(BadRequestError) as ei:
        si.add_primary_key_indexes(deployment, {"t": [["bad-" + "x" * 100_000], ["y" * 100_000]]})
    assert ei.value.code == "InvalidPrimaryKey"
    assert len(ei.value.message) < 2000
    assert '"bad-' + "x" * 60 + '…"' in ei.value.message


def test_bad_record_at_the_end_writes_nothing(small: Deployment) -> None:
    # More records than one transaction takes, so a write-as-you-go implementation would have committed some.
    messages: list[AirbyteRecord] = [rec("t", n=i) for i in range(12)]
    for bad in (
        AirbyteRecord("t", [1, 2]),
        AirbyteRecord("t", {"_id": 0, "source_id": 1, "source_source_id": 2, "source_source_source_id": 3}),
    ):
        with pytest.raises(PlainError) as ei:
            si.import_airbyte_records(small, {"t": APPEND}, [*messages, bad])
        assert ei.value.status == 500
        assert "committed" not in str(ei.value)
    assert small.find_table("t") is None


def test_invalid_value_at_the_end_writes_nothing(small: Deployment) -> None:
    deep: Any = "leaf"
    for _ in range(20):
        deep = {"d": deep}
    with pytest.raises(ConvexError) as ei:
        si.import_airbyte_records(
            small, {"t": APPEND}, [*(rec("t", n=i) for i in range(12)), rec("t", deep=deep)]
        )
    e = expect(ei.value, ConvexError, "InvalidValue", 400)
    assert e.message.startswith("Record 12 for table t: ")
    assert small.find_table("t") is None


def test_unconvertible_table_name(deployment: Deployment) -> None:
    # The slug plus `source_` is longer than 64 bytes (§3).
    long_name = "x" * 60 + "!"
    for tables, messages in (({long_name: APPEND}, []), ({"t": APPEND}, [rec(long_name, x=1)])):
        with pytest.raises(PlainError) as ei:
            si.import_airbyte_records(deployment, tables, messages)
        assert str(ei.value) == "Failed to create a valid identifier."


# --- Airbyte: renaming and CDC (§3, §5; §14 items 3, 4) ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("ok_table", "ok_table"),
        ("MyTable", "MyTable"),
        ("My Table", "source_my_table"),
        ("*name!of.table", "source_name_of_table"),
        ("_system_table", "source_system_table"),
    ],
)
def test_table_names_through_valid_identifier(deployment: Deployment, name: str, table: str) -> None:
    si.import_airbyte_records(deployment, {name: APPEND}, [rec(name, x=1)])
    assert docs(deployment, table) == [{"x": 1.0}]


def test_table_key_and_message_name_are_renamed_alike(deployment: Deployment) -> None:
    # The `tables` key is renamed too, so a message may spell the stream either way.
    si.import_airbyte_records(
        deployment, {"My Table": APPEND}, [rec("source_my_table", x=1), rec("My Table", x=2)]
    )
    assert sorted_docs(deployment, "source_my_table", "x") == [{"x": 1.0}, {"x": 2.0}]


def test_field_renaming(deployment: Deployment) -> None:
    data = {
        "_id": "a",
        "$foo": 1,
        "my field": 2,
        "nested": {"_bad": {"$deeper": True}, "good": [{"_in_array": None}, 3, [{"$x": "y"}]]},
        "$integer": "AQAAAAAAAAA=",
        "big": 2**63,
        "café": "x",
    }
    si.import_airbyte_records(deployment, {"t": APPEND}, [AirbyteRecord("t", data)])
    assert docs(deployment, "t") == [
        {
            "source_id": "a",
            "source_foo": 1.0,
            "my field": 2.0,
            "nested": {
                "source_bad": {"source_deeper": True},
                "good": [{"source_in_array": None}, 3.0, [{"source_x": "y"}]],
            },
            "source_integer": "AQAAAAAAAAA=",  # never interpreted as an Int64
            "big": 9.223372036854776e18,  # every number is a Float64
            "source_cafe": "x",
        }
    ]


def test_field_renaming_collisions(deployment: Deployment) -> None:
    si.import_airbyte_records(deployment, {"t": APPEND}, [rec("t", source_id=1, _id=2)])
    assert docs(deployment, "t") == [{"source_id": 1.0, "source_source_id": 2.0}]
    too_many = {"_id": 0, "source_id": 1, "source_source_id": 2, "source_source_source_id": 3}
    with pytest.raises(PlainError) as ei:
        si.import_airbyte_records(deployment, {"t": APPEND}, [AirbyteRecord("t", too_many)])
    assert str(ei.value).startswith("Too many duplicate field names found for modified field")


def test_cdc_vector(deployment: Deployment) -> None:
    si.add_primary_key_indexes(deployment, {"t": [["field"]]})
    si.import_airbyte_records(
        deployment, {"t": AirbyteStream((("field",),))}, [rec("t", field="value", other=1)]
    )
    cdc = rec("t", field="value", _ab_cdc_lsn="lsn", _ab_cdc_deleted_at="timestamp")
    si.import_airbyte_records(deployment, {"t": AirbyteStream((("field",),))}, [cdc])
    assert docs(deployment, "t") == []
    # A null deleted_at is not a delete; every top-level CDC field is dropped, nested ones are kept.
    si.import_airbyte_records(
        deployment,
        {"a": APPEND},
        [rec("a", field="value", _ab_cdc_deleted_at=None, _ab_cdc_updated_at="t", n={"_ab_cdc_lsn": 1})],
    )
    assert docs(deployment, "a") == [{"field": "value", "n": {"source_ab_cdc_lsn": 1.0}}]


# --- Airbyte: partial imports (§4) ------------------------------------------------------------------


def test_partial_import_keeps_earlier_transactions(small: Deployment) -> None:
    # Two documents with the same key make the dedup lookup fail ("more than one value") at write time.
    si.import_airbyte_records(small, {"t": APPEND}, [rec("t", primary_key="dup")] * 2)
    si.add_primary_key_indexes(small, {"t": [["primary_key"]]})
    messages = [rec("t", primary_key=f"k{i}") for i in range(7)] + [rec("t", primary_key="dup")]
    with pytest.raises(PlainError) as ei:
        si.import_airbyte_records(small, {"t": PK}, messages)
    assert str(ei.value) == "Received more than one value for query" + PARTIAL.format(n=5)
    assert ei.value.message.endswith(PARTIAL.format(n=5))
    assert ei.value.code == "InternalServerError"
    keys = sorted(d["primary_key"] for d in docs(small, "t"))
    assert keys == ["dup", "dup", "k0", "k1", "k2", "k3", "k4"]  # k5, k6 were in the rolled-back transaction


def test_item_too_big_for_any_transaction(deployment_factory: DeploymentFactory) -> None:
    dep = deployment_factory.open(DeploymentConfig(background=False, max_write_bytes_per_transaction=400))
    messages = [rec("t", n=i) for i in range(3)] + [rec("t", big="x" * 500)]
    with pytest.raises(BadRequestError) as ei:
        si.import_airbyte_records(dep, {"t": APPEND}, messages)
    e = expect(ei.value, BadRequestError, "TooManyWrites", 400)
    assert e.message.endswith(PARTIAL.format(n=3))
    assert len(docs(dep, "t")) == 3


def test_read_limit_also_commits_and_continues(deployment_factory: DeploymentFactory) -> None:
    dep = deployment_factory.open(DeploymentConfig(background=False, max_read_rows_per_transaction=20))
    si.add_primary_key_indexes(dep, {"t": [["primary_key"]]})
    # 25 existing keys: looking them all up reads more than 20 index entries.
    si.import_airbyte_records(dep, {"t": PK}, [rec("t", primary_key=f"k{i}", v=i) for i in range(25)])
    result = si.import_airbyte_records(
        dep, {"t": PK}, [rec("t", primary_key=f"k{i % 25}", v=i) for i in range(40)]
    )
    assert result.records_committed == 40 and result.transactions > 1
    assert sorted(d["v"] for d in docs(dep, "t")) == [float(i) for i in range(15, 40)]

    fivetran_table(dep, "f", ["id"])
    _synced_rows(dep, "f", [float(i) for i in range(30)])
    result = si.fivetran_truncate_table(dep, "f", _at(1), "HardDelete")
    assert result.records_committed == 30 and result.transactions > 1
    assert docs(dep, "f") == []


def test_failure_in_first_transaction_has_no_partial_note(deployment: Deployment) -> None:
    si.import_airbyte_records(deployment, {"t": APPEND}, [rec("t", primary_key="dup")] * 2)
    si.add_primary_key_indexes(deployment, {"t": [["primary_key"]]})
    with pytest.raises(PlainError) as ei:
        si.import_airbyte_records(
            deployment, {"t": PK}, [rec("t", primary_key="new"), rec("t", primary_key="dup")]
        )
    assert str(ei.value) == "Received more than one value for query"
    assert len(docs(deployment, "t")) == 2  # `new` was rolled back with its transaction


# --- Airbyte: primary-key indexes (§8; §14 item 7) --------------------------------------------------


def test_add_primary_key_indexes(deployment: Deployment) -> None:
    si.add_primary_key_indexes(deployment, {"a": [["id"]], "My Stream": [["x", "y"], ["z"]]})
    a = deployment.index("a", si.AIRBYTE_PRIMARY_KEY_INDEX)
    b = deployment.index("source_my_stream", si.AIRBYTE_PRIMARY_KEY_INDEX)
    assert a is not None and a.fields == ("id", "_creationTime") and a.is_system and a.ready
    assert b is not None and b.fields == ("x.y", "z", "_creationTime")
    assert docs(deployment, "a") == []  # the tables did not exist; they were created

    # The identical index is kept; a different one replaces it.
    si.add_primary_key_indexes(deployment, {"a": [["id"]]})
    assert deployment.index("a", si.AIRBYTE_PRIMARY_KEY_INDEX) == a
    si.add_primary_key_indexes(deployment, {"a": [["other"]]})
    c = deployment.index("a", si.AIRBYTE_PRIMARY_KEY_INDEX)
    assert c is not None and c.fields == ("other", "_creationTime") and c.index_id != a.index_id


@pytest.mark.parametrize(
    ("pk", "code", "message"),
    [
        (
            [["bad-name"]],
            "InvalidPrimaryKey",
            'Invalid primary key: Identifiers must start with a letter and can only contain letters, digits, and underscores. [["bad-name"]].',
        ),
        (
            [["a"], ["b", "c d"]],
            "InvalidPrimaryKey",
            'Invalid primary key: Identifiers must start with a letter and can only contain letters, digits, and underscores. [["a"], ["b", "c d"]].',
        ),
        ([["_id"]], "InvalidPrimaryKey", None),
        ([["a"], ["a"]], "InvalidPrimaryKey", None),
        ([[]], "InvalidPrimaryKey", None),
        ([[f"f{i}"] for i in range(17)], "InvalidPrimaryKey", None),
        (
            [["a"], ["_creationTime"]],
            "IndexFieldsContainCreationTime",
            "`_creationTime` is automatically added to the end of each index. It should not be added explicitly in the index definition. See https://docs.convex.dev/using/indexes for more details.",
        ),
        (
            [["_private"]],
            "IndexFieldNameReserved",
            "Reserved fields (starting with `_`) are not allowed in indexes.",
        ),
        ([["a", "_b"]], "IndexFieldNameReserved", None),
        ([], "EmptyPrimaryKey", "Primary keys cannot be empty"),
    ],
)
def test_add_primary_key_indexes_validation(
    deployment: Deployment, pk: list[list[str]], code: str, message: str | None
) -> None:
    with pytest.raises(BadRequestError) as ei:
        si.add_primary_key_indexes(deployment, {"good": [["id"]], "t": pk})
    e = expect(ei.value, BadRequestError, code, 400)
    if message is not None:
        assert e.message == message
    assert deployment.find_table("good") is None  # all tables in one transaction: nothing was done


def test_primary_key_indexes_ready(deployment: Deployment) -> None:
    assert si.primary_key_indexes_ready(deployment, []) is True
    with pytest.raises(BadRequestError) as ei:
        si.primary_key_indexes_ready(deployment, ["unknown"])
    e = expect(ei.value, BadRequestError, "MissingIndex", 400)
    assert e.message == "Missing index: unknown._by_airbyte_primary_key"
    si.add_primary_key_indexes(deployment, {"My Stream": [["id"]]})
    assert si.primary_key_indexes_ready(deployment, ["My Stream", "source_my_stream", "My Stream"]) is True
    with pytest.raises(BadRequestError):
        si.primary_key_indexes_ready(deployment, ["My Stream", "unknown"])


def test_replace_tables_is_never_supported(deployment: Deployment) -> None:
    with pytest.raises(BadRequestError) as ei:
        si.replace_tables(deployment, {"tmp": "final"})
    e = expect(ei.value, BadRequestError, "OverwriteNotSupported", 400)
    assert e.message == "Overwrite sync mode is not supported. Please use a different sync mode."


# --- Fivetran: create table (§10.4; §14 items 12, 13) ----------------------------------------------


def test_fivetran_create_table_stores_system_indexes(deployment: Deployment) -> None:
    definition = {
        "tableName": "public_books",
        "indexes": [
            {"indexDescriptor": "_fivetran_by_primary_key", "fields": ["fivetran.deleted", "id"]},
            # What the Rust connector sends (§13.1): a trailing `_creationTime` is tolerated.
            {
                "indexDescriptor": "_fivetran_by_synced",
                "fields": ["fivetran.deleted", "fivetran.synced", "_creationTime"],
            },
        ],
        "documentType": {
            "type": "object",
            "value": {"id": {"fieldType": {"type": "bigint"}, "optional": True}},
        },
    }
    si.fivetran_create_table(deployment, definition)
    pk = deployment.index("public_books", "_fivetran_by_primary_key")
    synced = deployment.index("public_books", "_fivetran_by_synced")
    assert (
        pk is not None
        and pk.fields == ("fivetran.deleted", "id", "_creationTime")
        and pk.is_system
        and pk.ready
    )
    assert synced is not None and synced.fields == ("fivetran.deleted", "fivetran.synced", "_creationTime")
    assert si.get_schema(deployment) is None  # documentType is ignored: no schema is stored

    # A second identical call is a no-op.
    si.fivetran_create_table(deployment, definition)
    assert deployment.index("public_books", "_fivetran_by_primary_key") == pk
    assert deployment.index("public_books", "_fivetran_by_synced") == synced


def test_fivetran_create_table_waits_for_backfill(deployment_factory: DeploymentFactory) -> None:
    dep = deployment_factory.open(DeploymentConfig(background=True, backfill_batch=10))
    si.import_airbyte_records(dep, {"t": APPEND}, [rec("t", id=i) for i in range(300)])
    si.fivetran_create_table(
        dep,
        {"tableName": "t", "indexes": [{"indexDescriptor": "_fivetran_by_primary_key", "fields": ["id"]}]},
    )
    idx = dep.index("t", "_fivetran_by_primary_key")
    assert idx is not None and idx.ready
    si.apply_fivetran_operations(dep, [upsert("t", {"id": 7.0, "seen": True})])
    assert [d for d in docs(dep, "t") if d.get("seen")] == [{"id": 7.0, "seen": True}]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        (["_creationTime", "id"], "IndexFieldsContainCreationTime"),
        (["fivetran.columns._x"], "IndexFieldNameReserved"),
        (["_id"], "IndexFieldsContainId"),
        (["_creationTime"], "EmptyIndex"),
        (["bad field"], "InvalidSchema"),
    ],
)
def test_fivetran_create_table_validation(deployment: Deployment, fields: list[str], code: str) -> None:
    definition = {
        "tableName": "t",
        "indexes": [{"indexDescriptor": "_fivetran_by_primary_key", "fields": fields}],
    }
    with pytest.raises(BadRequestError) as ei:
        si.fivetran_create_table(deployment, definition)
    expect(ei.value, BadRequestError, code, 400)
    assert deployment.find_table("t") is None


# --- Fivetran: apply operations (§10.2; §14 items 14, 15) -------------------------------------------


def test_vector_1_upsert_into_empty_table(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["id"], soft_deletes=False)
    result = si.apply_fivetran_operations(
        deployment, [upsert("t", {"id": i64(42), "fivetran": {"synced": S2}})]
    )
    assert result == ImportResult(1, 1)
    assert docs(deployment, "t") == [{"id": 42, "fivetran": {"synced": S2}}]
    assert type(docs(deployment, "t")[0]["id"]) is int  # Int64, decoded from Convex internal JSON


def _vector_2_existing(dep: Deployment) -> None:
    fivetran_table(dep, "t", ["fivetran.deleted", "fivetran.id"])
    existing = {
        "name": "Nicolas",
        "otherField": True,
        "objectField": {"field_a": "a", "field_b": "b"},
        "fivetran": {"id": i64(42), "deleted": False, "synced": S1},
    }
    si.apply_fivetran_operations(dep, [upsert("t", existing)])


def test_vector_2_update_merges_fivetran_key_by_key(deployment: Deployment) -> None:
    _vector_2_existing(deployment)
    row = {
        "name": "How Convex Rocks",
        "objectField": {"field_a": "a2", "field_z": "z"},
        "fivetran": {"id": i64(42), "synced": S2},
    }
    si.apply_fivetran_operations(deployment, [update("t", row)])
    assert docs(deployment, "t") == [
        {
            "name": "How Convex Rocks",
            "otherField": True,
            "objectField": {"field_a": "a2", "field_z": "z"},
            "fivetran": {"id": 42, "deleted": False, "synced": S2},
        }
    ]


def test_vector_3_soft_delete_via_update(deployment: Deployment) -> None:
    _vector_2_existing(deployment)
    si.apply_fivetran_operations(deployment, [update("t", {"fivetran": {"id": i64(42), "deleted": True}})])
    (doc,) = docs(deployment, "t")
    assert doc["fivetran"] == {"id": 42, "deleted": True, "synced": S1}
    assert doc["name"] == "Nicolas"


def test_vector_4_update_without_match(deployment: Deployment) -> None:
    _vector_2_existing(deployment)
    with pytest.raises(NotFoundError) as ei:
        si.apply_fivetran_operations(deployment, [update("t", {"fivetran": {"id": i64(43), "synced": S2}})])
    e = expect(ei.value, NotFoundError, "FivetranMissingUpdatedRow", 404)
    assert (
        e.message == "Fivetran is trying to update a row that doesn\u2019t exist in the Convex destination."
    )


def test_vector_5_upsert_replaces_wholesale(deployment: Deployment) -> None:
    _vector_2_existing(deployment)
    row = {"name": "New", "fivetran": {"id": i64(42), "deleted": False, "synced": S2}}
    si.apply_fivetran_operations(deployment, [upsert("t", row)])
    assert docs(deployment, "t") == [{"name": "New", "fivetran": {"id": 42, "deleted": False, "synced": S2}}]


def test_vector_6_hard_delete(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["id"], soft_deletes=False)
    si.apply_fivetran_operations(deployment, [upsert("t", {"id": i64(42), "fivetran": {"synced": S1}})])
    si.apply_fivetran_operations(deployment, [hard_delete("t", {"id": i64(42), "fivetran": {}})])
    assert docs(deployment, "t") == []
    assert si.apply_fivetran_operations(deployment, [hard_delete("t", {"id": i64(42)})]) == ImportResult(1, 1)


def test_vector_7_upsert_of_soft_deleted_row_inserts_a_second_document(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["fivetran.deleted", "id"])
    si.apply_fivetran_operations(
        deployment, [upsert("t", {"id": i64(42), "fivetran": {"deleted": True, "synced": S1}})]
    )
    si.apply_fivetran_operations(
        deployment, [upsert("t", {"id": i64(42), "fivetran": {"deleted": False, "synced": S2}})]
    )
    assert len(docs(deployment, "t")) == 2


def test_vector_8_hard_delete_of_soft_deleted_row_is_a_no_op(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["fivetran.deleted", "id"])
    si.apply_fivetran_operations(
        deployment, [upsert("t", {"id": i64(42), "fivetran": {"deleted": True, "synced": S1}})]
    )
    si.apply_fivetran_operations(
        deployment, [hard_delete("t", {"id": i64(42), "fivetran": {"deleted": True}})]
    )
    assert docs(deployment, "t") == [{"id": 42, "fivetran": {"deleted": True, "synced": S1}}]


def test_primary_key_without_deleted_field_finds_soft_deleted_rows(deployment: Deployment) -> None:
    # Our connector's index (fivetran-destination.md §13 item 11): one document per primary key.
    fivetran_table(deployment, "t", ["id"])
    si.apply_fivetran_operations(
        deployment, [upsert("t", {"id": i64(1), "fivetran": {"deleted": True, "synced": S1}})]
    )
    si.apply_fivetran_operations(
        deployment, [upsert("t", {"id": i64(1), "v": 2.0, "fivetran": {"deleted": False, "synced": S2}})]
    )
    assert docs(deployment, "t") == [{"id": 1, "v": 2.0, "fivetran": {"deleted": False, "synced": S2}}]
    si.apply_fivetran_operations(deployment, [hard_delete("t", {"id": i64(1)})])
    assert docs(deployment, "t") == []


def test_operations_apply_in_order(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["id"])
    ops = [
        upsert("t", {"id": 1.0, "v": "a", "fivetran": {"synced": S1}}),
        update("t", {"id": 1.0, "v": "b"}),
        upsert("t", {"id": 2.0, "fivetran": {"synced": S1}}),
        hard_delete("t", {"id": 2.0}),
        update("t", {"id": 1.0, "w": None, "fivetran": {"synced": S2, "columns": {"x": 1.0}}}),
    ]
    assert si.apply_fivetran_operations(deployment, ops) == ImportResult(5, 1)
    assert docs(deployment, "t") == [
        {"id": 1.0, "v": "b", "w": None, "fivetran": {"synced": S2, "columns": {"x": 1.0}}}
    ]
    assert si.apply_fivetran_operations(deployment, []) == ImportResult(0, 0)


def test_update_replaces_fivetran_columns(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["id"])
    si.apply_fivetran_operations(
        deployment, [upsert("t", {"id": 1.0, "fivetran": {"synced": S1, "columns": {"a": 1.0, "b": 2.0}}})]
    )
    si.apply_fivetran_operations(deployment, [update("t", {"id": 1.0, "fivetran": {"columns": {"c": 3.0}}})])
    assert docs(deployment, "t")[0]["fivetran"] == {"synced": S1, "columns": {"c": 3.0}}


def test_missing_primary_key_index(deployment: Deployment) -> None:
    for setup in (lambda: None, lambda: si.clear_tables(deployment, ["public_books"])):
        setup()
        with pytest.raises(BadRequestError) as ei:
            si.apply_fivetran_operations(deployment, [upsert("public_books", {"id": 1.0})])
        e = expect(ei.value, BadRequestError, "MissingFivetranPrimaryKeyIndex", 400)
        assert e.message == (
            "The `_fivetran_by_primary_key` index on the `public_books` table is missing. Please edit your"
            " `schema.ts` file and add the following index to the `public_books` table:"
            ' .index("_fivetran_by_primary_key", [/* …attributes in the primary key… */]) (or'
            ' .index("sync_index", ["fivetran.deleted", /* …attributes in the primary key… */]).'
        )


def test_missing_primary_key_value(deployment: Deployment) -> None:
    fivetran_table(deployment, "public_books", ["fivetran.deleted", "fivetran.columns.key", "id"])
    ops = [
        upsert("public_books", {"id": 1.0, "fivetran": {"columns": {"key": "k"}}}),
        upsert("public_books", {"fivetran": {"columns": {"key": "k"}}}),
    ]
    with pytest.raises(BadRequestError) as ei:
        si.apply_fivetran_operations(deployment, ops)
    e = expect(ei.value, BadRequestError, "MissingValueForFivetranPrimaryKeyIndex", 400)
    assert (
        e.message
        == 'Missing value for field "id" of primary key index public_books._fivetran_by_primary_key.'
    )
    with pytest.raises(BadRequestError) as ei:
        si.apply_fivetran_operations(deployment, [upsert("public_books", {"id": 1.0, "fivetran": {}})])
    assert '"fivetran.columns.key"' in ei.value.message
    assert docs(deployment, "public_books") == []  # checked before the first write


def test_more_than_one_match_is_a_plain_error(deployment: Deployment) -> None:
    si.import_airbyte_records(deployment, {"t": APPEND}, [rec("t", id=1)] * 2)
    fivetran_table(deployment, "t", ["id"])
    with pytest.raises(PlainError) as ei:
        si.apply_fivetran_operations(deployment, [upsert("t", {"id": 1.0})])
    assert str(ei.value) == "Received more than one value for query"


@pytest.mark.parametrize(
    ("op", "cls", "code"),
    [
        (FivetranOperation("t", "Delete", {"id": 1.0}), BadRequestError, "BadJsonBody"),
        (FivetranOperation("t", "upsert", {"id": 1.0}), BadRequestError, "BadJsonBody"),
        (FivetranOperation("t", "Upsert", [1]), BadRequestError, "BadJsonBody"),
        (FivetranOperation("t", "Upsert", {"id": {"$integer": "AQ=="}}), BadRequestError, "BadJsonBody"),
        (FivetranOperation("t", "Upsert", {"$set": 1}), BadRequestError, "BadJsonBody"),
        (FivetranOperation("t", "Upsert", {"id": 1.0, "_id": "x"}), BadRequestError, "InvalidValue"),
        (FivetranOperation("t", "Upsert", {"id": 1.0, "_private": 1}), BadRequestError, "InvalidValue"),
        (FivetranOperation("bad table", "Upsert", {"id": 1.0}), PlainError, "InternalServerError"),
        (FivetranOperation("_system", "Upsert", {"id": 1.0}), PlainError, "InternalServerError"),
        (
            FivetranOperation("missing", "Upsert", {"id": 1.0}),
            BadRequestError,
            "MissingFivetranPrimaryKeyIndex",
        ),
    ],
)
def test_bad_operation_at_the_end_writes_nothing(
    small: Deployment, op: FivetranOperation, cls: type[ConvexError], code: str
) -> None:
    fivetran_table(small, "t", ["id"])
    good = [upsert("t", {"id": float(i)}) for i in range(12)]
    with pytest.raises(cls) as ei:
        si.apply_fivetran_operations(small, [*good, op])
    assert ei.value.code == code
    assert "committed" not in ei.value.message
    assert docs(small, "t") == []


def test_fivetran_operations_span_transactions(small: Deployment) -> None:
    fivetran_table(small, "t", ["id"])
    result = si.apply_fivetran_operations(
        small, [upsert("t", {"id": float(i % 6), "v": i}) for i in range(12)]
    )
    assert result == ImportResult(12, 3)
    assert sorted_docs(small, "t", "id") == [{"id": float(i), "v": 6.0 + i} for i in range(6)]


def test_fivetran_partial_import(small: Deployment) -> None:
    fivetran_table(small, "t", ["id"])
    ops = [upsert("t", {"id": float(i)}) for i in range(7)] + [update("t", {"id": 99.0, "v": 1.0})]
    with pytest.raises(NotFoundError) as ei:
        si.apply_fivetran_operations(small, ops)
    e = expect(ei.value, NotFoundError, "FivetranMissingUpdatedRow", 404)
    assert e.message == (
        "Fivetran is trying to update a row that doesn\u2019t exist in the Convex destination."
        + PARTIAL.format(n=5)
    )
    assert str(e) == e.message
    assert sorted(d["id"] for d in docs(small, "t")) == [0.0, 1.0, 2.0, 3.0, 4.0]


# --- Fivetran: truncate (§10.3) ---------------------------------------------------------------------


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _synced_rows(dep: Deployment, table: str, synced: list[float]) -> None:
    ops = [
        upsert(table, {"id": float(i), "name": f"n{i}", "fivetran": {"synced": s, "deleted": False}})
        for i, s in enumerate(synced)
    ]
    si.apply_fivetran_operations(dep, ops)


def test_truncate_missing_table_is_a_no_op(deployment: Deployment) -> None:
    for kind in ("SoftDelete", "HardDelete"):
        assert si.fivetran_truncate_table(deployment, "missing", _at(3), kind) == ImportResult(0, 0)
    assert si.fivetran_truncate_table(deployment, "missing", None, "SoftDelete") == ImportResult(0, 0)
    assert deployment.find_table("missing") is None


def test_hard_truncate_without_date_clears_and_creates(deployment: Deployment) -> None:
    si.fivetran_truncate_table(deployment, "My Table", None, "HardDelete")
    assert docs(deployment, "source_my_table") == []
    fivetran_table(deployment, "t", ["id"])
    _synced_rows(deployment, "t", [0.0, 1000.0])
    assert si.fivetran_truncate_table(deployment, "t", None, "HardDelete") == ImportResult(2, 1)
    assert docs(deployment, "t") == []
    idx = deployment.index("t", "_fivetran_by_primary_key")
    assert idx is not None and idx.ready  # indexes survive


def test_soft_truncate_without_date(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["id"])
    _synced_rows(deployment, "t", [0.0, 5000.0])
    si.apply_fivetran_operations(
        deployment, [upsert("t", {"id": 9.0, "other": [1.0]})]
    )  # no `fivetran` object
    result = si.fivetran_truncate_table(deployment, "t", None, "SoftDelete")
    # The document without `fivetran` has no `fivetran.deleted == false`, so it is not in the index range.
    assert result.records_committed == 2
    assert sorted_docs(deployment, "t", "id") == [
        {"id": 0.0, "name": "n0", "fivetran": {"synced": 0.0, "deleted": True}},
        {"id": 1.0, "name": "n1", "fivetran": {"synced": 5000.0, "deleted": True}},
        {"id": 9.0, "other": [1.0]},
    ]


def test_hard_truncate_before_3s(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["id"])
    _synced_rows(deployment, "t", [float(ms) for ms in range(0, 10_000, 1000)])
    assert si.fivetran_truncate_table(deployment, "t", _at(3), "HardDelete").records_committed == 3
    assert sorted(d["fivetran"]["synced"] for d in docs(deployment, "t")) == [
        float(ms) for ms in range(3000, 10_000, 1000)
    ]


def test_soft_truncate_before_2s(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["id"])
    _synced_rows(deployment, "t", [0.0, 10_000.0])
    si.fivetran_truncate_table(deployment, "t", _at(2), "SoftDelete")
    assert sorted_docs(deployment, "t", "id") == [
        {"id": 0.0, "name": "n0", "fivetran": {"synced": 0.0, "deleted": True}},
        {"id": 1.0, "name": "n1", "fivetran": {"synced": 10_000.0, "deleted": False}},
    ]


def test_soft_truncate_compares_float_milliseconds(deployment: Deployment) -> None:
    # fivetran-destination.md §12.2 step 5: 2024-02-08T23:59:59.999999999Z is stored as 1707436800000.0,
    # which is not below 2024-02-09T00:00:00Z.
    fivetran_table(deployment, "t", ["id"])
    _synced_rows(deployment, "t", [1707436800000.0, S2])
    si.fivetran_truncate_table(deployment, "t", datetime(2024, 2, 9, tzinfo=UTC), "SoftDelete")
    assert [d["fivetran"]["deleted"] for d in sorted_docs(deployment, "t", "id")] == [False, True]
    # A naive datetime is UTC; milliseconds are floored like chrono's timestamp_millis().
    assert si._delete_before_ms(datetime(2024, 2, 9)) == 1707436800000.0
    assert si._delete_before_ms(datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC)) == -1.0


def test_truncate_with_sync_index_without_deleted_field(small: Deployment) -> None:
    fivetran_table(small, "t", ["id"], soft_deletes=False)
    _synced_rows(small, "t", [float(ms) for ms in range(0, 14_000, 1000)])
    si.apply_fivetran_operations(small, [update("t", {"id": 0.0, "fivetran": {"deleted": True}})])
    # Soft: every document below 12 s; the one already soft-deleted is left alone (11 writes, 3 transactions).
    result = si.fivetran_truncate_table(small, "t", _at(12), "SoftDelete")
    assert result == ImportResult(11, 3)
    deleted = {d["id"]: d["fivetran"].get("deleted") for d in docs(small, "t")}
    assert deleted == {float(i): i < 12 for i in range(14)}
    # Hard: the same index range, soft-deleted documents included.
    assert si.fivetran_truncate_table(small, "t", _at(5), "HardDelete") == ImportResult(5, 1)
    assert sorted(d["id"] for d in docs(small, "t")) == [float(i) for i in range(5, 14)]


def test_truncate_spans_transactions(small: Deployment) -> None:
    fivetran_table(small, "t", ["id"])
    _synced_rows(small, "t", [float(ms) for ms in range(12)])
    assert si.fivetran_truncate_table(small, "t", None, "SoftDelete") == ImportResult(12, 3)
    assert all(d["fivetran"]["deleted"] for d in docs(small, "t"))
    # Soft-deleted rows are out of the range now, so a second soft truncate finds nothing.
    assert si.fivetran_truncate_table(small, "t", None, "SoftDelete").records_committed == 0
    si.apply_fivetran_operations(
        small,
        [upsert("t", {"id": float(i), "fivetran": {"synced": 1.0, "deleted": False}}) for i in range(12)],
    )
    assert si.fivetran_truncate_table(small, "t", _at(1), "HardDelete") == ImportResult(12, 3)
    assert docs(small, "t") == []


@pytest.mark.slow
def test_truncate_10000_rows(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["id"])
    ops = [
        upsert("t", {"id": float(i), "fivetran": {"synced": float(i), "deleted": False}})
        for i in range(10_000)
    ]
    si.apply_fivetran_operations(deployment, ops)
    assert si.fivetran_truncate_table(deployment, "t", None, "SoftDelete").records_committed == 10_000
    # Deliberate change from upstream: a hard truncate reaches soft-deleted rows too.
    assert si.fivetran_truncate_table(deployment, "t", _at(5), "HardDelete").records_committed == 5_000
    assert deployment.document_count("t") == 5_000


def test_hard_truncate_removes_rows_whatever_their_deleted_flag(small: Deployment) -> None:
    """Deliberate change from upstream (streaming-import.md §10.3 ranges over `fivetran.deleted == false`
    only): every document below the cutoff goes, soft-deleted or not, with the flag absent or null too;
    a soft truncate still marks the live rows only."""
    fivetran_table(small, "t", ["id"])
    flags: list[Any] = [False, True, None, "absent"]
    ops = []
    for i in range(16):
        meta: dict[str, Any] = {"synced": float(i * 1000)}
        if flags[i % 4] != "absent":
            meta["deleted"] = flags[i % 4]
        ops.append(upsert("t", {"id": float(i), "fivetran": meta}))
    si.apply_fivetran_operations(small, ops)
    # Soft, below 8 s: only the live (`deleted == false`) rows 0 and 4 change.
    assert si.fivetran_truncate_table(small, "t", _at(8), "SoftDelete").records_committed == 2
    # Hard, below 8 s: rows 0-7 whatever their flag, over several transactions (the small limits).
    result = si.fivetran_truncate_table(small, "t", _at(8), "HardDelete")
    assert result.records_committed == 8 and result.transactions >= 2
    assert sorted(d["id"] for d in docs(small, "t")) == [float(i) for i in range(8, 16)]
    # Rows at or after the cutoff keep their flag as it was.
    kept = {d["id"]: d["fivetran"].get("deleted", "absent") for d in docs(small, "t")}
    assert kept == {float(i): flags[i % 4] for i in range(8, 16)}


def test_truncate_sync_index_errors(deployment: Deployment) -> None:
    fivetran_table(deployment, "t", ["id"], synced_index=False)
    si.apply_fivetran_operations(deployment, [upsert("t", {"id": 1.0})])
    with pytest.raises(BadRequestError) as ei:
        si.fivetran_truncate_table(deployment, "t", _at(1), "HardDelete")
    e = expect(ei.value, BadRequestError, "MissingFivetranSyncedIndex", 400)
    assert e.message == (
        "The Fivetran synchronization index on the `t` table is missing. Something went wrong with the Fivetran sync."
    )

    si.fivetran_create_table(
        deployment,
        {
            "tableName": "t",
            "indexes": [{"indexDescriptor": "_fivetran_by_synced", "fields": ["fivetran.synced", "x"]}],
        },
    )
    with pytest.raises(BadRequestError) as ei:
        si.fivetran_truncate_table(deployment, "t", None, "SoftDelete")
    e = expect(ei.value, BadRequestError, "WrongFieldsInFivetranSyncedIndex", 400)
    assert e.message == (
        'The Fivetran synchronization index on the `t` has the wrong fields ["fivetran.synced", "x", "_creationTime"].'
        ' Expected ["fivetran.deleted", "fivetran.synced", "_creationTime"] or ["fivetran.synced", "_creationTime"]'
        " Something went wrong with the Fivetran sync."
    )
    assert docs(deployment, "t") == [{"id": 1.0}]


def test_truncate_bad_delete_type(deployment: Deployment) -> None:
    with pytest.raises(BadRequestError) as ei:
        si.fivetran_truncate_table(deployment, "t", None, "Soft")
    expect(ei.value, BadRequestError, "BadJsonBody", 400)


# --- get_schema (§10.5) -----------------------------------------------------------------------------


def test_get_schema(deployment: Deployment) -> None:
    assert si.get_schema(deployment) is None
    schema = parse_database_schema(
        {
            "tables": [
                {
                    "tableName": "books",
                    "indexes": [{"indexDescriptor": "by_id", "fields": ["id", "_creationTime"]}],
                }
            ],
            "schemaValidation": False,
        }
    )
    with deployment.transaction() as tx:
        tx.set_schema(schema)
    assert si.get_schema(deployment) == schema.to_json()
    assert si.get_schema(deployment)["tables"][0]["tableName"] == "books"  # type: ignore[index]
