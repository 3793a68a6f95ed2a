"""``Transaction.insert_many`` and its batch helpers give exactly what ``Transaction.insert`` one document at a
time gives (documents, shapes, index entries, errors), all or nothing; and the import fast paths (Airbyte
conversion of known keys, plain Fivetran rows) give what the general converters give."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest

from connectors import ids, values
from connectors.airbyte_records import convert_airbyte_record
from connectors.backend import bulk
from connectors.backend import streaming_import as si
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.errors import InvalidValueError, TransactionLimitError
from connectors.shapes import add_shape_counts
from tests.conftest import DeploymentFactory

DOCS: list[dict[str, Any]] = [
    {"k": "a", "n": 1.0, "t": ["x", "y"], "b": True, "z": None},
    {"k": "b", "n": 2.0, "t": ["x", "y"], "b": False, "z": None},  # same signature as the first
    {"k": "c", "n": 3, "t": [], "o": {"p": 1.5, "q": [1.0, {"r": "s"}]}},
    {"k": "d", "n": float("nan"), "t": [-0.0, float("inf")]},
    {"k": "e", "n": -0.0, "bytes": b"\x00\x01", "i": 2**40},
    {"k": "f", "o": {"p": 1.5, "q": [1.0, {"r": "s"}]}},
    {"k": "g", "o": {}},
]


def _state(dep: Deployment) -> tuple[list[dict[str, Any]], Any]:
    docs = [
        {k: v for k, v in d.value().items() if k not in ("_id", "_creationTime")}
        for d in dep.iter_snapshot(dep.table("t"))
    ]
    shape = dep.table_shape("t")
    return sorted(docs, key=repr), (shape._tags, shape._children)


def _setup(dep: Deployment) -> None:
    with dep.transaction() as tx:
        tx.create_table("t")
        tx.add_index("t", "by_k_n", ["k", "n"])


def test_insert_many_matches_insert(deployment_factory: DeploymentFactory) -> None:
    one = deployment_factory.open(location=deployment_factory.new_location())
    many = deployment_factory.open(location=deployment_factory.new_location())
    for dep in (one, many):
        _setup(dep)
    with one.transaction() as tx:
        for doc in DOCS:
            tx.insert("t", doc)
    with many.transaction() as tx:
        doc_ids = tx.insert_many("t", DOCS)
        assert len(set(doc_ids)) == len(DOCS)
        for doc_id, doc in zip(doc_ids, DOCS, strict=True):
            got = tx.get(doc_id)
            assert got is not None and got["_id"] == doc_id
            expected = {**doc, "_id": doc_id, "_creationTime": got["_creationTime"]}
            assert values.encode_document(expected).body == values.encode_document(got).body
        # The batch's documents are visible to the transaction's index queries, like inserted ones.
        assert [d["k"] for _, d in tx.index_query("t", "by_k_n", ("c",))] == ["c"]
        tx.replace(doc_ids[0], {"k": "a2"})  # and can be rewritten in the same transaction
    with one.transaction() as tx:
        (first_id,) = [i for i, d in tx.index_query("t", "by_k_n", ("a",))]
        tx.replace(first_id, {"k": "a2"})
    (docs_one, shape_one), (docs_many, shape_many) = _state(one), _state(many)
    assert repr(docs_one) == repr(docs_many)  # repr: NaN != NaN
    assert shape_one == shape_many
    for dep in (one, many):
        with dep.transaction() as tx:
            keys = [d["k"] for _, d in tx.index_query("t", "by_k_n", ())]
        assert keys == ["a2", "b", "c", "d", "e", "f", "g"]
    for doc_id in doc_ids:
        table_number, _ = ids.decode_id(doc_id)
        assert table_number == many.table("t").table_number


def test_insert_many_is_all_or_nothing(deployment: Deployment) -> None:
    _setup(deployment)
    bad = [{"k": "ok"}, {"k": "ok2"}, {"$bad": 1.0}, {"_id": "x"}]
    with deployment.transaction() as tx:
        with pytest.raises(ValueError, match="item 2") as info:
            tx.insert_many("t", bad, on_error=lambda i, e: ValueError(f"item {i}: {e.message}"))
        assert "$bad" in str(info.value)
        with pytest.raises(InvalidValueError):
            tx.insert_many("t", [{"k": "fine"}, {"_creationTime": 1.0}])
        assert tx.writes == 0
        tx.insert_many("t", [{"k": "kept"}])
    assert _state(deployment)[0] == [{"k": "kept"}]


def test_insert_many_limits_leave_the_transaction_untouched(deployment_factory: DeploymentFactory) -> None:
    dep = deployment_factory.open(DeploymentConfig(background=False, max_writes_per_transaction=3))
    _setup(dep)
    with dep.transaction() as tx:
        tx.insert("t", {"k": "first"})
        with pytest.raises(TransactionLimitError, match="Too many writes"):
            tx.insert_many("t", [{"k": "a"}, {"k": "b"}, {"k": "c"}])
        assert tx.writes == 1
        tx.insert_many("t", [{"k": "a"}, {"k": "b"}])
    assert [d["k"] for d in _state(dep)[0]] == ["a", "b", "first"]


@pytest.mark.parametrize("table_number", [1, 127, 128, 10_001, 16_383, 16_384, 2_000_000, ids.MAX_TABLE_NUMBER])
def test_new_ids_match_encode_id(table_number: int) -> None:
    internals, strings = bulk.new_ids(table_number, 50, 1_764_475_118_123.0)
    assert len(set(internals)) == 50
    day = (int(1_764_475_118_123.0 // 86_400_000) & 0xFFFF).to_bytes(2, "big")
    for internal, s in zip(internals, strings, strict=True):
        assert len(internal) == ids.INTERNAL_ID_LEN and internal.endswith(day)
        assert s == ids.encode_id(table_number, internal)
        assert ids.decode_id(s) == (table_number, internal)


@pytest.mark.parametrize("size", [0, 5, 20, 100, 5 * 2001])
def test_crockford_base32_matches_b32encode(size: int) -> None:
    crockford = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")
    rnd = random.Random(size)
    for data in (bytes(size), b"\xff" * size, rnd.randbytes(size), rnd.randbytes(size)):
        assert bulk.crockford_base32(data) == base64.b32encode(data).translate(crockford)


def test_crockford_base32_refuses_partial_groups() -> None:
    with pytest.raises(ValueError, match="5-byte groups"):
        bulk.crockford_base32(b"1234")


def _encoding_or_error(encode: Any, doc: dict[str, Any]) -> Any:
    try:
        return encode(doc)
    except InvalidValueError as e:
        return type(e), e.message


_BIG = "x" * (values.MAX_DOCUMENT_SIZE - 200)


@pytest.mark.parametrize(
    "later",
    [
        {"k": "b", "n": 2.5, "i": -(2**63), "o": {"p": 0.5, "i": 2**63 - 1, "s": "t"}, "z": None},
        {"k": "b", "n": float("nan"), "i": 1, "o": {"p": 1.0, "i": 2, "s": "t"}, "z": None},
        {"k": "b", "n": 1.0, "i": 1, "o": {"p": -0.0, "i": 2, "s": "t"}, "z": None},
        {"k": "b", "n": float("-inf"), "i": 1, "o": {"p": 0.0, "i": 2, "s": "t"}, "z": None},
        {"k": "b", "n": 1.0, "i": 2**63, "o": {"p": 1.0, "i": 2, "s": "t"}, "z": None},
        {"k": "b", "n": 1.0, "i": 1, "o": {"p": 1.0, "i": -(2**63) - 1, "s": "t"}, "z": None},
        {"k": "\ud800", "n": 1.0, "i": 1, "o": {"p": 1.0, "i": 2, "s": "t"}, "z": None},
        {"k": "b", "n": 1.0, "i": 1, "o": {"p": 1.0, "i": 2, "s": "\udfff"}, "z": None},
        {"k": _BIG, "n": 1.0, "i": 1, "o": {"p": 1.0, "i": 2, "s": _BIG}, "z": None},
    ],
)
def test_document_encoder_matches_encode_document(later: dict[str, Any]) -> None:
    """A document of a signature already seen takes the plan: same body, flags and errors as the
    general encoder (special floats, out-of-range ints, lone surrogates, size)."""
    first = {"k": "a", "n": 1.0, "i": 7, "o": {"p": 2.0, "i": 8, "s": "u"}, "z": None}
    encoder = bulk.DocumentEncoder()
    for doc in (first, later, first, dict(later)):
        got = _encoding_or_error(lambda d: encoder.encode(d)[0], doc)
        assert got == _encoding_or_error(values.encode_document, doc)


def test_document_encoder_signatures_count_shapes() -> None:
    """``add_all`` with the encoder's signatures counts what ``add_shape_counts`` counts, documents of
    a first-seen special float included."""
    docs = [*DOCS, *DOCS, {"k": "a", "n": float("nan"), "t": ["x", "y"], "b": True, "z": None}]
    expected: dict[Any, int] = {}
    encoder = bulk.DocumentEncoder()
    signatures = []
    for doc in docs:
        add_shape_counts(doc, 1, expected)
        encoded, signature = encoder.encode(doc)
        assert encoded == values.encode_document(doc)
        signatures.append(signature)
    batch = bulk.ShapeBatch()
    batch.add_all(docs, signatures)
    got: dict[Any, int] = {}
    batch.add_to(got)
    assert got == expected


def test_shape_batch_matches_add_shape_counts() -> None:
    docs = [*DOCS, *DOCS[:2], {"k": "a", "n": 1}, {"n": 1.0, "k": "a"}]
    expected: dict[Any, int] = {}
    for doc in docs:
        add_shape_counts(doc, 1, expected)
    batch = bulk.ShapeBatch()
    for doc in docs:
        batch.add(doc, values.encode_document(doc).flags)
    got: dict[Any, int] = {("", "stale"): -len(docs)}
    batch.add_to(got)
    assert got == {**expected, ("", "stale"): -len(docs)}


def test_index_keys_match_encode_index_key() -> None:
    keys = bulk.IndexKeys()
    paths = (("a",), ("b", "c"), ("d",), ("_creationTime",))
    for doc in [
        {"a": 0.0, "b": {"c": False}, "d": "x", "_creationTime": 5.0},
        {"a": -0.0, "b": {"c": 0}, "d": None, "_creationTime": 5.0},
        {"a": float("nan"), "b": {"c": True}, "_creationTime": 5.0},
        {"a": 1, "b": [], "d": [1.0, "s"], "_creationTime": 5.0},
        {"a": 1.0, "b": {"c": 1}, "d": {"e": b"\x00"}, "_creationTime": 6.0},
        {"a": 2**63 - 1, "b": {"c": True}, "d": "a\x00b", "_creationTime": -1.5},
        {"a": -(2**63), "b": {"c": False}, "d": "", "_creationTime": float("-inf")},
        {"a": float("inf"), "b": {"c": 1.0}, "d": "é", "_creationTime": 1704773419000.0001},
    ]:
        expected = values.encode_index_key([values.get_path(doc, p) for p in paths])
        assert keys.key(doc, paths) == expected
        assert keys.key(doc, paths) == expected  # cached encodings too
    # Strings (encoded inline: NULs escaped, UTF-8), paths of three names, and a missing middle step.
    deep = (("s",), ("x", "y", "z"), ("b", "c"))
    for doc in [
        {"s": "a\x00b", "x": {"y": {"z": "é😀"}}, "b": "not an object"},
        {"s": "", "x": {"y": 1.5}, "b": {"c": "\x00"}},
        {"x": {"y": {"z": None}}, "b": {}},
    ]:
        assert keys.key(doc, deep) == values.encode_index_key([values.get_path(doc, p) for p in deep])
    with pytest.raises(InvalidValueError) as bad:
        keys.key({"s": 1.5, "i": 2**63}, (("s",), ("i",)))
    with pytest.raises(InvalidValueError) as reference:
        values.encode_index_key([1.5, 2**63])
    assert (bad.value.message, bad.value.path) == (reference.value.message, reference.value.path)
    with pytest.raises(InvalidValueError) as bad:
        keys.key({"s": "\ud800"}, (("s",),))
    with pytest.raises(InvalidValueError) as reference:
        values.encode_index_key(["\ud800"])
    assert bad.value.message == reference.value.message
    # encode(): a key of values as the primary-key lookups build it, the general encoder's errors included.
    for key in [
        (False, "x\x00"),
        (0.0, -0.0, 1.5, 1.5),
        ("a", [1.0], {"b": None}, b"\x00"),
        (),
        (True, None, 2**40),
        # Int64 bounds and negatives (encoded inline), floats of every kind (encoded inline once, cached).
        (-(2**63), 2**63 - 1, -1, 0, 7),
        (float("inf"), float("-inf"), float("nan"), -1.5, 5e-324, 1704773419000.0001),
    ]:
        assert keys.encode(key) == values.encode_index_key(list(key))
    with pytest.raises(InvalidValueError) as bad:
        keys.encode(("ok", 2**70))
    with pytest.raises(InvalidValueError) as reference:
        values.encode_index_key(["ok", 2**70])
    assert (bad.value.message, bad.value.path) == (reference.value.message, reference.value.path)


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": [1, "x", None], "c": {"d": 2, "e": [{"f": 3}]}, "g": True},
        {"a": "x", "b": 1.5, "c": None},
        {"a": ["x", "y"], "b": {"bad key": 1}},
        {"a": 1, "_ab_cdc_deleted_at": "2024-01-01", "_ab_cdc_lsn": 5},
        {"a": 1, "source_ab_cdc_deleted_at": None, "source_ab_cdc_x": 1},
        {"a": 10**400},
    ],
)
def test_airbyte_fast_path_matches_general_conversion(data: dict[str, Any]) -> None:
    def convert() -> Any:
        try:
            return convert_airbyte_record(data)
        except Exception as e:  # the same error both times
            return (type(e), str(e))

    first = convert()  # general path; remembers the keys
    second = convert()  # fast path when every key is known
    assert repr(first) == repr(second)
    if not isinstance(first[0], type):
        doc, deleted = first
        assert doc is not data and all(type(v) is not int for v in doc.values())


@pytest.mark.parametrize(
    "row",
    [
        {"a": "x", "b": 1.5, "c": None, "d": True},
        {"a": 1, "b": 2.0},
        {"fivetran": {"synced": 1.0, "deleted": False}, "t": ["a", 1.0]},
        {"fivetran": {"synced": {"$integer": "AQAAAAAAAAA="}}},
        {"t": [1, 2]},
        {"o": {"$bytes": "AAE="}},
        {"$bad": 1.0},
        {"o": {"$set": []}},
        {"o": {}, "l": []},
        # Int64 payloads (decoded inline when well formed; anything else takes the general decoder's error).
        {"id": {"$integer": "AAAAAAAAAAA="}, "n": "x", "fivetran": {"deleted": False}},
        {"id": {"$integer": "////////////"}, "b": 1.0},
        {"id": {"$integer": "AAAAAAAAAAAA"}},
        {"id": {"$integer": "AAAAAAAAAAA"}},
        {"id": {"$integer": "AAAAAAAAAA=="}},
        {"id": {"$integer": "!AAAAAAAAAA="}},
        {"id": {"$integer": 5}},
        {"id": {"$integer": "AQAAAAAAAAA="}, "o": {"$integer": "AQAAAAAAAAA="}, "p": {"q": {"$integer": "AQ=="}}},
        {"o": {"a": 1.0}, "l": [1.0, "a", None, False]},
        {"o": {"$integer": "AQAAAAAAAAA=", "x": 1.0}},
        {"o": {"$float": "AAAAAAAA+H8="}, "id": {"$integer": "AQAAAAAAAAA="}},
        {"o": {"n": {"$integer": "AQAAAAAAAAA="}}},
        {"l": [{"$integer": "AQAAAAAAAAA="}]},
    ],
)
def test_fivetran_row_fast_path_matches_decoder(row: dict[str, Any]) -> None:
    def decode(f: Any) -> Any:
        try:
            return f(row)
        except Exception as e:
            return (type(e), str(e))

    assert repr(decode(si._decode_row)) == repr(decode(values.from_encoded_json))
    assert repr(decode(si._decode_row)) == repr(decode(values.from_encoded_json))


@pytest.mark.parametrize("fill", [b"\x00", b"\xff", b"\x80"])
@pytest.mark.parametrize("table_number", [1, 16_384, ids.MAX_TABLE_NUMBER])
def test_new_ids_checksums_of_extreme_bytes(monkeypatch: pytest.MonkeyPatch, fill: bytes, table_number: int) -> None:
    """All-0xFF bodies give the largest Fletcher sums: the Adler-32 shortcut must still be exact."""
    monkeypatch.setattr(bulk.os, "urandom", lambda n: fill * n)
    internals, strings = bulk.new_ids(table_number, 3, 1_764_475_118_123.0)
    for internal, s in zip(internals, strings, strict=True):
        assert s == ids.encode_id(table_number, internal)
