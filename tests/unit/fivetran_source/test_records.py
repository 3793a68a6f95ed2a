"""The record encoder and message framing: what goes on the wire parses back to the type map's conversion
(``fivetran_row``), batches respect the record and byte limits, and the event order is kept."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import values
from connectors.client import ExportedValue
from connectors.sync import Checkpoint, Deletes, Rows, SyncState, TableRef, TableStarted
from connectors.typemap.fivetran import FivetranTimestamp, fivetran_row
from connectors.typemap.markdown import type_mapping_markdown
from fivetran_source.records import (
    MAX_BATCH_RECORDS,
    MessageBuilder,
    RecordEncoder,
    checkpoint_message,
    records_message,
)
from protos import common_pb2, connector_sdk_pb2

ROOT = Path(__file__).resolve().parents[3]
USERS = TableRef("", "users")
ENTRIES = TableRef("waitlist", "entries")
DOC_ID = "j57000820c20a1g7104gm2rc1m70ynr8"


def _bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(values.INT64_MIN, values.INT64_MAX),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 2**64 - 1).map(lambda b: float(struct.unpack("<d", struct.pack("<Q", b))[0])),
    st.text(max_size=10),
    st.binary(max_size=10),
)
convex_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.from_regex(r"[a-z][a-z0-9]{0,4}", fullmatch=True), inner, max_size=3),
    ),
    max_leaves=6,
)
field_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_ ]{0,8}", fullmatch=True)


def wire_value(v: common_pb2.ValueType) -> Any:
    member = v.WhichOneof("inner")
    if member == "utc_datetime":
        return (member, FivetranTimestamp(v.utc_datetime.seconds, v.utc_datetime.nanos))
    value = getattr(v, member)
    return (member, _bits(value) if member == "double" else value)


def typemap_value(member: str, value: Any) -> Any:
    return (member, _bits(value) if member == "double" else value)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(field_names, convex_values, max_size=6),
    st.floats(0, 4e12, allow_nan=False),
)
def test_encoded_rows_parse_back_to_the_type_map_conversion(fields: dict[str, Any], creation: float) -> None:
    """Lossless given the type: every member and value (NaN payloads and -0.0 by their bits) is the type
    map's, so the hand-framed protobuf and the reused message agree with ``fivetran_row``."""
    doc = {"_id": DOC_ID, "_creationTime": creation, "_other_system_field": 1, **fields}
    (serialized,) = RecordEncoder().upserts(USERS, [doc])
    record = connector_sdk_pb2.Record.FromString(serialized)
    assert record.HasField("schema_name") and record.schema_name == "app"
    assert (record.table_name, record.type) == ("users", common_pb2.UPSERT)
    want = {k: typemap_value(fv.member, fv.value) for k, fv in fivetran_row(doc).items()}
    assert {k: wire_value(v) for k, v in record.data.items()} == want
    assert "_other_system_field" not in record.data


def test_reference_row_vector() -> None:
    doc = {
        "_id": DOC_ID,
        "_creationTime": 1686799242010.5,
        "_other_system_field": "x",
        "car": {"year": 2014, "make": "Honda"},
        "nan": math.nan,
        "big": values.INT64_MAX,
        "raw": b"\x00\xff",
        "nothing": None,
    }
    (serialized,) = RecordEncoder().upserts(ENTRIES, [doc])
    record = connector_sdk_pb2.Record.FromString(serialized)
    assert record.schema_name == "waitlist"
    data = record.data
    assert (data["_creationTime"].utc_datetime.seconds, data["_creationTime"].utc_datetime.nanos) == (
        1686799242,
        10_500_000,
    )
    assert data["_id"].string == DOC_ID
    assert data["car"].json == '{"make":"Honda","year":"2014"}'
    assert math.isnan(data["nan"].double)
    assert data["big"].long == values.INT64_MAX
    assert data["raw"].binary == b"\x00\xff"
    assert data["nothing"].WhichOneof("inner") == "null" and data["nothing"].null
    assert set(data) == {"_id", "_creationTime", "car", "nan", "big", "raw", "nothing"}


def test_deletes_carry_only_the_id() -> None:
    (serialized,) = RecordEncoder().deletes(USERS, [DOC_ID])
    record = connector_sdk_pb2.Record.FromString(serialized)
    assert record.type == common_pb2.DELETE and set(record.data) == {"_id"}
    assert record.data["_id"].string == DOC_ID


def test_records_framing_is_the_protobuf_encoding() -> None:
    encoder = RecordEncoder()
    records = list(encoder.upserts(USERS, [{"_id": f"id{i}", "s": "x" * (i * 40)} for i in range(5)]))
    framed = connector_sdk_pb2.UpdateResponse.FromString(records_message(records))
    expected = connector_sdk_pb2.UpdateResponse(
        records=connector_sdk_pb2.Records(records=[connector_sdk_pb2.Record.FromString(r) for r in records])
    )
    assert framed == expected


def _exported(ref: TableRef, docs: list[dict[str, Any]]) -> list[ExportedValue]:
    return [ExportedValue(ref.component, ref.table, 1, False, d) for d in docs]


def test_batches_hold_at_most_100_records_and_a_bounded_size_and_keep_the_order() -> None:
    builder = MessageBuilder(max_batch_bytes=20_000)
    docs = [{"_id": f"id{i}", "s": "y" * (3000 if i % 50 == 0 else 10)} for i in range(250)]
    state = SyncState.deltas_from(5)
    events = [
        TableStarted(USERS, True),
        Rows(USERS, _exported(USERS, docs)),
        Deletes(USERS, [ExportedValue("", "users", 2, True, {"_id": "gone"})]),
        Checkpoint(state),
    ]
    messages = [connector_sdk_pb2.UpdateResponse.FromString(m) for e in events for m in builder.messages(e)]
    kinds = [m.WhichOneof("operation") for m in messages]
    assert kinds[-1] == "checkpoint" and set(kinds[:-1]) == {"records"}
    batches = [m.records.records for m in messages[:-1]]
    assert all(len(b) <= MAX_BATCH_RECORDS for b in batches)
    assert all(m.ByteSize() <= 20_000 + 10 for m in messages[:-1])
    flat = [r for b in batches for r in b]
    assert [r.type for r in flat] == [common_pb2.TRUNCATE] + [common_pb2.UPSERT] * 250 + [common_pb2.DELETE]
    assert [r.data["_id"].string for r in flat[1:-1]] == [d["_id"] for d in docs]
    assert messages[-1].SerializeToString() == checkpoint_message(messages[-1].checkpoint.state_json)
    assert builder.records_sent == 252 and builder.checkpoints_sent == 1


def test_single_records_mode_sends_record_messages() -> None:
    builder = MessageBuilder(single_records=True)
    out = list(builder.messages(Rows(USERS, _exported(USERS, [{"_id": "a"}, {"_id": "b"}]))))
    parsed = [connector_sdk_pb2.UpdateResponse.FromString(m) for m in out]
    assert [p.WhichOneof("operation") for p in parsed] == ["record", "record"]
    assert [p.record.data["_id"].string for p in parsed] == ["a", "b"]


def test_readme_type_mapping_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert type_mapping_markdown() in readme, "regenerate the README table from connectors.typemap.markdown"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "_id", "x" * 200]), convex_values, max_size=4)))
def test_one_encoder_for_many_documents_matches_the_type_map(docs: list[dict[str, Any]]) -> None:
    """The per-name entry bytes are cached across documents: a name seen with one type then another (and a
    name long enough for a two-byte length) still encodes each value as the type map says."""
    encoded = RecordEncoder().upserts(USERS, docs)
    assert len(encoded) == len(docs)
    for serialized, doc in zip(encoded, docs, strict=True):
        record = connector_sdk_pb2.Record.FromString(serialized)
        want = {k: typemap_value(fv.member, fv.value) for k, fv in fivetran_row(doc).items()}
        assert {k: wire_value(v) for k, v in record.data.items()} == want


def test_values_the_wire_cannot_carry_are_refused_with_the_field_name() -> None:
    import pytest

    from connectors.typemap.fivetran import FivetranValueError

    with pytest.raises(FivetranValueError, match="'n'.*out of range"):
        RecordEncoder().upserts(USERS, [{"_id": DOC_ID, "n": values.INT64_MAX + 1}])
    with pytest.raises(FivetranValueError, match="_creationTime"):
        RecordEncoder().upserts(USERS, [{"_id": DOC_ID, "_creationTime": "yesterday"}])


def test_long_values_get_multi_byte_lengths() -> None:
    doc = {"_id": DOC_ID, "s": "é" * 10_000, "b": b"\x01" * 5000, "j": ["x" * 20_000], "empty": ""}
    for _ in range(2):  # the second time from the cached heads
        (serialized,) = RecordEncoder().upserts(USERS, [doc])
        record = connector_sdk_pb2.Record.FromString(serialized)
        want = {k: typemap_value(fv.member, fv.value) for k, fv in fivetran_row(doc).items()}
        assert {k: wire_value(v) for k, v in record.data.items()} == want


_column_kinds = st.sampled_from(
    [
        st.text(max_size=12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.integers(values.INT64_MIN, values.INT64_MAX),
        st.lists(st.text(max_size=5), max_size=3),
        st.binary(max_size=6),
        st.one_of(st.none(), st.text(max_size=5)),
        convex_values,
    ]
)
_creation_times = st.sampled_from(
    [
        st.floats(0, 4e12, allow_nan=False),
        st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False),
        st.one_of(st.floats(0, 4e12), st.integers(-(10**12), 10**12)),
    ]
)


@st.composite
def _same_field_runs(draw: Any) -> list[dict[str, Any]]:
    """Runs of documents with one field order (the column path) with a few odd documents between them."""
    names = draw(st.lists(field_names, unique=True, max_size=5))
    kinds = [draw(_column_kinds) for _ in names]
    creation = draw(_creation_times)
    docs: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        for i in range(draw(st.integers(0, 20))):
            doc = {"_id": f"{DOC_ID[:-3]}{i:03d}", "_creationTime": draw(creation)}
            doc.update((name, draw(kind)) for name, kind in zip(names, kinds, strict=True))
            docs.append(doc)
        docs += draw(st.lists(st.dictionaries(field_names, convex_values, max_size=3), max_size=2))
    return docs


@settings(max_examples=300, deadline=None)
@given(_same_field_runs())
def test_column_encoding_is_byte_for_byte_the_document_encoding(docs: list[dict[str, Any]]) -> None:
    """A run of one field order is encoded column by column; the bytes are those of the per-document path
    (whose conversion the tests above check against the type map)."""
    assert RecordEncoder().upserts(USERS, docs) == RecordEncoder().upserts_by_document(USERS, docs)
    warm = RecordEncoder()  # and with the cached heads of an encoder that has seen the fields
    warm.upserts_by_document(USERS, docs)
    assert warm.upserts(USERS, iter(docs)) == RecordEncoder().upserts_by_document(USERS, docs)


def test_column_encoding_refuses_what_the_document_encoding_refuses() -> None:
    import pytest

    from connectors.typemap.fivetran import FivetranValueError

    run = [{"_id": DOC_ID, "_creationTime": 1.0, "n": i} for i in range(20)]
    for bad, match in (
        ({"n": values.INT64_MIN - 1}, "'n'.*out of range"),
        ({"_creationTime": math.inf}, "_creationTime.*finite"),
        ({"_creationTime": "yesterday"}, "_creationTime"),
    ):
        docs = [*run[:10], {**run[10], **bad}, *run[11:]]
        with pytest.raises(FivetranValueError, match=match):
            RecordEncoder().upserts(USERS, docs)
