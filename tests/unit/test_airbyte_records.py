"""Airbyte record conversion: streaming-import.md §5 (and the renaming vectors of §3)."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.airbyte_records import DUPLICATE_FIELD_LIMIT, convert_airbyte_record
from connectors.errors import PlainError
from connectors.identifiers import is_valid_field_name
from connectors.values import encode_document


def convert(data: object) -> dict[str, object]:
    obj, deleted = convert_airbyte_record(data)
    assert deleted is False
    return obj


def test_limit_constant() -> None:
    assert DUPLICATE_FIELD_LIMIT == 3


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"field": "value"}, {"field": "value"}),
        (
            {"_bad_field_name": "hello", "good_field_name": "goodbye"},
            {"source_bad_field_name": "hello", "good_field_name": "goodbye"},
        ),
        (
            {"good_field_name": {"_bad_field_name": "hello"}},
            {"good_field_name": {"source_bad_field_name": "hello"}},
        ),
        (
            {"good_field_name": [{"_bad_field_name": "hello"}]},
            {"good_field_name": [{"source_bad_field_name": "hello"}]},
        ),
        ({"a": [[{"$x": [{"_y": 1}]}]]}, {"a": [[{"source_x": [{"source_y": 1.0}]}]]}),
        ({"_id": "x", "$foo": 1, "my field": 2}, {"source_id": "x", "source_foo": 1.0, "my field": 2.0}),
        ({"nested": {"$integer": "AQAAAAAAAAA="}}, {"nested": {"source_integer": "AQAAAAAAAAA="}}),
        ({"Größe": 1}, {"source_grosse": 1.0}),
        ({"source_id": 1, "_id": 2}, {"source_id": 1.0, "source_source_id": 2.0}),
        (
            {"_id": 0, "source_id": 1, "source_source_id": 2},
            {"source_source_source_id": 0.0, "source_id": 1.0, "source_source_id": 2.0},
        ),
    ],
)
def test_conversion_vectors(data: dict[str, object], expected: dict[str, object]) -> None:
    assert convert(data) == expected


def test_too_many_duplicates() -> None:
    data = {"_id": 0, "source_id": 1, "source_source_id": 2, "source_source_source_id": 3}
    with pytest.raises(PlainError) as info:
        convert_airbyte_record(data)
    assert str(info.value) == (
        "Too many duplicate field names found for modified field source_source_source_source_id"
    )
    assert info.value.status == 500


def test_duplicates_in_nested_objects_too() -> None:
    data = {"a": [{"_id": 0, "source_id": 1, "source_source_id": 2, "source_source_source_id": 3}]}
    with pytest.raises(PlainError, match="Too many duplicate field names"):
        convert_airbyte_record(data)


def test_two_renamed_keys_colliding_are_both_kept() -> None:
    # §13.5 recommendation: the re-prefix rule also applies between renamed keys (sorted order: "$x" < "_x").
    assert convert({"_x": 1, "$x": 2}) == {"source_x": 2.0, "source_source_x": 1.0}
    assert convert({"$x": 2, "_x": 1}) == {"source_x": 2.0, "source_source_x": 1.0}
    # ... within the same limit of 3.
    assert convert({"_x": 1, "$x": 2, "$$x": 3}) == {
        "source_x": 3.0,  # "$$x"
        "source_source_x": 2.0,  # "$x"
        "source_source_source_x": 1.0,  # "_x"
    }
    with pytest.raises(PlainError, match="source_source_source_source_x"):
        convert({"_x": 1, "$x": 2, "$$x": 3, "__x": 4})


def test_numbers_become_floats() -> None:
    obj = convert(json.loads('{"i": 42, "f": 1.5, "big": 12345678901234567890123, "neg": -7, "b": true}'))
    assert obj == {"i": 42.0, "f": 1.5, "big": 1.2345678901234568e22, "neg": -7.0, "b": True}
    assert type(obj["i"]) is float
    assert type(obj["big"]) is float
    assert type(obj["b"]) is bool
    obj = convert(orjson.loads(b'{"a": [1, 2.0, null, "s", {"n": 3}]}'))
    assert obj == {"a": [1.0, 2.0, None, "s", {"n": 3.0}]}
    assert all(type(x) is float for x in obj["a"][:2])  # type: ignore[index]


def test_nan_and_huge_numbers() -> None:
    obj = convert(json.loads('{"x": NaN}'))
    assert math.isnan(obj["x"])  # type: ignore[arg-type]
    with pytest.raises(PlainError):
        convert_airbyte_record({"x": 10**400})


@pytest.mark.parametrize("data", [[], "x", 1, None, [{"a": 1}]])
def test_data_must_be_an_object(data: object) -> None:
    with pytest.raises(PlainError):
        convert_airbyte_record(data)


def test_unsupported_python_values() -> None:
    with pytest.raises(PlainError):
        convert_airbyte_record({"x": (1, 2)})


def test_cdc_vector() -> None:
    obj, deleted = convert_airbyte_record(
        {"field": "value", "_ab_cdc_lsn": "lsn", "_ab_cdc_deleted_at": "timestamp"}
    )
    assert deleted is True
    assert obj == {"field": "value"}


def test_cdc_null_deleted_at_is_not_a_delete() -> None:
    obj, deleted = convert_airbyte_record(
        {"field": "value", "_ab_cdc_updated_at": "t", "_ab_cdc_deleted_at": None}
    )
    assert deleted is False
    assert obj == {"field": "value"}


def test_cdc_fields_only_removed_at_top_level() -> None:
    obj, deleted = convert_airbyte_record({"inner": {"_ab_cdc_deleted_at": "t", "_ab_cdc_lsn": 1}})
    assert deleted is False
    assert obj == {"inner": {"source_ab_cdc_deleted_at": "t", "source_ab_cdc_lsn": 1.0}}


def test_cdc_field_already_prefixed_counts() -> None:
    obj, deleted = convert_airbyte_record({"source_ab_cdc_deleted_at": 0, "x": 1})
    assert deleted is True
    assert obj == {"x": 1.0}


json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _check(v: object) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            assert is_valid_field_name(k)
            assert not k.startswith("_")
            _check(x)
    elif isinstance(v, list):
        for x in v:
            _check(x)
    else:
        assert type(v) is not int


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_converted_records_are_storable(data: dict[str, object]) -> None:
    try:
        obj, _ = convert_airbyte_record(data)
    except PlainError:
        return  # duplicate limit or identifier failure: a clean error
    _check(obj)
    encode_document(obj)
