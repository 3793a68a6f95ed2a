"""The type map (connectors/typemap/): every Convex type through every target that can hold it exactly."""

from __future__ import annotations

import base64
import io
import math
import struct
from typing import Any

import fastavro
import jsonschema
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import values
from connectors.shapes import TableShape
from connectors.typemap import tags
from connectors.typemap.airbyte import (
    airbyte_is_exact,
    airbyte_json_schema,
    airbyte_record_to_convex,
    airbyte_stream_schema,
    airbyte_value_to_convex,
    to_airbyte_value,
)
from connectors.typemap.arrow import (
    CREATION_TIME_EXACT_COLUMN,
    arrow_columns,
    arrow_row_to_document,
    arrow_schema,
)
from connectors.typemap.avro import avro_record_converter, avro_record_to_document, avro_schema
from connectors.typemap.fivetran import (
    FivetranDataType,
    FivetranTimestamp,
    FivetranValue,
    fivetran_column_type,
    fivetran_row,
    fivetran_value_to_convex,
    parse_fivetran_cell,
)
from connectors.typemap.jsonschema import json_schema, table_type_from_json_schema
from connectors.typemap.jsontext import json_text, needs_json_text
from connectors.typemap.tree import ArrayType, ConvexType, ObjectType, split_nullable

# --- strategies -------------------------------------------------------------------------------------------

INT64_EXTREMES = [values.INT64_MIN, values.INT64_MIN + 1, -1, 0, 1, 2**53 + 1, values.INT64_MAX]
SPECIAL_FLOAT_BITS = [
    0x7FF8000000000000,  # canonical NaN
    0xFFF8000000000000,  # negative NaN
    0x7FF0000000000001,  # signalling NaN with a payload
    0x7FF4000000000123,  # another payload
    0x7FF0000000000000,  # +inf
    0xFFF0000000000000,  # -inf
    0x8000000000000000,  # -0.0
    0x0000000000000001,  # smallest subnormal
]


def _bits_to_float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


int64s = st.one_of(st.sampled_from(INT64_EXTREMES), st.integers(values.INT64_MIN, values.INT64_MAX))
float64s = st.one_of(
    st.sampled_from(SPECIAL_FLOAT_BITS).map(_bits_to_float),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 2**64 - 1).map(_bits_to_float),
)
# Field names: non-control ASCII, no "$" or "_" start (user fields); spaces and punctuation included.
field_names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=6).filter(
    lambda s: s[0] not in "$_"
)
SCALAR_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "int64": int64s,
    "float64": float64s,
    "boolean": st.booleans(),
    "string": st.text(max_size=8),
    "bytes": st.binary(max_size=8),
}

# A "kind" describes the values to draw: a scalar name, ("array", kind), ("object", {name: (kind, optional)})
# or ("nullable", kind).
kinds = st.recursive(
    st.sampled_from(sorted(SCALAR_STRATEGIES)),
    lambda inner: st.one_of(
        st.tuples(st.just("array"), inner),
        st.tuples(
            st.just("object"),
            st.dictionaries(field_names, st.tuples(inner, st.booleans()), min_size=1, max_size=3),
        ),
        st.tuples(st.just("nullable"), inner),
    ),
    max_leaves=5,
)


def values_of(kind: Any) -> st.SearchStrategy[Any]:
    if isinstance(kind, str):
        return SCALAR_STRATEGIES[kind]
    tag, arg = kind
    if tag == "array":
        return st.lists(values_of(arg), max_size=3)
    if tag == "nullable":
        return st.one_of(st.none(), values_of(arg))
    required = {n: values_of(k) for n, (k, opt) in arg.items() if not opt}
    optional = {n: values_of(k) for n, (k, opt) in arg.items() if opt}
    return st.fixed_dictionaries(required, optional=optional)


any_values = st.recursive(
    st.one_of(*SCALAR_STRATEGIES.values()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(field_names, inner, max_size=3)),
    max_leaves=8,
)
# Python's datetime (which pyarrow and fastavro read timestamps into) ends in year 9999.
creation_times = st.one_of(
    st.sampled_from([0.0, 1686799242010.5, 1.5, 2.5e14, -1.5]),
    # Never -0.0: _creationTime's fixed schema is {"type": "number"} (the server stamps real times).
    st.floats(min_value=-1e12, max_value=2.5e14).filter(tags.is_normal_float),
)


def _docs(column_values: list[Any], creation: list[float]) -> list[dict[str, Any]]:
    docs = []
    for i, (v, ct) in enumerate(zip(column_values, creation, strict=False)):
        doc: dict[str, Any] = {"_id": f"id{i}", "_creationTime": ct}
        if v is not _MISSING:
            doc["c"] = v
        docs.append(doc)
    return docs


_MISSING = object()

# --- comparison -------------------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Exact equality of Convex values: types must match and floats compare bit for bit (NaN, -0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def expected_typed(v: Any, t: ConvexType) -> Any:
    """What a typed target (Arrow, Avro) reads back: values that need JSON text as their text, and a field
    that is optional *and* nullable as null where it was missing (those targets have one null)."""
    inner, _ = split_nullable(t)
    if v is None or inner is None:
        return v
    if needs_json_text(t):
        return json_text(v)
    if isinstance(inner, ArrayType):
        return [expected_typed(x, inner.items) for x in v]
    if isinstance(inner, ObjectType):
        out = {}
        for f in inner.fields:
            if f.name in v:
                out[f.name] = expected_typed(v[f.name], f.type)
            elif f.optional and split_nullable(f.type)[1]:
                out[f.name] = None
        return out
    return v


# --- the targets ------------------------------------------------------------------------------------------


def through_parquet(docs: list[dict[str, Any]], table: ObjectType) -> list[dict[str, Any]]:
    cols = arrow_columns(table)
    schema = arrow_schema(table)
    arrays = [pa.array([c.convert(d.get(c.source)) for d in docs], type=c.field.type) for c in cols]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), buf)
    buf.seek(0)
    back = pq.read_table(buf)
    assert back.schema.equals(schema, check_metadata=True)
    return [arrow_row_to_document(r, table) for r in back.to_pylist()]


def through_avro(docs: list[dict[str, Any]], table: ObjectType) -> list[dict[str, Any]]:
    parsed = fastavro.parse_schema(avro_schema(table, "t"))
    convert = avro_record_converter(table)
    buf = io.BytesIO()
    for d in docs:
        fastavro.schemaless_writer(buf, parsed, convert(d))
    buf.seek(0)
    return [avro_record_to_document(fastavro.schemaless_reader(buf, parsed, None), table) for _ in docs]


def fivetran_csv_text(fv: FivetranValue) -> str:
    """A value as Fivetran writes it into a CSV batch file (fivetran-sdk.md §8.4)."""
    v = fv.value
    if fv.member == "bool":
        return "true" if v else "false"
    if fv.member == "double":
        assert isinstance(v, float)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    if fv.member == "binary":
        assert isinstance(v, bytes)
        return base64.b64encode(v).decode()
    return str(v)


def canonical_nan(v: Any) -> Any:
    return math.nan if type(v) is float and math.isnan(v) else v


# --- the property test ------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=kinds, data=st.data())
def test_every_type_round_trips_through_every_target_that_holds_it(kind: Any, data: Any) -> None:
    column = data.draw(st.lists(st.one_of(values_of(kind), st.just(_MISSING)), min_size=1, max_size=4))
    creation = data.draw(st.lists(creation_times, min_size=len(column), max_size=len(column)))
    check_round_trips(_docs(column, creation))


TRICKY_COLUMNS: list[list[Any]] = [
    INT64_EXTREMES,
    [_bits_to_float(b) for b in SPECIAL_FLOAT_BITS],
    [b"", b"\x00\xff", bytes(range(256))],
    ["", "\u00e9\u4e2d\U0001f600", "a\x00b"],
    [{"o": {"deep": []}}, {"o": {}}],  # a nested object whose only field is sometimes missing
    [{"x": None}, {}],  # optional and nullable: reads back as null
    [[[1, 2], []], []],
    [{}, {}],  # an always-empty object: JSON text
    [1, "1", b"1", 1.0, None],  # a mixed union: JSON text
    [[1, "a"], [b"z"]],  # array items of mixed types: the array is JSON text
    [None, None],
]


@pytest.mark.parametrize("column", TRICKY_COLUMNS)
def test_tricky_values_round_trip(column: list[Any]) -> None:
    check_round_trips(_docs([*column, _MISSING], [1686799242010.5, -0.5, 0.0, 2.5e14, 1.0, 7.25] * 50))


def check_round_trips(docs: list[dict[str, Any]]) -> None:
    shape = TableShape.from_documents(docs)
    table = shape.type_tree("t")
    field = table.field("c")

    # Arrow through Parquet, and Avro: exact for every typed field; JSON-text fields hold the clean JSON.
    for target in (through_parquet, through_avro):
        back = target(docs, table)
        for doc, got in zip(docs, back, strict=True):
            assert same(got, expected_typed(doc, table)), (target.__name__, doc, got)

    # JSON Schema: each encoded value validates against the schema of its table, in every format; the
    # tree read back from the schema is the shape's tree.
    for fmt in (values.ValueFormat.JSON, values.ValueFormat.ENCODED, values.ValueFormat.EXPORT):
        schema = shape.json_schema("t", fmt, delta_schema=True)
        validator = jsonschema.Draft7Validator(schema)
        for doc in docs:
            validator.validate(values.encode_value(doc, fmt))
        assert table_type_from_json_schema(schema) == table

    # Airbyte source records: validate against the stream schema and read back exactly where the type
    # allows it (NaN payloads aside: the record text is just "NaN").
    stream = jsonschema.Draft7Validator(airbyte_stream_schema(table))
    for doc in docs:
        record = orjson.loads(orjson.dumps({k: to_airbyte_value(v) for k, v in doc.items()}))
        stream.validate(record)
        if not airbyte_is_exact(table):
            continue
        back_doc = {k: airbyte_value_to_convex(x, table.field(k).type) for k, x in record.items()}  # type: ignore[union-attr]
        assert same(_canonical_nans(back_doc), _canonical_nans(doc))

    # Fivetran: every row converts; exact members convert back bit for bit, and through a CSV batch file
    # (the destination direction) for the types Fivetran keeps exactly.
    col_type = fivetran_column_type(field.type) if field else FivetranDataType.UNSPECIFIED
    for doc in docs:
        row = fivetran_row(doc)
        ts = row["_creationTime"].value
        assert isinstance(ts, FivetranTimestamp) and 0 <= ts.nanos < 10**9
        assert math.isclose(
            fivetran_value_to_convex(row["_creationTime"]), doc["_creationTime"], abs_tol=1e-6
        )  # type: ignore[arg-type]
        if "c" not in doc:
            continue
        fv = row["c"]
        v = doc["c"]
        if fv.member == "json":
            assert fv.value == json_text(v)
            continue
        assert same(fivetran_value_to_convex(fv), v)
        if fv.member != "null" and col_type is not FivetranDataType.UNSPECIFIED:
            parsed = parse_fivetran_cell(fivetran_csv_text(fv), col_type, "c")
            assert same(canonical_nan(parsed), canonical_nan(v))


def _canonical_nans(v: Any) -> Any:
    if type(v) is list:
        return [_canonical_nans(x) for x in v]
    if type(v) is dict:
        return {k: _canonical_nans(x) for k, x in v.items()}
    return canonical_nan(v)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(field_names, any_values, max_size=4), max_size=5))
def test_tree_from_json_schemas_equals_tree_from_shape(docs: list[dict[str, Any]]) -> None:
    """What an HTTP reader parses from json_schemas is the local engine's tree, in every format."""
    shape = TableShape.from_documents([{"_id": "x", "_creationTime": 1.0, **d} for d in docs])
    for fmt in ("json", "convex_encoded_json", "export_json", "convex_json", "convex_clean_json"):
        for delta in (False, True):
            schema = orjson.loads(orjson.dumps(shape.json_schema("things", fmt, delta)))
            assert table_type_from_json_schema(schema) == shape.type_tree("things")


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.one_of(
            st.none(), st.booleans(), st.text(max_size=6), st.floats(allow_nan=False, allow_infinity=False)
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.from_regex(r"[a-z][a-z0-9 ]{0,5}", fullmatch=True), inner, max_size=3),
        ),
        max_leaves=8,
    )
)
def test_airbyte_destination_keeps_json_values_exactly(value: Any) -> None:
    """Airbyte JSON -> Convex is exact for what JSON carries (null, bool, string, finite Float64, nested)."""
    data = orjson.loads(orjson.dumps({"v": value}))
    converted, deleted = airbyte_record_to_convex(data)
    assert not deleted
    assert same(converted, {"v": value})


def test_airbyte_destination_numbers_become_float64() -> None:
    assert airbyte_record_to_convex({"n": 3, "m": [1, 2.5], "_id": "x"}) == (
        {"n": 3.0, "m": [1.0, 2.5], "source_id": "x"},
        False,
    )


def test_airbyte_schema_for_int64_bytes_and_special_floats() -> None:
    shape = TableShape.from_documents(
        [
            {"_id": "a", "_creationTime": 1.0, "i": 1, "b": b"\x00", "f": math.nan, "n": None},
            {"_id": "b", "_creationTime": 2.0, "i": 2, "b": b"", "f": 1.0, "n": "x"},
        ]
    )
    stream = airbyte_stream_schema(shape.type_tree("t"))
    props = stream["properties"]
    assert props["i"] == {"type": "integer"}
    assert props["b"] == {"type": "string", "contentEncoding": "base64", "$description": "base64 bytes"}
    assert props["f"]["anyOf"][1] == {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}
    assert props["n"] == {"type": ["string", "null"]}
    assert props["_creationTime"] == {"type": "number"}
    assert props["_id"] == {"type": "string", "$description": "Id(t)"}
    assert stream["additionalProperties"] is True
    assert {"_ab_cdc_lsn", "_ab_cdc_updated_at", "_ab_cdc_deleted_at", "_ts", "_deleted"} <= props.keys()
    assert to_airbyte_value({"i": 2**63 - 1, "b": b"\x00\x10\x83", "f": -math.inf}) == {
        "i": 2**63 - 1,
        "b": "ABCD",
        "f": "-Infinity",
    }
    assert airbyte_json_schema(shape.type_tree("t").field("_id").type) == {  # type: ignore[union-attr]
        "type": "string",
        "$description": "Id(t)",
    }


def test_json_schema_of_a_type_matches_the_table_schema() -> None:
    table = TableShape.from_documents([{"_id": "a", "_creationTime": 1.0, "n": 1}]).type_tree("t")
    assert json_schema(table.field("n").type, "json") == {  # type: ignore[union-attr]
        "$description": "int64 represented as base10 string",
        "type": "string",
    }


def test_tags_and_type_order_agree_with_compare_values() -> None:
    samples = [None, 1, 1.5, True, "s", b"b", [1], {"a": 1}]
    ranks = [tags.TYPE_RANK[type(v)] for v in samples]
    assert ranks == sorted(ranks)
    for a, b in zip(samples, samples[1:], strict=False):
        assert values.compare_values(a, b) < 0
    assert [tags.value_type_name(v) for v in samples] == [
        "null",
        "int64",
        "float64",
        "boolean",
        "string",
        "bytes",
        "array",
        "object",
    ]
    assert tags.value_tag(-0.0) == tags.FLOAT64_SPECIAL and tags.value_tag(0.0) == tags.FLOAT64
