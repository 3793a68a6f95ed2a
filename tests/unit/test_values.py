"""Convex values: formats (values-and-ids.md §2), storage encoding, limits (§6.3, §7.1) and index keys."""

from __future__ import annotations

import base64
import json
import math
import struct
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import BadRequestError, InvalidValueError
from connectors.values import (
    FLAG_BYTES,
    FLAG_INT,
    FLAG_NEGZERO,
    FLAG_NONFINITE,
    MISSING,
    EncodedDocument,
    ValueFormat,
    compare_values,
    decode_document,
    decode_documents,
    encode_document,
    encode_index_key,
    encode_value,
    format_path,
    from_encoded_json,
    from_export_json,
    get_path,
    index_key_prefix_successor,
    parse_format,
    storage_to_wire,
    to_clean_json,
    to_encoded_json,
    to_export_json,
    wire_bytes,
)

INF = math.inf
NAN = struct.unpack("<d", bytes.fromhex("000000000000f87f"))[0]  # canonical 0x7ff8000000000000
NEG_NAN = struct.unpack("<d", bytes.fromhex("000000000000f8ff"))[0]


def f64_bits(f: float) -> bytes:
    return struct.pack("<d", f)


def same(a: Any, b: Any) -> bool:
    """Structural equality that tells -0.0 from 0.0, NaN payloads apart and int from float/bool."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return f64_bits(a) == f64_bits(b)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# --- Formats -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "fmt"),
    [
        (None, ValueFormat.JSON),
        ("json", ValueFormat.JSON),
        ("convex_clean_json", ValueFormat.JSON),
        ("convex_encoded_json", ValueFormat.ENCODED),
        ("convex_json", ValueFormat.ENCODED),
        ("export_json", ValueFormat.EXPORT),
    ],
)
def test_parse_format(s: str | None, fmt: ValueFormat) -> None:
    assert parse_format(s) is fmt


@pytest.mark.parametrize("s", ["JSON", "", "xml", "export", " json"])
def test_parse_format_rejects(s: str) -> None:
    with pytest.raises(BadRequestError) as info:
        parse_format(s)
    assert info.value.status == 400
    assert info.value.code == "BadFormat"
    assert info.value.message == f"format param must be one of [`json`]. Got {s}"


# §2.3 vectors: (value, json, convex_encoded_json, export_json)
VECTORS: list[tuple[Any, str, str, str]] = [
    (0, '"0"', '{"$integer":"AAAAAAAAAAA="}', "0"),
    (1, '"1"', '{"$integer":"AQAAAAAAAAA="}', "1"),
    (2, '"2"', '{"$integer":"AgAAAAAAAAA="}', "2"),
    (3, '"3"', '{"$integer":"AwAAAAAAAAA="}', "3"),
    (42, '"42"', '{"$integer":"KgAAAAAAAAA="}', "42"),
    (99, '"99"', '{"$integer":"YwAAAAAAAAA="}', "99"),
    (-1, '"-1"', '{"$integer":"//////////8="}', "-1"),
    (9223372036854775807, '"9223372036854775807"', '{"$integer":"/////////38="}', "9223372036854775807"),
    (NAN, '"NaN"', '{"$float":"AAAAAAAA+H8="}', '{"$float":"AAAAAAAA+H8="}'),
    (INF, '"Infinity"', '{"$float":"AAAAAAAA8H8="}', '{"$float":"AAAAAAAA8H8="}'),
    (-INF, '"-Infinity"', '{"$float":"AAAAAAAA8P8="}', '{"$float":"AAAAAAAA8P8="}'),
    (-0.0, "-0.0", '{"$float":"AAAAAAAAAIA="}', "-0.0"),
    (1.5, "1.5", "1.5", "1.5"),
    (b"\x00\x10\x83", '"ABCD"', '{"$bytes":"ABCD"}', '{"$bytes":"ABCD"}'),
    (
        {"year": 2014, "make": "Honda"},
        '{"make":"Honda","year":"2014"}',
        '{"make":"Honda","year":{"$integer":"3gcAAAAAAAA="}}',
        '{"make":"Honda","year":2014}',
    ),
]


@pytest.mark.parametrize(("value", "clean", "encoded", "export"), VECTORS)
def test_encode_vectors(value: Any, clean: str, encoded: str, export: str) -> None:
    assert wire_bytes(value, ValueFormat.JSON) == clean.encode()
    assert wire_bytes(value, ValueFormat.ENCODED) == encoded.encode()
    assert wire_bytes(value, ValueFormat.EXPORT) == export.encode()
    assert orjson.dumps(to_clean_json(value), option=orjson.OPT_SORT_KEYS) == clean.encode()
    assert orjson.dumps(to_encoded_json(value), option=orjson.OPT_SORT_KEYS) == encoded.encode()
    assert orjson.dumps(to_export_json(value), option=orjson.OPT_SORT_KEYS) == export.encode()


@pytest.mark.parametrize(("value", "clean", "encoded", "export"), VECTORS)
def test_decode_vectors(value: Any, clean: str, encoded: str, export: str) -> None:
    # Int64 vectors arrive as {"$integer": ...}, so every vector decodes to the original value.
    assert same(from_encoded_json(json.loads(encoded)), value)
    assert same(from_encoded_json(orjson.loads(encoded)), value)
    assert same(from_export_json(orjson.loads(export)), value)


def test_python_json_spellings_are_accepted() -> None:
    # Python's json writes 1e+21; both spellings are the same number on input.
    assert from_encoded_json(json.loads("1e+21")) == 1e21
    assert from_export_json(orjson.loads("1e21")) == 1e21
    assert type(from_export_json(orjson.loads("5.0"))) is float
    assert type(from_export_json(orjson.loads("5"))) is int


def test_encoded_json_numbers_are_floats() -> None:
    out = from_encoded_json({"a": 42, "b": [1, 2.5, True, None], "c": -(2**70)})
    assert same(out, {"a": 42.0, "b": [1.0, 2.5, True, None], "c": float(-(2**70))})


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"$integer": "AQAAAAAAAA=="}, "Int64 must be exactly eight bytes"),
        ({"$integer": "AQAAAAAAAAAA"}, "Int64 must be exactly eight bytes"),
        ({"$float": "AAAAAAAA+A=="}, "Float64 must be exactly eight bytes"),
        ({"$float": "AAAAAAAA+D8="}, "Float64 1.5 should be encoded as a number"),
        ({"$float": "AAAAAAAA8D8="}, "Float64 1 should be encoded as a number"),
        ({"$float": "AQAAAAAAAAA="}, "should be encoded as a number"),  # subnormal 5e-324
        ({"$integer": 5}, "$integer payload must be a base64 string"),
        ({"$bytes": "!!!!"}, "not valid base64"),
        ({"$set": []}, "$set values are no longer supported"),
        ({"$map": []}, "$map values are no longer supported"),
        ({"$foo": 1}, "starts with '$'"),
        ({"$integer": "AAAAAAAAAAA=", "x": 1}, "starts with '$'"),
        ((1, 2), "Python type tuple is not a Convex value"),
        ({1: 2}, "Object keys must be strings"),
    ],
)
def test_encoded_decode_errors(obj: Any, message: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        from_encoded_json(obj)
    assert message in info.value.message
    assert info.value.code == "InvalidValue"


def test_rust_float_display_in_messages() -> None:
    # +0.0 is neither normal nor subnormal, so upstream accepts it in a $float object.
    assert same(from_encoded_json({"$float": "AAAAAAAAAAA="}), 0.0)
    # Short numbers are written as Rust's `{}` does (no exponent, no trailing `.0`), as upstream does.
    for number, text in ((1.5, "1.5"), (1e20, "100000000000000000000"), (-2.0, "-2")):
        with pytest.raises(InvalidValueError) as info:
            from_encoded_json({"$float": base64.b64encode(f64_bits(number)).decode()})
        assert info.value.message == f"Float64 {text} should be encoded as a number"


@pytest.mark.parametrize(("number", "text"), [(1e300, "1e+300"), (5e-324, "5e-324"), (-1.7e308, "-1.7e+308")])
def test_float_message_does_not_spell_out_hundreds_of_digits(number: float, text: str) -> None:
    # Rust's `{}` writes 1e300 as 301 digits and 5e-324 as 326 characters; past 32 the exponent form is kept.
    with pytest.raises(InvalidValueError) as info:
        from_encoded_json({"$float": base64.b64encode(f64_bits(number)).decode()})
    assert info.value.message == f"Float64 {text} should be encoded as a number"


def test_special_floats_accepted_in_float_objects() -> None:
    for v in (NAN, NEG_NAN, INF, -INF, -0.0, 0.0):
        enc = {"$float": base64.b64encode(f64_bits(v)).decode()}
        assert same(from_encoded_json(enc), v)
        assert same(from_export_json(enc), v)
    # Unpadded base64 is accepted on input.
    assert same(from_encoded_json({"$float": "AAAAAAAA+H8"}), NAN)
    assert from_encoded_json({"$bytes": "AA"}) == b"\x00"


def test_decode_error_paths() -> None:
    with pytest.raises(InvalidValueError) as info:
        from_encoded_json({"a": [1, {"$set": []}]})
    assert info.value.path == ".a[1]"
    assert info.value.message == "$set values are no longer supported at .a[1]"
    with pytest.raises(InvalidValueError) as info:
        from_export_json({"weird key": {"x": [2**64]}})
    assert info.value.path == '["weird key"].x[0]'
    with pytest.raises(InvalidValueError) as info:
        from_encoded_json({"x": {"$integer": "AA=="}})
    assert info.value.path == ".x"


def test_export_decode() -> None:
    v = from_export_json(
        orjson.loads(b'{"a":1,"b":1.0,"c":-0.0,"d":{"$bytes":"AQI="},"e":[{"$float":"AAAAAAAA8H8="}]}')
    )
    assert same(v, {"a": 1, "b": 1.0, "c": -0.0, "d": b"\x01\x02", "e": [INF]})
    assert from_export_json({"$integer": "AQAAAAAAAAA="}) == 1
    with pytest.raises(InvalidValueError):
        from_export_json({"$map": 1})
    with pytest.raises(InvalidValueError, match="Int64 range"):
        from_export_json(2**63)


def test_encoders_reject_bad_values() -> None:
    for fn in (to_clean_json, to_encoded_json, to_export_json):
        with pytest.raises(InvalidValueError, match="Int64 range"):
            fn({"a": [2**63]})
        with pytest.raises(InvalidValueError) as info:
            fn({"a": {"b": {1, 2}}})
        assert info.value.path == ".a.b"
        with pytest.raises(InvalidValueError):
            fn({1: 2})


def test_clean_json_details() -> None:
    assert to_clean_json({"a": [1, -0.0, NEG_NAN, b"", None, True]}) == {
        "a": ["1", -0.0, "NaN", "", None, True]
    }
    assert encode_value(5, ValueFormat.JSON) == "5"
    assert encode_value(5, ValueFormat.EXPORT) == 5
    assert encode_value(True, ValueFormat.ENCODED) is True


# --- Hypothesis strategies ---------------------------------------------------------------------------

any_float = st.one_of(
    st.floats(),
    st.sampled_from([0.0, -0.0, INF, -INF, NAN, NEG_NAN, 5e-324, -5e-324, 1.7976931348623157e308]),
    # Arbitrary bit patterns, including NaNs with payloads.
    st.integers(0, 2**64 - 1).map(lambda u: struct.unpack("<d", u.to_bytes(8, "little"))[0]),
)
int64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-(2**63), 2**63 - 1, 0, -1, 2**53 + 1]))
field_name = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=6).filter(
    lambda s: s[0] not in "$_"
)
scalars = st.one_of(st.none(), st.booleans(), int64, any_float, st.text(max_size=8), st.binary(max_size=8))
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(field_name, children, max_size=4),
    max_leaves=16,
)
documents = st.dictionaries(field_name, values, max_size=6)


def expected_flags(v: Any) -> int:
    t = type(v)
    if t is int:
        return FLAG_INT
    if t is float:
        if math.isnan(v) or math.isinf(v):
            return FLAG_NONFINITE
        return FLAG_NEGZERO if v == 0.0 and math.copysign(1.0, v) < 0 else 0
    if t is bytes:
        return FLAG_BYTES
    if t is list:
        out = 0
        for x in v:
            out |= expected_flags(x)
        return out
    if t is dict:
        out = 0
        for x in v.values():
            out |= expected_flags(x)
        return out
    return 0


@settings(max_examples=250, deadline=None)
@given(values)
def test_round_trip_encoded(v: Any) -> None:
    text = orjson.dumps(to_encoded_json(v))
    assert same(from_encoded_json(orjson.loads(text)), v)
    assert same(from_encoded_json(json.loads(text)), v)


@settings(max_examples=250, deadline=None)
@given(values)
def test_round_trip_export(v: Any) -> None:
    assert same(from_export_json(orjson.loads(wire_bytes(v, ValueFormat.EXPORT))), v)


@settings(max_examples=150, deadline=None)
@given(values)
def test_clean_json_is_serializable_and_lossy_as_specified(v: Any) -> None:
    def check(orig: Any, clean: Any) -> None:
        t = type(orig)
        if t is int:
            assert clean == str(orig)
        elif t is bytes:
            assert clean == base64.b64encode(orig).decode()
        elif t is float and (math.isnan(orig) or math.isinf(orig)):
            assert clean in ("NaN", "Infinity", "-Infinity")
        elif t is list:
            for a, b in zip(orig, clean, strict=True):
                check(a, b)
        elif t is dict:
            for k in orig:
                check(orig[k], clean[k])
        else:
            assert same(orig, clean)

    clean = to_clean_json(v)
    check(v, clean)
    json.dumps(clean, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(documents)
def test_storage_round_trip(doc: dict[str, Any]) -> None:
    enc = encode_document(doc)
    assert isinstance(enc, EncodedDocument)
    assert enc.size == len(enc.body)
    assert enc.flags == expected_flags(doc)
    assert same(decode_document(enc.body, enc.flags), doc)
    # Storage bytes are the encoded format with sorted keys; conversions match the generic encoders.
    assert enc.body == wire_bytes(doc, ValueFormat.ENCODED)
    for fmt in ValueFormat:
        assert storage_to_wire(enc.body, enc.flags, fmt) == wire_bytes(doc, fmt)


def test_storage_does_not_mutate_input() -> None:
    doc = {"a": [NAN, b"x", {"c": INF}], "b": b"y"}
    snapshot = repr(doc)
    enc = encode_document(doc)
    assert repr(doc) == snapshot
    assert enc.flags == FLAG_NONFINITE | FLAG_BYTES
    assert same(decode_document(enc.body, enc.flags), doc)


@pytest.mark.parametrize(
    ("doc", "flags"),
    [
        ({"a": "x", "b": 1.5, "c": None, "d": True}, 0),
        ({"a": 1}, FLAG_INT),
        ({"a": [[-0.0]]}, FLAG_NEGZERO),
        ({"a": {"b": NAN}}, FLAG_NONFINITE),
        ({"a": b""}, FLAG_BYTES),
        ({"a": 1, "b": -0.0, "c": -INF, "d": [b"x"]}, FLAG_INT | FLAG_NEGZERO | FLAG_NONFINITE | FLAG_BYTES),
    ],
)
def test_flags(doc: dict[str, Any], flags: int) -> None:
    assert encode_document(doc).flags == flags


def test_storage_wire_shortcuts() -> None:
    plain = encode_document({"_id": "abc", "_creationTime": 1686799242010.5, "x": 1.5, "s": "t"})
    assert plain.flags == 0
    for fmt in ValueFormat:
        assert storage_to_wire(plain.body, plain.flags, fmt) is plain.body
    enc = encode_document({"_id": "abc", "_creationTime": 1686799242010.5, "x": 1.5, "z": -0.0})
    assert enc.flags == FLAG_NEGZERO
    assert storage_to_wire(enc.body, enc.flags, ValueFormat.ENCODED) is enc.body
    assert enc.body == b'{"_creationTime":1686799242010.5,"_id":"abc","x":1.5,"z":{"$float":"AAAAAAAAAIA="}}'
    assert storage_to_wire(enc.body, enc.flags, ValueFormat.EXPORT) == (
        b'{"_creationTime":1686799242010.5,"_id":"abc","x":1.5,"z":-0.0}'
    )
    assert storage_to_wire(enc.body, enc.flags, ValueFormat.JSON) == (
        b'{"_creationTime":1686799242010.5,"_id":"abc","x":1.5,"z":-0.0}'
    )
    enc = encode_document({"year": 2014, "make": "Honda", "b": b"\x00\x10\x83", "n": [NAN]})
    assert storage_to_wire(enc.body, enc.flags, ValueFormat.JSON) == (
        b'{"b":"ABCD","make":"Honda","n":["NaN"],"year":"2014"}'
    )
    assert storage_to_wire(enc.body, enc.flags, ValueFormat.ENCODED) is enc.body
    assert enc.body == (
        b'{"b":{"$bytes":"ABCD"},"make":"Honda","n":[{"$float":"AAAAAAAA+H8="}],'
        b'"year":{"$integer":"3gcAAAAAAAA="}}'
    )
    assert storage_to_wire(enc.body, enc.flags, ValueFormat.EXPORT) == (
        b'{"b":{"$bytes":"ABCD"},"make":"Honda","n":[{"$float":"AAAAAAAA+H8="}],"year":2014}'
    )


# --- Validation --------------------------------------------------------------------------------------


def nested(levels: int, container: str = "object") -> Any:
    """A document with ``levels`` levels of containers (the document itself is level 1)."""
    v: Any = 1.0
    for _ in range(levels - 1):
        v = {"a": v} if container == "object" else [v]
    return {"a": v}


def test_nesting_limit() -> None:
    encode_document(nested(16))
    encode_document(nested(16, "array"))
    with pytest.raises(InvalidValueError) as info:
        encode_document(nested(17))
    assert "the limit is 16" in info.value.message
    assert info.value.path == ".a" * 16
    with pytest.raises(InvalidValueError):
        encode_document(nested(17, "array"))


def test_field_count_limit() -> None:
    encode_document({f"f{i}": i for i in range(1024)})
    with pytest.raises(InvalidValueError) as info:
        encode_document({"items": [{}, {f"f{i}": i for i in range(1025)}]})
    assert info.value.message == "Object has 1025 fields; the limit is 1024 at .items[1]"


def test_array_length_limit() -> None:
    encode_document({"a": [None] * 8192})
    with pytest.raises(InvalidValueError) as info:
        encode_document({"a": [None] * 8193})
    assert info.value.message == "Array has 8193 elements; the limit is 8192 at .a"


def test_int_range() -> None:
    encode_document({"a": [-(2**63), 2**63 - 1]})
    for bad in (2**63, -(2**63) - 1, 2**70):
        with pytest.raises(InvalidValueError) as info:
            encode_document({"items": [0, 1, 2, {"n": bad}]})
        assert info.value.path == ".items[3].n"
        assert str(bad) not in info.value.message  # never echo customer data


@pytest.mark.parametrize(
    ("doc", "fragment", "path"),
    [
        ({"$a": 1}, "starts with '$'", ""),
        ({"a": {"b": {"$c": 1}}}, "starts with '$'", ".a.b"),
        ({"a\x00": 1}, "non-control ASCII", ""),
        ({"é": 1}, "non-control ASCII", ""),
        ({"": 1}, "empty", ""),
        ({"x" * 1025: 1}, "the limit is 1024", ""),
        ({1: 1}, "must be strings", ""),
        ({"a": [{"ok": 1}, {("t",): 1}]}, "must be strings", ".a[1]"),
        ({"_foo": 1}, "system field", ""),
        ({"a": (1, 2)}, "tuple", ".a"),
        ({"a": [{1, 2}]}, "set", ".a[0]"),
        ({"a": Decimal("1")}, "Decimal", ".a"),
        ({"weird key": {"x": object()}}, "object", '["weird key"].x'),
        ({"s": ["ok", "bad \ud800"]}, "lone surrogate", ".s[1]"),
    ],
)
def test_invalid_documents(doc: Any, fragment: str, path: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        encode_document(doc)
    assert fragment in info.value.message
    assert info.value.path == path
    assert info.value.status == 400


def test_system_fields() -> None:
    encode_document({"_id": "x", "_creationTime": 1.0, "a": {"_nested": 1, "_id": 2}})
    encode_document({"_foo": 1}, allow_system_fields=True)
    with pytest.raises(InvalidValueError):
        encode_document({"_foo": 1})
    # A nested `_` key stays allowed after being cached from a nested position.
    encode_document({"a": {"_bar": 1}})
    with pytest.raises(InvalidValueError):
        encode_document({"_bar": 1})


def test_top_level_must_be_object() -> None:
    for bad in ([], "x", None, 1):
        with pytest.raises(InvalidValueError, match="must be an object"):
            encode_document(bad)  # type: ignore[arg-type]


def test_document_size_limit() -> None:
    overhead = len(b'{"a":""}')
    enc = encode_document({"a": "x" * ((1 << 20) - overhead)})
    assert enc.size == 1 << 20
    with pytest.raises(InvalidValueError) as info:
        encode_document({"a": "x" * ((1 << 20) - overhead + 1)})
    assert "the limit is 1048576 bytes" in info.value.message


def test_format_path() -> None:
    assert format_path(["items", 3, "name"]) == ".items[3].name"
    assert format_path(["weird key", "$ok", "1x"]) == '["weird key"].$ok["1x"]'
    assert format_path([]) == ""


# --- Field access ------------------------------------------------------------------------------------


def test_get_path() -> None:
    doc = {"a": {"b": {"c": 1}, "n": None}, "x": [1]}
    assert get_path(doc, ("a", "b", "c")) == 1
    assert get_path(doc, ("a", "n")) is None
    assert get_path(doc, ("a", "zz")) is MISSING
    assert get_path(doc, ("x", "0")) is MISSING
    assert get_path(doc, ("a", "n", "q")) is MISSING
    assert get_path(doc, ()) is doc
    assert repr(MISSING) == "MISSING"
    assert not MISSING
    assert type(MISSING)() is MISSING


# --- Index keys --------------------------------------------------------------------------------------

ORDERED = [
    MISSING,
    None,
    -(2**63),
    -1,
    0,
    1,
    2**63 - 1,
    NEG_NAN,
    -INF,
    -1e300,
    -1.0,
    -5e-324,
    -0.0,
    0.0,
    5e-324,
    1.0,
    INF,
    NAN,
    False,
    True,
    "",
    "\x00",
    "\x00\x00",
    "\x00a",
    "a",
    "a\x00",
    "a\x00b",
    "a\x01",
    "ab",
    "b",
    "é",
    "\U0001f600",
    b"",
    b"\x00",
    b"\x00\xff",
    b"\x01",
    b"\xff",
    [],
    [None],
    [None, None],
    [0],
    [0, None],
    [1],
    [""],
    ["", ""],
    ["\x00"],
    [[]],
    [{}],
    {},
    {"a": None},
    {"a": None, "b": None},
    {"a": 1},
    {"a": "x"},
    {"a\x00": None},
    {"b": None},
]


def test_explicit_order() -> None:
    keys = [encode_index_key([v]) for v in ORDERED]
    for i in range(len(ORDERED) - 1):
        assert keys[i] < keys[i + 1], (ORDERED[i], ORDERED[i + 1])
        assert compare_values(ORDERED[i], ORDERED[i + 1]) < 0
        assert compare_values(ORDERED[i + 1], ORDERED[i]) > 0


def ref_sort_key(v: Any) -> tuple[Any, ...]:
    """Independent reference of Convex's order, as a Python tuple key."""
    if v is MISSING:
        return (0,)
    t = type(v)
    if v is None:
        return (1,)
    if t is int:
        return (2, v)
    if t is float:
        u = struct.unpack(">Q", struct.pack(">d", v))[0]
        return (3, (u ^ 0xFFFFFFFFFFFFFFFF) if u >> 63 else (u | (1 << 63)))
    if t is bool:
        return (4, v)
    if t is str:
        return (5, v.encode())
    if t is bytes:
        return (6, v)
    if t is list:
        return (7, tuple(ref_sort_key(x) for x in v))
    if t is dict:
        return (8, tuple((k.encode(), ref_sort_key(v[k])) for k in sorted(v)))
    raise AssertionError(t)


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


key_text = st.text(st.sampled_from("\x00\x01a\xffé\U0001f600"), max_size=4)
key_scalars = st.one_of(
    st.none(),
    st.booleans(),
    int64,
    any_float,
    key_text,
    st.binary(max_size=4).map(lambda b: b.replace(b"\x01", b"\xff")),
)
key_values = st.recursive(
    key_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(key_text, children, max_size=3),
    max_leaves=8,
)
key_tuples = st.lists(st.one_of(st.just(MISSING), key_values), max_size=3)


@settings(max_examples=400, deadline=None)
@given(key_values, key_values)
def test_index_key_order_single(a: Any, b: Any) -> None:
    ka, kb = encode_index_key([a]), encode_index_key([b])
    ref = sign((ref_sort_key(a) > ref_sort_key(b)) - (ref_sort_key(a) < ref_sort_key(b)))
    assert sign((ka > kb) - (ka < kb)) == ref
    assert sign(compare_values(a, b)) == ref


@settings(max_examples=400, deadline=None)
@given(key_tuples, key_tuples)
def test_index_key_order_tuples(a: list[Any], b: list[Any]) -> None:
    ra = tuple(ref_sort_key(x) for x in a)
    rb = tuple(ref_sort_key(x) for x in b)
    ka, kb = encode_index_key(a), encode_index_key(b)
    assert sign((ka > kb) - (ka < kb)) == sign((ra > rb) - (ra < rb))
    if len(b) <= len(a) and same(a[: len(b)], b):
        assert ka.startswith(kb)


@settings(max_examples=300, deadline=None)
@given(key_tuples, key_tuples, st.integers(0, 3))
def test_prefix_successor(a: list[Any], b: list[Any], n: int) -> None:
    prefix = encode_index_key(a[:n])
    succ = index_key_prefix_successor(prefix)
    full_a = encode_index_key(a)
    other = encode_index_key(b)
    if succ is None:
        assert prefix.strip(b"\xff") == b""
        return
    assert succ > full_a >= prefix
    if other.startswith(prefix):
        assert other < succ
    elif other > prefix:
        assert other >= succ


def test_prefix_successor_edges() -> None:
    assert index_key_prefix_successor(b"") is None
    assert index_key_prefix_successor(b"\xff\xff") is None
    assert index_key_prefix_successor(b"a\xff") == b"b"
    assert index_key_prefix_successor(b"\x00") == b"\x01"


def test_index_key_errors() -> None:
    with pytest.raises(InvalidValueError) as info:
        encode_index_key(["ok", {"x": [2**64]}])
    assert info.value.path == "[1].x[0]"
    with pytest.raises(InvalidValueError):
        encode_index_key([(1,)])
    with pytest.raises(InvalidValueError):
        encode_index_key(["\ud800"])
    with pytest.raises(InvalidValueError):
        compare_values(1, object())  # type: ignore[arg-type]


def test_index_key_is_deterministic_for_equal_values() -> None:
    assert encode_index_key([{"b": 1, "a": 2}]) == encode_index_key([{"a": 2, "b": 1}])
    assert encode_index_key([1]) != encode_index_key([1.0])
    assert encode_index_key([0.0]) != encode_index_key([-0.0])


@settings(max_examples=250, deadline=None)
@given(values)
def test_in_place_encoded_decoding_matches_the_reference_decoder(v: Any) -> None:
    # The client's hot path reuses the parsed containers; it must agree with from_encoded_json.
    from connectors.values import decode_encoded_value

    wire = wire_bytes(v, ValueFormat.ENCODED)
    assert same(decode_encoded_value(orjson.loads(wire)), v)
    assert same(decode_encoded_value(orjson.loads(wire)), from_encoded_json(orjson.loads(wire)))


@settings(max_examples=100, deadline=None)
@given(st.lists(documents, max_size=8))
def test_decode_documents_is_decode_document_of_each(docs: list[dict[str, Any]]) -> None:
    encoded = [encode_document(d) for d in docs]
    decoded = decode_documents([e.body for e in encoded], [e.flags for e in encoded])
    assert len(decoded) == len(docs)
    for got, enc, doc in zip(decoded, encoded, docs, strict=True):
        assert same(got, decode_document(enc.body, enc.flags))
        assert same(got, doc)


def test_decode_documents_rewrites_only_real_stored_integers() -> None:
    # Strings spelling a stored Int64 (escaped in the stored JSON) stay strings; Int64s anywhere (top level,
    # in arrays and objects, next to other special values) come back as ints.
    marker = '{"$integer":"AQAAAAAAAAA="}'
    docs: list[dict[str, Any]] = [
        {"a": marker, "b": [marker, "x{"], "c": {"d": marker}},
        {"a": 1, "b": [2, [-(2**63)], {"c": 2**63 - 1}], "s": marker + "{"},
        {"a": 1, "f": math.inf, "z": -0.0, "y": b"\x00\xff", "n": [float("nan"), 3]},
        {"plain": 1.5, "t": "{"},
    ]
    encoded = [encode_document(d) for d in docs]
    decoded = decode_documents([e.body for e in encoded], [e.flags for e in encoded])
    for got, doc in zip(decoded, docs, strict=True):
        assert same(got, doc)
    assert type(decoded[1]["a"]) is int and decoded[0]["a"] == marker


def test_decode_documents_restores_an_integer_spelled_otherwise() -> None:
    # A body whose Int64 is not in encode_document's exact spelling still decodes (the slow way).
    body = b'{"a": {"$integer": "AQAAAAAAAAA="}, "b": {"$integer":"AgAAAAAAAAA="}}'
    assert decode_documents([body], [1]) == [{"a": 1, "b": 2}]
