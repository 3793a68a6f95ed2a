"""Hostile input to the pure decoders (issue #7 items 6, 7 and 10): over-deep values are refused with a
400 ``InvalidValue`` naming the depth, without recursion the input controls; ``-0`` is Float64 -0.0;
messages say what was wrong without echoing unbounded input."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from connectors import values
from connectors.airbyte_records import convert_airbyte_record
from connectors.errors import BadRequestError, InvalidValueError
from connectors.selection import Selection, parse_selection_args, validate_table_name
from connectors.values import NestingTooDeepError, load_json, nesting_depth

DEPTHS = [400, 1000, 100_000]


def deep_list(depth: int) -> list[Any]:
    """``depth`` levels of arrays, built without recursion."""
    v: list[Any] = []
    for _ in range(depth - 1):
        v = [v]
    return v


def deep_object(depth: int) -> dict[str, Any]:
    v: dict[str, Any] = {}
    for _ in range(depth - 1):
        v = {"a": v}
    return v


DECODERS: dict[str, Callable[[Any], Any]] = {
    "from_encoded_json": values.from_encoded_json,
    "from_export_json": values.from_export_json,
    "decode_encoded_value": values.decode_encoded_value,
    "decode_encoded_object_in_place": values.decode_encoded_object_in_place,
    "to_clean_json": values.to_clean_json,
    "to_encoded_json": values.to_encoded_json,
    "to_export_json": values.to_export_json,
    "encode_document": values.encode_document,
    "convert_airbyte_record": convert_airbyte_record,
}


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("make", [deep_list, deep_object], ids=["arrays", "objects"])
def test_every_decoder_refuses_deep_input_naming_the_depth(
    name: str, depth: int, make: Callable[[int], Any]
) -> None:
    value = {"top": make(depth)}  # a document: level 1, so the deep part is one level more
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # proves the refusal does not recurse with the input
    try:
        with pytest.raises(NestingTooDeepError) as ei:
            DECODERS[name](value)
    finally:
        sys.setrecursionlimit(limit)
    err = ei.value
    assert (err.code, err.status) == ("InvalidValue", 400)
    assert f"nested {depth + 1} levels deep" in err.message
    assert "the limit is 16" in err.message
    assert len(err.message) < 600


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_sixteen_levels_are_fine(name: str) -> None:
    DECODERS[name]({"top": deep_list(15)})
    with pytest.raises(NestingTooDeepError):
        DECODERS[name]({"top": deep_list(16)})


def test_special_objects_do_not_count_as_a_level() -> None:
    assert nesting_depth({"top": [[{"$integer": "AQAAAAAAAAA="}]]}) == 3
    assert nesting_depth({"top": [[{"$integer": "AQAAAAAAAAA=", "b": 1}]]}) == 4
    assert values.from_encoded_json({"top": [[[{"$bytes": "AA=="}]]]}) == {"top": [[[b"\x00"]]]}


def test_nesting_depth_is_iterative() -> None:
    assert nesting_depth(1) == 0
    assert nesting_depth({"a": [1]}) == 2
    assert nesting_depth(deep_object(200_000)) == 200_000


def test_orjson_depth_refusal_is_the_same_error() -> None:
    text = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(NestingTooDeepError) as ei:
        load_json(text)
    assert ei.value.code == "InvalidValue"
    assert "nested more than 1024 levels deep" in ei.value.message
    # Other syntax errors stay orjson's.
    with pytest.raises(orjson.JSONDecodeError):
        load_json(b"[1,")


def test_load_json_reads_negative_zero_as_float() -> None:
    parsed = load_json(b'{"a":-0,"b":[-0,-0.0,-0e1,0],"s":"-0","t":"x\\"-0\\\\","u":"-0\\"","v":-0}')
    assert type(parsed["a"]) is float and math.copysign(1.0, parsed["a"]) < 0
    assert [math.copysign(1.0, x) for x in parsed["b"][:3]] == [-1.0, -1.0, -1.0]
    assert parsed["b"][3] == 0 and type(parsed["b"][3]) is int
    assert parsed["s"] == "-0" and parsed["t"] == 'x"-0\\' and parsed["u"] == '-0"'
    assert math.copysign(1.0, parsed["v"]) < 0
    assert load_json(b'"2024-01-05"') == "2024-01-05"
    assert load_json(b"[1,2]") == [1, 2]  # no -0: orjson as is (integers stay integers)


def test_load_json_rejects_what_orjson_rejects() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        load_json(b"[-05]")


def test_error_paths_cut_long_keys() -> None:
    key = "k" * 10_000
    with pytest.raises(InvalidValueError) as ei:
        values.from_encoded_json({key: {"$set": []}})
    assert len(ei.value.message) < 300
    assert "k" * 64 + "…" in ei.value.message
    weird = "a b" * 5000
    with pytest.raises(InvalidValueError) as ei:
        values.from_encoded_json({weird: {"$set": []}})
    assert len(ei.value.message) < 300 and '…"]' in ei.value.message


# --- selection messages (item 10) -----------------------------------------------------------------------


def test_selection_that_is_not_an_object_says_what_to_send() -> None:
    with pytest.raises(BadRequestError) as ei:
        parse_selection_args({"selection": ["users"]})
    assert ei.value.message == (
        'Invalid value for the selection: expected an object such as {"_other": "included"}, got an array'
    )
    assert "Invalid the" not in ei.value.message


def test_selection_messages_cut_long_names() -> None:
    name = "c" * 100_000
    with pytest.raises(BadRequestError) as ei:
        Selection.parse({"_other": "excluded", name: 5})
    assert len(ei.value.message) < 300
    assert "c" * 64 + '…"' in ei.value.message and "got a number" in ei.value.message
    with pytest.raises(BadRequestError) as ei:
        Selection.parse({"_other": "x" * 100_000})
    assert len(ei.value.message) < 300
    with pytest.raises(Exception) as ei2:
        validate_table_name("t" * 100_000)
    assert len(str(ei2.value)) < 400


def test_request_errors_cut_huge_keys() -> None:
    from connectors.server import wire

    name = "t" * 1_000_000
    with pytest.raises(BadRequestError) as ei:
        wire.ImportAirbyteRecordsRequest.parse({"tables": {name: 5}, "messages": []})
    assert ei.value.code == "BadJsonBody"
    assert len(ei.value.message) < 300 and "…" in ei.value.message
