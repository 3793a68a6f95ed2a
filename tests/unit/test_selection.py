"""Selection grammar (streaming-export.md §7): parsing, SelectionArg variants, queries, validation."""

from __future__ import annotations

import pytest

from connectors.errors import BadRequestError, PlainError
from connectors.selection import (
    EXCLUDED,
    ColumnFilter,
    ComponentSelection,
    Inclusion,
    Selection,
    TableSelection,
    is_valid_identifier,
    parse_selection_args,
)

# --- §7.5 selection examples -----------------------------------------------------------------------------

USERS_WITHOUT_PASSWORD = {
    "": {"users": {"password": "excluded", "_other": "included"}, "_other": "excluded"},
    "_other": "excluded",
}
ONLY_WAITLIST = {"": "excluded", "waitlist": {"_other": "included"}, "_other": "excluded"}
ALL_BUT_ROOT = {"": "excluded", "_other": "included"}
SHORT_SPELLINGS = {"": {"users": {"_other": "incl"}, "_other": "excl"}, "_other": "excl"}


def test_everything_example() -> None:
    sel = Selection.parse({"_other": "included"})
    assert sel == Selection.everything()
    assert sel.includes_table("", "users")
    assert sel.includes_table("a/b", "anything")
    assert sel.column_filter("", "users") is None


def test_users_without_password_example() -> None:
    sel = Selection.parse(USERS_WITHOUT_PASSWORD)
    assert sel == Selection(
        {"": ComponentSelection({"users": TableSelection({"password": False}, True)}, False)}, False
    )
    assert sel.includes_table("", "users")
    assert not sel.includes_table("", "posts")
    assert not sel.includes_table("waitlist", "users")
    flt = sel.column_filter("", "users")
    assert flt is not None
    doc = {"_id": "x", "_creationTime": 1.5, "name": "Ada", "password": "hunter2"}
    assert flt.apply(doc) == {"_id": "x", "_creationTime": 1.5, "name": "Ada"}
    sel.validate()


def test_only_waitlist_example() -> None:
    sel = Selection.parse(ONLY_WAITLIST)
    assert sel.components[""] is EXCLUDED
    assert not sel.includes_table("", "users")
    assert sel.includes_table("waitlist", "entries")
    assert not sel.includes_table("other", "entries")
    assert not sel.includes_component("")
    assert sel.includes_component("waitlist")


def test_everything_except_root_example() -> None:
    sel = Selection.parse(ALL_BUT_ROOT)
    assert not sel.includes_table("", "users")
    assert sel.includes_table("waitlist", "entries")
    assert sel.includes_table("parent/child", "t")


def test_short_spellings_example() -> None:
    sel = Selection.parse(SHORT_SPELLINGS)
    assert sel == Selection.single_table("", "users")
    assert sel.includes_table("", "users")
    assert not sel.includes_table("", "posts")
    assert sel.column_filter("", "users") is None


@pytest.mark.parametrize("included", ["included", "incl"])
@pytest.mark.parametrize("excluded", ["excluded", "excl"])
def test_all_spellings_everywhere(included: str, excluded: str) -> None:
    obj = {
        "": {
            "users": {"password": excluded, "name": included, "_other": included},
            "logs": excluded,
            "_other": excluded,
        },
        "gone": excluded,
        "_other": included,
    }
    sel = Selection.parse(obj)
    assert sel == Selection(
        {
            "": ComponentSelection(
                {"users": TableSelection({"password": False, "name": True}, True), "logs": EXCLUDED}, False
            ),
            "gone": EXCLUDED,
        },
        True,
    )


# --- to_json round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("obj", [USERS_WITHOUT_PASSWORD, ONLY_WAITLIST, ALL_BUT_ROOT, {"_other": "included"}])
def test_to_json_long_round_trip(obj: dict) -> None:
    sel = Selection.parse(obj)
    assert sel.to_json() == obj
    assert Selection.parse(sel.to_json()) == sel


def test_to_json_short_round_trip() -> None:
    sel = Selection.parse(SHORT_SPELLINGS)
    assert sel.to_json(short=True) == SHORT_SPELLINGS
    assert sel.to_json() == {
        "": {"users": {"_other": "included"}, "_other": "excluded"},
        "_other": "excluded",
    }
    long = Selection.parse(USERS_WITHOUT_PASSWORD)
    short = long.to_json(short=True)
    assert short == {
        "": {"users": {"password": "excl", "_other": "incl"}, "_other": "excl"},
        "_other": "excl",
    }
    assert Selection.parse(short) == long


def test_to_json_puts_other_last() -> None:
    assert list(Selection.parse(ONLY_WAITLIST).to_json()) == ["", "waitlist", "_other"]


def test_constructors_json() -> None:
    assert Selection.everything().to_json() == {"_other": "included"}
    assert Selection.everything().to_json(short=True) == {"_other": "incl"}
    assert Selection.single_table("cron", "jobs").to_json() == {
        "cron": {"jobs": {"_other": "included"}, "_other": "excluded"},
        "_other": "excluded",
    }
    assert Selection.single_component("waitlist").to_json() == {
        "waitlist": {"_other": "included"},
        "_other": "excluded",
    }


# --- §7.5 SelectionArg vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, Selection.everything()),
        ({"table_name": "users"}, Selection.single_table("", "users")),
        ({"tableName": "users"}, Selection.single_table("", "users")),
        ({"table_name": "jobs", "component": "cron"}, Selection.single_table("cron", "jobs")),
        ({"component": "waitlist"}, Selection.single_component("waitlist")),
        ({"selection": {"_other": "incl"}}, Selection.everything()),
    ],
)
def test_selection_arg_vectors(args: dict, expected: Selection) -> None:
    assert parse_selection_args(args) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # null and a missing key are equivalent (§2.3), so nulls fall through to the next variant.
        ({"tableName": None}, Selection.everything()),
        ({"selection": None, "table_name": None, "component": None}, Selection.everything()),
        ({"selection": None, "tableName": "users"}, Selection.single_table("", "users")),
        ({"tableName": "users", "component": None}, Selection.single_table("", "users")),
        ({"table_name": None, "component": "waitlist"}, Selection.single_component("waitlist")),
        # Unknown keys are ignored.
        ({"format": "json", "cursor": "c", "snapshot": 5}, Selection.everything()),
        # Exact wins over the other keys.
        ({"selection": ONLY_WAITLIST, "tableName": "users"}, Selection.parse(ONLY_WAITLIST)),
        ({"tableName": "jobs", "component": "cron"}, Selection.single_table("cron", "jobs")),
    ],
)
def test_selection_arg_fallthrough(args: dict, expected: Selection) -> None:
    assert parse_selection_args(args) == expected


def test_selection_arg_errors() -> None:
    with pytest.raises(BadRequestError) as info:
        parse_selection_args({"selection": {"": "excluded"}})
    assert info.value.code == "BadJsonBody"
    with pytest.raises(BadRequestError) as info:
        parse_selection_args({"tableName": 5}, error_code="BadQueryArgs")
    assert info.value.code == "BadQueryArgs"
    with pytest.raises(BadRequestError):
        parse_selection_args({"component": ["a"]})


# --- parse errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ({}, "`_other` in the selection"),
        ({"": {"users": {"_other": "incl"}}, "_other": "incl"}, 'component ""'),
        ({"waitlist": {"jobs": {"name": "incl"}, "_other": "incl"}, "_other": "incl"}, 'table "jobs"'),
    ],
)
def test_missing_other_names_location(obj: dict, fragment: str) -> None:
    with pytest.raises(BadRequestError) as info:
        Selection.parse(obj)
    assert info.value.code == "BadJsonBody"
    assert info.value.status == 400
    assert "Missing `_other`" in info.value.message
    assert fragment in info.value.message


@pytest.mark.parametrize(
    "obj",
    [
        None,
        "included",
        [],
        {"_other": "yes"},
        {"_other": True},
        {"_other": None},
        {"_other": "INCLUDED"},
        {"": "included", "_other": "excluded"},  # only the "excluded" literal may replace an object
        {"": 5, "_other": "excluded"},
        {"": {"users": "incl", "_other": "excl"}, "_other": "excl"},
        {"": {"users": {"name": True, "_other": "incl"}, "_other": "excl"}, "_other": "excl"},
        {"": {"users": {"name": {"_other": "incl"}, "_other": "incl"}, "_other": "excl"}, "_other": "excl"},
    ],
)
def test_malformed_selections(obj: object) -> None:
    with pytest.raises(BadRequestError) as info:
        Selection.parse(obj)
    assert info.value.code == "BadJsonBody"


def test_error_code_override() -> None:
    with pytest.raises(BadRequestError) as info:
        Selection.parse({}, error_code="BadQueryArgs")
    assert info.value.code == "BadQueryArgs"


# --- semantics ------------------------------------------------------------------------------------------


def test_unlisted_entries_follow_parent_defaults() -> None:
    sel = Selection.parse(
        {
            "": {
                "users": {"_other": "excluded", "_id": "included", "name": "included"},
                "_other": "included",
            },
            "_other": "excluded",
        }
    )
    assert sel.includes_table("", "posts")  # follows the component's _other
    assert not sel.includes_table("cron", "jobs")  # follows the top-level _other
    flt = sel.column_filter("", "users")
    assert flt == ColumnFilter({"_id": True, "name": True}, False)
    assert flt.apply({"_id": "i", "_creationTime": 1.0, "name": "n", "age": 3}) == {"_id": "i", "name": "n"}
    assert sel.column_filter("", "posts") is None
    sel.validate()


def test_column_filter_keeps_id_and_does_not_mutate() -> None:
    flt = ColumnFilter({"password": False, "_creationTime": False}, True)
    doc = {"_id": "i", "_creationTime": 1.0, "password": "p", "name": "n"}
    assert flt.apply(doc) == {"_id": "i", "name": "n"}
    assert doc == {"_id": "i", "_creationTime": 1.0, "password": "p", "name": "n"}
    # A deletion carries only _id; it survives any filter.
    assert ColumnFilter({}, False).apply({"_id": "i"}) == {"_id": "i"}


def test_all_included_columns_need_no_filter() -> None:
    sel = Selection.parse({"": {"t": {"a": "incl", "_other": "incl"}, "_other": "excl"}, "_other": "excl"})
    assert sel.column_filter("", "t") is None


def test_column_filter_of_unselected_table_raises() -> None:
    with pytest.raises(ValueError):
        Selection.parse(ONLY_WAITLIST).column_filter("", "users")


def test_frozen_and_hashable() -> None:
    source = {"a": True}
    table = TableSelection(source, False)
    source["b"] = False  # the dataclass copied its input
    assert dict(table.columns) == {"a": True}
    with pytest.raises(TypeError):
        table.columns["c"] = True  # type: ignore[index]
    assert hash(Selection.parse(USERS_WITHOUT_PASSWORD)) == hash(Selection.parse(USERS_WITHOUT_PASSWORD))
    assert len({Selection.everything(), Selection.parse({"_other": "incl"})}) == 1


def test_inclusion_helpers() -> None:
    assert Inclusion.parse("incl", "x") is Inclusion.INCLUDED
    assert Inclusion.parse("excluded", "x") is Inclusion.EXCLUDED
    assert Inclusion.from_bool(False).to_json(short=True) == "excl"
    assert Inclusion.INCLUDED.included and not Inclusion.EXCLUDED.included


# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {
            "": {"users": {"_id": "excluded", "_other": "included"}, "_other": "excluded"},
            "_other": "excluded",
        },
        {"": {"users": {"_other": "excl"}, "_other": "excl"}, "_other": "excl"},
        {"": {"users": {"name": "incl", "_other": "excl"}, "_other": "excl"}, "_other": "excl"},
    ],
)
def test_id_must_be_included(obj: dict) -> None:
    sel = Selection.parse(obj)  # shape is fine; the rule is checked by validate()
    with pytest.raises(PlainError) as info:
        sel.validate()
    assert str(info.value) == "`_id` must be included in the column selection"
    assert info.value.status == 500


def test_excluded_tables_and_components_skip_column_rule() -> None:
    Selection.parse({"": {"users": "excl", "_other": "incl"}, "c": "excluded", "_other": "incl"}).validate()


@pytest.mark.parametrize(
    "path", ["", "waitlist", "parent/child", "_private", "a1/b_2/c", "A" * 64, "x/" + "y" * 64]
)
def test_valid_component_paths(path: str) -> None:
    Selection.single_component(path).validate()


@pytest.mark.parametrize(
    "path", ["/", "a/", "/a", "a//b", "1abc", "a-b", "___", "a/__", "é", "a b", "A" * 65, "x/" + "y" * 65]
)
def test_invalid_component_paths(path: str) -> None:
    with pytest.raises(PlainError) as info:
        Selection.single_component(path).validate()
    assert "component path" in str(info.value)


@pytest.mark.parametrize("table", ["users", "MyTable", "t1", "_system", "a" * 64])
def test_valid_table_names(table: str) -> None:
    Selection.single_table("", table).validate()


@pytest.mark.parametrize("table", ["", "1users", "my-table", "my table", "_", "__", "ü", "a" * 65])
def test_invalid_table_names(table: str) -> None:
    with pytest.raises(PlainError) as info:
        Selection.single_table("", table).validate()
    assert "table name" in str(info.value)


def test_table_names_checked_even_when_excluded() -> None:
    with pytest.raises(PlainError):
        Selection.parse({"": {"bad-name": "excl", "_other": "incl"}, "_other": "incl"}).validate()


def test_identifier_rule() -> None:
    assert is_valid_identifier("a")
    assert is_valid_identifier("_a")
    assert not is_valid_identifier("")
    assert not is_valid_identifier("a.b")
