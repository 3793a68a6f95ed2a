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
    FivetranCellError,
    FivetranDataType,
    FivetranTimestamp,
    FivetranValue,
    FivetranValueError,
    creation_time_to_fivetran,
    fivetran_cell_parser,
    fivetran_column_type,
    fivetran_columns,
    fivetran_row,
    fivetran_type_from_validator,
    fivetran_value_to_convex,
    parse_fivetran_cell,
    schema_ts_for_fivetran_type,
    to_fivetran_value,
    validator_for_fivetran_type,
)
from connectors.typemap.jsonschema import (
    json_schema,
    table_type_from_json_schema,
    table_types_from_json_schemas,
)
from connectors.typemap.jsontext import json_text, json_text_bytes, needs_json_text
from connectors.typemap.legacy_shape import LegacyShapeError, legacy_shape_type, parse_legacy_shape
from connectors.typemap.markdown import fivetran_destination_markdown, type_mapping_markdown
from connectors.typemap.tree import (
    BYTES_T,
    INT64_T,
    STRING_T,
    ArrayType,
    ConvexType,
    IdType,
    ObjectType,
    TypeMapError,
    split_nullable,
    union_of,
)

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
    records: list[Any] = [fastavro.schemaless_reader(buf, parsed, None) for _ in docs]
    return [avro_record_to_document(r, table) for r in records]


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
        ms: Any = fivetran_value_to_convex(row["_creationTime"])
        assert math.isclose(ms, doc["_creationTime"], abs_tol=1e-6)
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
    samples: list[Any] = [None, 1, 1.5, True, "s", b"b", [1], {"a": 1}]
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


# --- Fivetran vectors (fivetran-source.md §5, §6.5; fivetran-destination.md §6) ------------------------------


def test_fivetran_data_type_is_the_proto_enum() -> None:
    assert {t.name: t.value for t in FivetranDataType} == {
        "UNSPECIFIED": 0,
        "BOOLEAN": 1,
        "SHORT": 2,
        "INT": 3,
        "LONG": 4,
        "DECIMAL": 5,
        "FLOAT": 6,
        "DOUBLE": 7,
        "NAIVE_DATE": 8,
        "NAIVE_DATETIME": 9,
        "UTC_DATETIME": 10,
        "BINARY": 11,
        "XML": 12,
        "STRING": 13,
        "JSON": 14,
        "NAIVE_TIME": 15,
    }


def test_fivetran_source_row_conversion() -> None:
    doc: dict[str, Any] = {
        "_id": "j57000820c20a1g7104gm2rc1m70ynr8",
        "_creationTime": 1686799242010.5,
        "_reserved": 1,
        "car": {"year": 2014, "make": "Honda"},
        "n": None,
        "i": -1,
        "f": math.inf,
        "b": b"\x00\x10\x83",
        "ok": True,
    }
    row = fivetran_row(doc)
    assert "_reserved" not in row
    assert row["_creationTime"] == FivetranValue("utc_datetime", FivetranTimestamp(1686799242, 10_500_000))
    assert row["_id"] == FivetranValue("string", doc["_id"])
    assert row["car"] == FivetranValue("json", '{"make":"Honda","year":"2014"}')
    assert row["n"] == FivetranValue("null", True)
    assert row["i"] == FivetranValue("long", -1)
    assert row["f"] == FivetranValue("double", math.inf)
    assert row["b"] == FivetranValue("binary", b"\x00\x10\x83")
    assert row["ok"] == FivetranValue("bool", True)
    with pytest.raises(FivetranValueError, match="Unexpected _creationTime value"):
        creation_time_to_fivetran("2024")
    with pytest.raises(FivetranValueError, match="Unexpected _creationTime value"):
        creation_time_to_fivetran(math.nan)


def test_fivetran_scalar_members_agree_with_the_value_conversion() -> None:
    from connectors.typemap.fivetran import SCALAR_MEMBERS

    for sample in (True, 1, 1.5, "s", b"\x00"):
        assert SCALAR_MEMBERS[type(sample)] == to_fivetran_value(sample).member
    assert set(SCALAR_MEMBERS) == {bool, int, float, str, bytes}


def test_fivetran_columns_are_typed_where_the_shape_is_exact() -> None:
    docs = [
        {
            "_id": "a",
            "_creationTime": 1.0,
            "i": 1,
            "s": "x",
            "mixed": 1,
            "nul": None,
            "o": {"a": 1},
            "opt": b"1",
        },
        {"_id": "b", "_creationTime": 2.0, "i": None, "s": "y", "mixed": "1", "nul": None, "o": [1]},
    ]
    columns = fivetran_columns(TableShape.from_documents(docs).type_tree("t"))
    assert [(c.name, c.type, c.primary_key) for c in columns] == [
        ("_id", FivetranDataType.STRING, True),
        ("_creationTime", FivetranDataType.UTC_DATETIME, False),
        ("i", FivetranDataType.LONG, False),
        ("mixed", FivetranDataType.UNSPECIFIED, False),
        ("nul", FivetranDataType.UNSPECIFIED, False),
        ("o", FivetranDataType.JSON, False),
        ("opt", FivetranDataType.BINARY, False),
        ("s", FivetranDataType.STRING, False),
    ]


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-01-09T04:10:19.156057706Z", 1704773419156.0576),
        ("2024-01-08T18:52:07.754685370Z", 1704739927754.6853),
        ("2024-02-09T00:00:00.000000000Z", 1707436800000.0),
        ("2024-02-08T23:59:59.999999999Z", 1707436800000.0),
        ("1970-01-01T00:00:00Z", 0.0),
        ("2007-12-03T10:15:30.123Z", 1196676930123.0),
        ("2007-12-03T11:15:30.123+01:00", 1196676930123.0),
    ],
)
def test_utc_datetime_cells(text: str, ms: float) -> None:
    assert same(parse_fivetran_cell(text, FivetranDataType.UTC_DATETIME, "at"), ms)
    assert same(fivetran_cell_parser(FivetranDataType.UTC_DATETIME, "at")(text), ms)


@pytest.mark.parametrize(
    ("text", "data_type", "expected"),
    [
        ("true", FivetranDataType.BOOLEAN, True),
        ("false", FivetranDataType.BOOLEAN, False),
        ("-32768", FivetranDataType.SHORT, -32768.0),
        ("2147483647", FivetranDataType.INT, 2147483647.0),
        ("9223372036854775807", FivetranDataType.LONG, 9223372036854775807),
        ("1.23", FivetranDataType.FLOAT, 1.2300000190734863),
        ("3.4028237E+38", FivetranDataType.FLOAT, math.inf),
        ("3.4028236E+24", FivetranDataType.FLOAT, 3.402823609495512e24),
        ("-0.0", FivetranDataType.DOUBLE, -0.0),
        ("1e300", FivetranDataType.DOUBLE, 1e300),
        ("12.3400", FivetranDataType.DECIMAL, "12.3400"),
        ("2007-12-03", FivetranDataType.NAIVE_DATE, "2007-12-03"),
        ("10:15:30", FivetranDataType.NAIVE_TIME, "10:15:30"),
        ("10:15:30.5", FivetranDataType.NAIVE_TIME, "10:15:30.500"),
        ("10:15:30.000001", FivetranDataType.NAIVE_TIME, "10:15:30.000001"),
        ("10:15:30.000000001", FivetranDataType.NAIVE_TIME, "10:15:30.000000001"),
        ("2007-12-03T10:15:30", FivetranDataType.NAIVE_DATETIME, "2007-12-03 10:15:30"),
        ("2007-12-03T10:15:30.120", FivetranDataType.NAIVE_DATETIME, "2007-12-03 10:15:30.120"),
        ("AAECAw==", FivetranDataType.BINARY, b"\x00\x01\x02\x03"),
        ("<a/>", FivetranDataType.XML, "<a/>"),
        ("", FivetranDataType.STRING, ""),
        ("[1,2,3]", FivetranDataType.JSON, [1.0, 2.0, 3.0]),
        ('{"a":{"b":[true,null,"x"]}}', FivetranDataType.JSON, {"a": {"b": [True, None, "x"]}}),
        ("null", FivetranDataType.JSON, None),
        ('{"$integer":"AQAAAAAAAAA="}', FivetranDataType.JSON, ValueError),
    ],
)
def test_fivetran_cells(text: str, data_type: FivetranDataType, expected: Any) -> None:
    if expected is ValueError:
        with pytest.raises(FivetranCellError, match="isn\u2019t supported by Convex"):
            parse_fivetran_cell(text, data_type, "col")
        with pytest.raises(FivetranCellError, match="isn\u2019t supported by Convex"):
            fivetran_cell_parser(data_type, "col")(text)
        return
    assert same(parse_fivetran_cell(text, data_type, "col"), expected)
    # The per-column parser (resolved once per file) gives the same value.
    assert same(fivetran_cell_parser(data_type, "col")(text), expected)


@pytest.mark.parametrize(
    ("text", "data_type", "reason"),
    [
        ("True", FivetranDataType.BOOLEAN, "expected true or false"),
        ("2147483648", FivetranDataType.INT, "32-bit integer"),
        ("1_000", FivetranDataType.LONG, "64-bit integer"),
        ("9223372036854775808", FivetranDataType.LONG, "64-bit integer"),
        (" 1.5", FivetranDataType.DOUBLE, "floating-point"),
        ("1_0.5", FivetranDataType.DOUBLE, "floating-point"),
        ("2007-02-30", FivetranDataType.NAIVE_DATE, "day is out of range"),
        ("2007-12-03 10:15:30", FivetranDataType.NAIVE_DATETIME, "without a zone"),
        ("2007-12-03T10:15:30", FivetranDataType.UTC_DATETIME, "RFC 3339"),
        ("AA=A", FivetranDataType.BINARY, "base64"),
        ("{", FivetranDataType.JSON, "JSON value which isn\u2019t valid"),
        ("[NaN]", FivetranDataType.JSON, "JSON value which isn\u2019t valid"),
        ("[1e999999]", FivetranDataType.JSON, "JSON value which isn\u2019t valid"),
        ("[" + "9" * 400 + "]", FivetranDataType.JSON, "Arbitrary precision JSON integers unsupported"),
        ("true", FivetranDataType.JSON, "Booleans aren\u2019t supported as top-level JSON values"),
        ("12", FivetranDataType.JSON, "Numbers aren\u2019t supported as top-level JSON values"),
        ('"s"', FivetranDataType.JSON, "Strings aren\u2019t supported as top-level JSON values"),
        ("x", FivetranDataType.UNSPECIFIED, "Can\u2019t parse a value to an unspecified type"),
        ("9" * 5000, FivetranDataType.LONG, "integer string conversion"),
        ("-2147483649", FivetranDataType.SHORT, "32-bit integer"),
        ("maybe", FivetranDataType.BOOLEAN, "expected true or false"),
    ],
)
def test_fivetran_cell_errors_name_the_column_and_type_not_the_value(
    text: str, data_type: FivetranDataType, reason: str
) -> None:
    with pytest.raises(FivetranCellError) as e:
        parse_fivetran_cell(text, data_type, "price")
    assert e.value.column == "price"
    assert str(e.value).startswith(f"Couldn't parse field price as {data_type.name} from file: ")
    assert reason in str(e.value)
    with pytest.raises(FivetranCellError) as per_column:
        fivetran_cell_parser(data_type, "price")(text)
    assert str(per_column.value) == str(e.value) and per_column.value.column == "price"


def test_fivetran_validators_both_ways() -> None:
    assert validator_for_fivetran_type(FivetranDataType.LONG, True) == {
        "type": "union",
        "value": [{"type": "bigint"}, {"type": "null"}],
    }
    assert validator_for_fivetran_type(FivetranDataType.JSON, True) == {"type": "object", "value": {}}
    assert validator_for_fivetran_type(FivetranDataType.UNSPECIFIED, True) == {"type": "any"}
    assert schema_ts_for_fivetran_type(FivetranDataType.UTC_DATETIME, False) == "v.float64()"
    assert schema_ts_for_fivetran_type(FivetranDataType.NAIVE_TIME, True) == "v.union(v.string(), v.null())"
    cases: list[tuple[dict[str, Any], FivetranDataType]] = [
        ({"type": "number"}, FivetranDataType.DOUBLE),
        ({"type": "bigint"}, FivetranDataType.LONG),
        ({"type": "boolean"}, FivetranDataType.BOOLEAN),
        ({"type": "string"}, FivetranDataType.STRING),
        ({"type": "bytes"}, FivetranDataType.BINARY),
        ({"type": "object", "value": {}}, FivetranDataType.JSON),
        ({"type": "array", "value": {"type": "string"}}, FivetranDataType.JSON),
        ({"type": "union", "value": [{"type": "string"}]}, FivetranDataType.STRING),
        ({"type": "union", "value": [{"type": "null"}, {"type": "bigint"}]}, FivetranDataType.LONG),
        ({"type": "union", "value": [{"type": "bytes"}, {"type": "null"}]}, FivetranDataType.BINARY),
        ({"type": "union", "value": [{"type": "bytes"}, {"type": "string"}]}, FivetranDataType.UNSPECIFIED),
        ({"type": "null"}, FivetranDataType.UNSPECIFIED),
        ({"type": "literal", "value": "a"}, FivetranDataType.UNSPECIFIED),
        ({"type": "id", "tableName": "t"}, FivetranDataType.UNSPECIFIED),
        ({"type": "any"}, FivetranDataType.UNSPECIFIED),
    ]
    for validator, expected in cases:
        assert fivetran_type_from_validator(validator) is expected, validator
    # Every type the suggestion maps to a validator that DescribeTable reads back as a Fivetran type that
    # produces the same Convex values.
    for dt in FivetranDataType:
        back = fivetran_type_from_validator(validator_for_fivetran_type(dt, True))
        assert validator_for_fivetran_type(back, True) == validator_for_fivetran_type(dt, True) or dt in (
            FivetranDataType.UNSPECIFIED,
        )


# --- the JSON-text rule, the markers, the Markdown table, the legacy shapes ---------------------------------


def test_json_text_is_clean_sorted_compact_and_marked() -> None:
    docs: list[dict[str, Any]] = [
        {"_id": "a", "_creationTime": 1.0, "m": {"b": 2**62, "a": [b"\x00", math.nan]}},
        {"_id": "b", "_creationTime": 2.0, "m": 1},
    ]
    table = TableShape.from_documents(docs).type_tree("t")
    field = arrow_schema(table).field("m")
    assert field.type == pa.string() and field.metadata == {b"convex:encoding": b"json"}
    avro_field = next(f for f in avro_schema(table)["fields"] if f["name"] == "m")
    assert avro_field["type"] == {"type": "string", "convex.encoding": "json"}
    assert "logicalType" not in avro_field["type"]
    assert json_text(docs[0]["m"]) == '{"a":["AA==","NaN"],"b":"4611686018427387904"}'
    assert json_text_bytes(docs[0]["m"]) == b'{"a":["AA==","NaN"],"b":"4611686018427387904"}'
    assert json_text_bytes(["é", "b"]) == json_text(["é", "b"]).encode() == '["é","b"]'.encode()


def test_creation_time_is_a_utc_microsecond_timestamp_with_the_exact_float_beside_it() -> None:
    table = TableShape.from_documents([{"_id": "a", "_creationTime": 1686799242010.5}]).type_tree("t")
    schema = arrow_schema(table)
    assert schema.names[:3] == ["_id", "_creationTime", CREATION_TIME_EXACT_COLUMN]
    assert schema.field("_creationTime").type == pa.timestamp("us", tz="UTC")
    assert schema.field(CREATION_TIME_EXACT_COLUMN).type == pa.float64()
    fields = {f["name"]: f["type"] for f in avro_schema(table)["fields"]}
    assert fields["_creationTime"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert fields[CREATION_TIME_EXACT_COLUMN] == "double"
    micros = next(c for c in arrow_columns(table) if c.field.name == "_creationTime").convert(1686799242010.5)
    assert micros == 1686799242010500


def test_avro_sanitizes_field_names_and_keeps_the_original() -> None:
    docs = [{"_id": "a", "_creationTime": 1.0, "first name": "x", "first_name": "y", "9lives": 1}]
    table = TableShape.from_documents(docs).type_tree("t")
    fields = {f["name"]: f for f in avro_schema(table)["fields"]}
    assert fields["first_name"].get("convex.name") is None
    assert fields["first_name_2"]["convex.name"] == "first name"
    assert fields["_9lives"]["convex.name"] == "9lives"
    assert through_avro(docs, table) == docs


def test_mapping_table_markdown_is_generated_from_the_map() -> None:
    text = type_mapping_markdown()
    lines = text.strip().splitlines()
    assert lines[0].startswith("| Convex | JSON Schema")
    assert all(line.count(" | ") == 5 for line in lines if not line.startswith("|---"))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert (
        "LONG (`long`)" in rows["Int64"] and "`int64` not null" in rows["Int64"] and "`long`" in rows["Int64"]
    )
    assert (
        "BINARY (`binary`)" in rows["Bytes"]
        and "`binary`" in rows["Bytes"]
        and "contentEncoding" in rows["Bytes"]
    )
    assert "UTC_DATETIME" in rows["`_creationTime`"] and "timestamp-micros" in rows["`_creationTime`"]
    assert "convex:encoding: json" in rows["Mixed union (Int64 or String)"]
    dest = fivetran_destination_markdown()
    assert "| LONG | int64 | `v.union(v.int64(), v.null())` |" in dest
    assert "| NAIVE_DATETIME | string |" in dest
    assert "| UNSPECIFIED | — (rejected) | `v.any()` |" in dest


def test_legacy_shape_to_tree() -> None:
    shape = parse_legacy_shape(
        '{"_creationTime": normalfloat64, "_id": id<10001>, "n": int64 | string, "o"?: array<bytes>}'
    )
    table = legacy_shape_type(shape, "t")
    assert isinstance(table, ObjectType)
    n, o = table.field("n"), table.field("o")
    assert n is not None and n.type == union_of((INT64_T, STRING_T)) and not n.optional
    assert o is not None and o.type == ArrayType(BYTES_T) and o.optional
    assert table.field("_id").type == IdType("t")  # type: ignore[union-attr]
    with pytest.raises(LegacyShapeError, match="character"):
        parse_legacy_shape("{nope")


def test_json_schemas_answer_by_component_and_flat() -> None:
    users = TableShape.from_documents([{"_id": "a", "_creationTime": 1.0, "n": 1}])
    grouped = {
        "": {"users": users.json_schema("users", "json", True)},
        "waitlist": {"users": users.json_schema("users", "json")},
    }
    trees = table_types_from_json_schemas(grouped, by_component=True)
    assert trees == {("", "users"): users.type_tree("users"), ("waitlist", "users"): users.type_tree("users")}
    flat = table_types_from_json_schemas(
        {"users": users.json_schema("users", "export_json")}, by_component=False
    )
    assert flat == {("", "users"): users.type_tree("users")}
    with pytest.raises(TypeMapError, match="table 'bad'"):
        table_types_from_json_schemas(
            {"bad": {"type": "object", "properties": {"x": {"type": "wat"}}}}, False
        )
