"""Table shapes from (path, type) counts: connectors/shapes.py."""

from __future__ import annotations

import enum
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import BadRequestError
from connectors.schema import parse_validator
from connectors.shapes import TableShape, add_shape_counts, shape_counts, value_tag

ID1 = "j57000820c20a1g7104gm2rc1m70ynr8"
ID2 = "g00g00820c20a1g7104gm2rc1m70zyds"
DRAFT7 = "http://json-schema.org/draft-07/schema#"

ID_SCHEMA = {"$description": "Id(books)", "type": "string"}
NUMBER = {"type": "number"}


class Fmt(enum.Enum):
    # Stand-in for connectors.values.ValueFormat (being written concurrently).
    JSON = "json"
    ENCODED = "convex_encoded_json"
    EXPORT = "export_json"


class Table:
    """A table as the storage engine keeps it: live documents plus the incremental counter."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.counts: Counter[tuple[str, str]] = Counter()
        self._n = 0

    def insert(self, fields: dict[str, Any]) -> str:
        self._n += 1
        doc_id = f"id{self._n}"
        doc = {"_id": doc_id, "_creationTime": float(self._n), **fields}
        self.docs[doc_id] = doc
        add_shape_counts(doc, 1, self.counts)
        return doc_id

    def replace(self, doc_id: str, fields: dict[str, Any]) -> None:
        old = self.docs[doc_id]
        new = {"_id": doc_id, "_creationTime": old["_creationTime"], **fields}
        add_shape_counts(old, -1, self.counts)
        add_shape_counts(new, 1, self.counts)
        self.docs[doc_id] = new

    def patch(self, doc_id: str, changes: dict[str, Any]) -> None:
        self.replace(doc_id, {**_user(self.docs[doc_id]), **changes})

    def delete(self, doc_id: str) -> None:
        add_shape_counts(self.docs.pop(doc_id), -1, self.counts)

    def shape(self) -> TableShape:
        return TableShape.from_counts(self.counts)


def _user(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "required": required,
        "$schema": DRAFT7,
    }


# --- counting ----------------------------------------------------------------------------------------


def test_counts_of_a_typical_document() -> None:
    counts: dict[tuple[str, str], int] = {}
    doc = {
        "_id": ID1,
        "_creationTime": 1.7e12,
        "name": "x",
        "count": 42,
        "active": True,
        "tags": ["a", "b"],
        "note": None,
        "meta": {"z": b"\x00", "w": [1.5, [None]]},
    }
    add_shape_counts(doc, 1, counts)
    assert counts == {
        ("", "object"): 1,
        ("\x00_id", "string"): 1,
        ("\x00_creationTime", "float64"): 1,
        ("\x00name", "string"): 1,
        ("\x00count", "int64"): 1,
        ("\x00active", "boolean"): 1,
        ("\x00tags", "array"): 1,
        ("\x00tags\x01", "string"): 2,
        ("\x00note", "null"): 1,
        ("\x00meta", "object"): 1,
        ("\x00meta\x00z", "bytes"): 1,
        ("\x00meta\x00w", "array"): 1,
        ("\x00meta\x00w\x01", "float64"): 1,
        ("\x00meta\x00w\x01", "array"): 1,
        ("\x00meta\x00w\x01\x01", "null"): 1,
    }
    add_shape_counts(doc, -1, counts)
    assert counts == {}  # zero entries are pruned


def test_value_tags() -> None:
    assert value_tag(True) == "boolean"
    assert value_tag(1) == "int64"
    assert value_tag(0.0) == "float64"
    assert value_tag(-1.5) == "float64"
    assert value_tag(5e-324) == "float64"  # subnormal is finite and not -0.0
    for special in (-0.0, math.nan, math.inf, -math.inf):
        assert value_tag(special) == "float64_special"
    with pytest.raises(TypeError):
        value_tag(object())


def test_subclasses_of_value_types_are_counted_as_their_base_type() -> None:
    class Name(str):
        pass

    counts: dict[tuple[str, str], int] = {}
    add_shape_counts({"a": Name("x"), "b": enum.IntEnum("E", "A").A}, 1, counts)
    assert counts[("\x00a", "string")] == 1
    assert counts[("\x00b", "int64")] == 1
    with pytest.raises(TypeError):
        add_shape_counts({"c": {1, 2}}, 1, {})


# --- shapes as documents come and go --------------------------------------------------------------------


def test_empty_table() -> None:
    shape = TableShape.from_counts({})
    assert shape.document_count == 0
    assert shape.top_level_fields() == ["_creationTime", "_id"]
    expected = _schema({"_creationTime": NUMBER, "_id": ID_SCHEMA}, ["_creationTime", "_id"])
    for fmt in ("json", "convex_encoded_json", "export_json"):
        assert shape.json_schema("books", fmt, False) == expected
    assert shape.validator_json() == {"type": "object", "value": {}}


def test_field_only_in_deleted_document_disappears() -> None:
    t = Table()
    t.insert({"title": "a"})
    gone = t.insert({"title": "b", "extra": 1})
    assert t.shape().top_level_fields() == ["_creationTime", "_id", "extra", "title"]
    t.delete(gone)
    assert t.shape().top_level_fields() == ["_creationTime", "_id", "title"]
    assert "extra" not in t.shape().json_schema("books", "json", False)["properties"]


def test_field_becomes_optional_and_required_again() -> None:
    t = Table()
    t.insert({"title": "a", "year": 1})
    assert t.shape().json_schema("books", "json", False)["required"] == [
        "_creationTime",
        "_id",
        "title",
        "year",
    ]
    without = t.insert({"title": "b"})
    assert t.shape().json_schema("books", "json", False)["required"] == ["_creationTime", "_id", "title"]
    t.delete(without)
    assert t.shape().json_schema("books", "json", False)["required"] == [
        "_creationTime",
        "_id",
        "title",
        "year",
    ]


def test_patch_changes_type_and_removes_old_type() -> None:
    t = Table()
    a = t.insert({"year": 1})
    t.insert({"year": 2})
    t.patch(a, {"year": "1999"})
    schema = t.shape().json_schema("books", "export_json", False)
    assert schema["properties"]["year"] == {
        "anyOf": [{"$description": "int64", "type": "number"}, {"type": "string"}]
    }
    t.patch(a, {"year": 3})
    schema = t.shape().json_schema("books", "export_json", False)
    assert schema["properties"]["year"] == {"$description": "int64", "type": "number"}
    # A replace that drops a field makes it optional.
    t.replace(a, {})
    assert t.shape().json_schema("books", "json", False)["required"] == ["_creationTime", "_id"]


def test_special_floats_seen_and_gone() -> None:
    t = Table()
    t.insert({"x": 1.5})
    nan_doc = t.insert({"x": math.nan})
    assert t.shape().json_schema("books", "json", False)["properties"]["x"]["$description"] == "float64"
    t.delete(nan_doc)
    assert t.shape().json_schema("books", "json", False)["properties"]["x"] == NUMBER
    t.insert({"x": -0.0})
    assert "anyOf" in t.shape().json_schema("books", "json", False)["properties"]["x"]
    assert t.shape().validator_json()["value"]["x"] == {"fieldType": {"type": "number"}, "optional": False}


def test_nested_objects_in_arrays() -> None:
    t = Table()
    t.insert({"items": [{"a": 1, "b": "x"}, {"a": 2}], "empty": [], "mixed": [None, 1.0, [True]]})
    t.insert({"items": [], "empty": [], "mixed": []})
    schema = t.shape().json_schema("books", "convex_encoded_json", False)
    props = schema["properties"]
    assert props["items"] == {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "a": {
                    "$description": "int64",
                    "type": "object",
                    "properties": {
                        "$integer": {"$description": "int64 -> little-endian -> base64", "type": "string"}
                    },
                },
                "b": {"type": "string"},
            },
            "additionalProperties": False,
            "required": ["a"],
        },
    }
    assert props["empty"] == {"type": "array", "items": False}
    assert props["mixed"] == {
        "type": "array",
        "items": {"anyOf": [{"type": "null"}, NUMBER, {"type": "array", "items": {"type": "boolean"}}]},
    }


def test_nested_object_optional_fields_and_union_with_object() -> None:
    t = Table()
    t.insert({"meta": {"a": 1.0, "b": True}})
    t.insert({"meta": {"a": 2.0}})
    t.insert({"meta": None})
    props = t.shape().json_schema("books", "json", False)["properties"]
    # "a" is in every object at .meta, so it is required even though one .meta is null.
    assert props["meta"] == {
        "anyOf": [
            {"type": "null"},
            {
                "type": "object",
                "properties": {"a": NUMBER, "b": {"type": "boolean"}},
                "additionalProperties": False,
                "required": ["a"],
            },
        ]
    }


# --- exact JSON schemas per format (values-and-ids.md §3, streaming-export.md §6) ------------------------

FORMAT_DOCS = [
    {"_id": ID1, "_creationTime": 1.0, "n": 5, "f": math.nan, "b": b"\x00\x10\x83", "s": "x", "opt": True},
    {"_id": ID2, "_creationTime": 2.5, "n": -1, "f": 1.5, "b": b"", "s": None, "g": 0.0},
]


def _format_schema(int64: Any, float_special: Any, bytes_: Any) -> dict[str, Any]:
    return _schema(
        {
            "_creationTime": NUMBER,
            "_id": ID_SCHEMA,
            "b": bytes_,
            "f": float_special,
            "g": NUMBER,
            "n": int64,
            "opt": {"type": "boolean"},
            "s": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        },
        ["_creationTime", "_id", "b", "f", "n", "s"],
    )


EXPECTED_JSON = _format_schema(
    {"$description": "int64 represented as base10 string", "type": "string"},
    {
        "$description": "float64",
        "anyOf": [{"type": "number"}, {"type": "string", "$description": "-inf, inf, or NaN"}],
    },
    {"$description": "base64 bytes", "type": "string"},
)
EXPECTED_ENCODED = _format_schema(
    {
        "$description": "int64",
        "type": "object",
        "properties": {"$integer": {"$description": "int64 -> little-endian -> base64", "type": "string"}},
    },
    {
        "$description": "float64",
        "anyOf": [
            {"type": "number"},
            {
                "type": "object",
                "$description": "-0, -inf, inf, or NaN",
                "properties": {
                    "$float": {"$description": "float64 -> little-endian -> base64", "type": "string"}
                },
            },
        ],
    },
    {"type": "object", "$description": "base64 bytes", "properties": {"$bytes": {"type": "string"}}},
)
EXPECTED_EXPORT = _format_schema(
    {"$description": "int64", "type": "number"},
    {
        "$description": "float64",
        "anyOf": [
            {"type": "number"},
            {
                "type": "object",
                "$description": "-inf, inf, or NaN",
                "properties": {
                    "$float": {"$description": "float64 -> little-endian -> base64", "type": "string"}
                },
            },
        ],
    },
    {"type": "object", "$description": "base64 bytes", "properties": {"$bytes": {"type": "string"}}},
)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("json", EXPECTED_JSON),
        (Fmt.JSON, EXPECTED_JSON),
        ("convex_clean_json", EXPECTED_JSON),
        ("convex_encoded_json", EXPECTED_ENCODED),
        (Fmt.ENCODED, EXPECTED_ENCODED),
        ("convex_json", EXPECTED_ENCODED),
        ("export_json", EXPECTED_EXPORT),
        (Fmt.EXPORT, EXPECTED_EXPORT),
    ],
)
def test_exact_json_schema_per_format(fmt: Any, expected: dict[str, Any]) -> None:
    shape = TableShape.from_documents(FORMAT_DOCS)
    assert shape.json_schema("books", fmt, False) == expected


def test_delta_schema_adds_metadata_properties_only() -> None:
    shape = TableShape.from_documents(FORMAT_DOCS)
    plain = shape.json_schema("books", "json", False)
    delta = shape.json_schema("books", "json", True)
    assert delta["required"] == plain["required"]
    assert delta["properties"] == {
        **plain["properties"],
        "_table": {"type": "string"},
        "_component": {"type": "string"},
        "_ts": {"type": "integer"},
        "_deleted": {"type": "boolean"},
    }
    empty = TableShape.from_counts({}).json_schema("books", Fmt.JSON, True)
    assert sorted(empty["properties"]) == ["_component", "_creationTime", "_deleted", "_id", "_table", "_ts"]
    assert empty["required"] == ["_creationTime", "_id"]


def test_bad_format_is_rejected() -> None:
    with pytest.raises(BadRequestError) as e:
        TableShape.from_counts({}).json_schema("books", "xml", False)
    assert e.value.code == "BadFormat"
    assert e.value.message == "format param must be one of [`json`]. Got xml"


def test_zero_and_negative_counts_are_ignored() -> None:
    shape = TableShape.from_counts({("", "object"): 1, ("\x00a", "string"): 1, ("\x00b", "int64"): 0})
    assert shape.top_level_fields() == ["_creationTime", "_id", "a"]


# --- validator_json ----------------------------------------------------------------------------------


def test_validator_json() -> None:
    t = Table()
    t.insert({"id": 1, "title": "a", "fivetran": {"synced": 1.0, "deleted": False}, "tags": []})
    t.insert({"id": None, "fivetran": {"synced": 2.0}, "tags": [b"x"]})
    vj = t.shape().validator_json()
    assert vj == {
        "type": "object",
        "value": {
            "fivetran": {
                "fieldType": {
                    "type": "object",
                    "value": {
                        "deleted": {"fieldType": {"type": "boolean"}, "optional": True},
                        "synced": {"fieldType": {"type": "number"}, "optional": False},
                    },
                },
                "optional": False,
            },
            "id": {
                "fieldType": {"type": "union", "value": [{"type": "null"}, {"type": "bigint"}]},
                "optional": False,
            },
            "tags": {"fieldType": {"type": "array", "value": {"type": "bytes"}}, "optional": False},
            "title": {"fieldType": {"type": "string"}, "optional": True},
        },
    }
    # It is a valid ValidatorJson, and round-trips through the schema module.
    assert parse_validator(vj).to_json() == vj
    with_system = t.shape().validator_json("books")
    assert with_system["value"]["_id"] == {
        "fieldType": {"type": "id", "tableName": "books"},
        "optional": False,
    }
    assert with_system["value"]["_creationTime"] == {"fieldType": {"type": "number"}, "optional": False}


def test_validator_json_of_always_empty_array_is_empty_union() -> None:
    shape = TableShape.from_documents([{"_id": ID1, "_creationTime": 1.0, "a": []}])
    assert shape.validator_json()["value"]["a"]["fieldType"] == {
        "type": "array",
        "value": {"type": "union", "value": []},
    }


# --- property: incremental counts == counts recomputed from the surviving documents ---------------------

_names = st.sampled_from(["a", "b", "c"])
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=2),
    st.binary(max_size=2),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_names, inner, max_size=3)),
    max_leaves=8,
)
_user_docs = st.dictionaries(_names, _values, max_size=3)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), _user_docs),
        st.tuples(st.just("delete"), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("replace"), st.integers(min_value=0, max_value=50), _user_docs),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(_ops)
def test_incremental_counts_equal_recomputed(ops: list[tuple[Any, ...]]) -> None:
    t = Table()
    for op in ops:
        live = sorted(t.docs)
        if op[0] == "insert":
            t.insert(op[1])
        elif live and op[0] == "delete":
            t.delete(live[op[1] % len(live)])
        elif live and op[0] == "replace":
            t.replace(live[op[1] % len(live)], op[2])
    survivors = list(t.docs.values())
    assert dict(t.counts) == shape_counts(survivors)
    incremental, recomputed = t.shape(), TableShape.from_documents(survivors)
    for fmt in ("json", "convex_encoded_json", "export_json"):
        assert incremental.json_schema("t", fmt, True) == recomputed.json_schema("t", fmt, True)
    assert incremental.validator_json() == recomputed.validator_json()
    # Independent check of the top level: a field is required iff every live document has it.
    schema = incremental.json_schema("t", "json", False)
    if survivors:
        everywhere = set.intersection(*(set(d) for d in survivors))
        anywhere = set.union(*(set(d) for d in survivors))
    else:
        everywhere = anywhere = {"_id", "_creationTime"}
    assert schema["required"] == sorted(everywhere)
    assert sorted(schema["properties"]) == sorted(anywhere)
    assert incremental.top_level_fields() == sorted(anywhere)


def test_accepts_the_real_value_format_enum() -> None:
    values = pytest.importorskip("connectors.values")
    shape = TableShape.from_documents(FORMAT_DOCS)
    assert shape.json_schema("books", values.ValueFormat.ENCODED, False) == EXPECTED_ENCODED
    assert shape.json_schema("books", values.ValueFormat.EXPORT, False) == EXPECTED_EXPORT
    assert shape.json_schema("books", values.ValueFormat.JSON, False) == EXPECTED_JSON
