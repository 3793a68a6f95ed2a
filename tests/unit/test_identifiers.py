"""Names: values-and-ids.md §6 and the ValidIdentifier renaming of streaming-import.md §3."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import InvalidNameError, InvalidValueError, PlainError
from connectors.identifiers import (
    check_component_path,
    check_field_name,
    check_index_name,
    check_table_name,
    is_identifier,
    is_valid_field_name,
    parse_field_path,
    slugify,
    valid_identifier_field,
    valid_identifier_table,
)


@pytest.mark.parametrize(
    "s",
    ["a", "A", "_a", "a_", "MyTable", "ok_table", "a1", "_1", "x" * 64, "__a__", "_id", "_creationTime"],
)
def test_identifiers_valid(s: str) -> None:
    assert is_identifier(s)


@pytest.mark.parametrize(
    "s",
    ["", "_", "___", "1abc", "a-b", "a b", "a.b", "é", "x" * 65, "a$", "$a", "a\x00", 5, None],
)
def test_identifiers_invalid(s: object) -> None:
    assert not is_identifier(s)


def test_check_table_name() -> None:
    assert check_table_name("MyTable") == "MyTable"
    assert check_table_name("_tables", allow_system=True) == "_tables"
    with pytest.raises(InvalidNameError) as info:
        check_table_name("1abc")
    assert info.value.message == (
        'Invalid table name "1abc": identifiers must start with a letter or underscore, contain only '
        "letters, digits and underscores, be at most 64 bytes and not be only underscores."
    )
    assert info.value.status == 400
    with pytest.raises(InvalidNameError, match="reserved for system tables"):
        check_table_name("_secret")
    with pytest.raises(InvalidNameError):
        check_table_name("___", allow_system=True)
    with pytest.raises(InvalidNameError):
        check_table_name(None)


def test_long_names_are_cut_in_messages() -> None:
    with pytest.raises(InvalidNameError) as info:
        check_table_name("x" * 5000)
    assert len(info.value.message) < 400


@pytest.mark.parametrize("path", ["", "a", "parent/child", "a/b/c", "_sys/x"])
def test_component_paths_valid(path: str) -> None:
    assert check_component_path(path) == path


@pytest.mark.parametrize("path", ["/", "a/", "/a", "a//b", "a/1b", "a b", "a/" + "x" * 65, 3])
def test_component_paths_invalid(path: object) -> None:
    with pytest.raises(InvalidNameError):
        check_component_path(path)


def test_index_names() -> None:
    assert check_index_name("by_name") == "by_name"
    assert check_index_name("_by_airbyte_primary_key", allow_system=True) == "_by_airbyte_primary_key"
    with pytest.raises(InvalidNameError, match="reserved for system indexes"):
        check_index_name("_fivetran_by_synced")
    with pytest.raises(InvalidNameError):
        check_index_name("by name")


def test_parse_field_path() -> None:
    assert parse_field_path("fivetran.columns.key") == ("fivetran", "columns", "key")
    assert parse_field_path("a") == ("a",)
    assert parse_field_path("_creationTime") == ("_creationTime",)
    for bad in ["", ".", "a.", ".a", "a..b", "a.1b", "a.b c", "a.$b", None]:
        with pytest.raises(InvalidNameError):
            parse_field_path(bad)


@pytest.mark.parametrize("name", ["a", "my field", "_id", "a.b", "x" * 1024, "!~ ", "1"])
def test_field_names_valid(name: str) -> None:
    assert check_field_name(name) == name
    assert is_valid_field_name(name)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("$foo", "starts with '$'"),
        ("a\x00", "non-control ASCII"),
        ("a\x7f", "non-control ASCII"),
        ("tab\there", "non-control ASCII"),
        ("é", "non-control ASCII"),
        ("x" * 1025, "the limit is 1024"),
        ("", "empty"),
        (5, "strings"),
    ],
)
def test_field_names_invalid(name: object, fragment: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        check_field_name(name, ".outer")
    assert fragment in info.value.message
    assert info.value.message.endswith(" at .outer")
    assert not is_valid_field_name(name)


# streaming-import.md §3 table.
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ok_table", "ok_table"),
        ("MyTable", "MyTable"),
        ("My Table", "source_my_table"),
        ("*name!of.table", "source_name_of_table"),
        ("_system_table", "source_system_table"),
        ("Crème Brûlée", "source_creme_brulee"),
        ("北京", "source_bei_jing"),
        ("a" * 64, "a" * 64),
        ("a-b", "source_a_b"),
        ("__x__y__", "source_x_y"),
    ],
)
def test_valid_identifier_table(name: str, expected: str) -> None:
    assert valid_identifier_table(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("_id", "source_id"),
        ("$foo", "source_foo"),
        ("my field", "my field"),
        ("_ab_cdc_deleted_at", "source_ab_cdc_deleted_at"),
        ("$integer", "source_integer"),
        ("Größe", "source_grosse"),
        ("ok", "ok"),
        ("", "source_"),
        ("a\nb", "source_a_b"),
    ],
)
def test_valid_identifier_field(name: str, expected: str) -> None:
    assert valid_identifier_field(name) == expected


def test_valid_identifier_failures() -> None:
    # Too long for a table name once slugified and prefixed.
    with pytest.raises(PlainError) as info:
        valid_identifier_table("-" + "a" * 60)
    assert str(info.value) == "Failed to create a valid identifier."
    assert info.value.status == 500
    with pytest.raises(PlainError):
        valid_identifier_field("$" + "a" * 1020)
    with pytest.raises(PlainError):
        valid_identifier_table(3)


def test_slugify() -> None:
    assert slugify("  Hello,  World!! ") == "hello_world"
    assert slugify("a__b") == "a_b"
    assert slugify("***") == ""


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_valid_identifier_field_always_valid_or_plain_error(name: str) -> None:
    try:
        out = valid_identifier_field(name)
    except PlainError:
        return
    assert is_valid_field_name(out)
    assert not out.startswith("_")
    if is_valid_field_name(name) and not name.startswith("_"):
        assert out == name
    else:
        assert out.startswith("source_")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_valid_identifier_table_always_valid_or_plain_error(name: str) -> None:
    try:
        out = valid_identifier_table(name)
    except PlainError:
        return
    assert is_identifier(out)
    assert not out.startswith("_")
