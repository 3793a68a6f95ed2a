"""SyncSelection (wire selection + client-side filter) and the Fivetran selection mapping (§6.6)."""

from __future__ import annotations

import pytest

from connectors.errors import PlainError
from connectors.selection import Selection
from connectors.sync.selection import (
    WITHOUT_SCHEMA_MESSAGE,
    FivetranSchemaChoice,
    FivetranTableChoice,
    FivetranTablesWithSchema,
    FivetranWithoutSchema,
    SelectionMappingError,
    SyncSelection,
    from_fivetran_selection,
)
from connectors.sync.state import TableRef


def test_spec_example_maps_to_the_short_spelling_selection() -> None:
    fivetran = FivetranTablesWithSchema(
        schemas=[
            FivetranSchemaChoice(
                "app",
                tables=[FivetranTableChoice("users", columns={"password": False})],
                include_new_tables=False,
                include_new_columns=True,
            )
        ],
        include_new_schemas=False,
    )
    sync = from_fivetran_selection(fivetran)
    assert sync.wire.to_json(short=True) == {
        "": {"users": {"password": "excl", "_other": "incl"}, "_other": "excl"},
        "_other": "excl",
    }
    assert sync.accepts(TableRef("", "users"))
    assert not sync.accepts(TableRef("", "other"))
    assert not sync.accepts(TableRef("waitlist", "users"))
    columns = sync.column_filter(TableRef("", "users"))
    assert columns is not None
    assert columns.apply({"_id": "x", "name": "a", "password": "p"}) == {"_id": "x", "name": "a"}


def test_absent_selection_is_everything() -> None:
    assert from_fivetran_selection(None).wire == Selection.everything()
    assert from_fivetran_selection(None).wire.to_json() == {"_other": "included"}


def test_without_schema_is_the_reference_error() -> None:
    with pytest.raises(SelectionMappingError) as err:
        from_fivetran_selection(FivetranWithoutSchema())
    assert (
        str(err.value)
        == WITHOUT_SCHEMA_MESSAGE
        == ("Fivetran unexpectedly sent a selection setting without a schema.")
    )


def test_excluded_schemas_tables_and_new_flags() -> None:
    sync = from_fivetran_selection(
        FivetranTablesWithSchema(
            schemas=[
                FivetranSchemaChoice("app", included=False),
                FivetranSchemaChoice(
                    "waitlist",
                    tables=[
                        FivetranTableChoice("entries", included=False),
                        # Fivetran lists every known column; `_id` is the primary key, always selected.
                        FivetranTableChoice("people", columns={"_id": True, "email": True, "phone": False}),
                    ],
                    include_new_tables=True,
                    include_new_columns=False,
                ),
            ],
            include_new_schemas=True,
        )
    )
    assert sync.wire.to_json() == {
        "": "excluded",
        "waitlist": {
            "entries": "excluded",
            "people": {"_id": "included", "email": "included", "phone": "excluded", "_other": "excluded"},
            "_other": "included",
        },
        "_other": "included",
    }
    assert not sync.accepts(TableRef("", "users"))
    assert not sync.accepts(TableRef("waitlist", "entries"))
    assert sync.accepts(TableRef("waitlist", "new_table"))
    assert sync.column_filter(TableRef("waitlist", "new_table")) is None
    assert sync.accepts(TableRef("other/comp", "t"))
    people = sync.column_filter(TableRef("waitlist", "people"))
    assert people is not None
    assert people.apply({"_id": "i", "_creationTime": 1.0, "email": "e", "phone": "p"}) == {
        "_id": "i",
        "email": "e",
    }


def test_excluding_id_is_refused_before_any_request() -> None:
    with pytest.raises(PlainError, match="`_id` must be included"):
        from_fivetran_selection(
            FivetranTablesWithSchema(
                schemas=[
                    FivetranSchemaChoice("app", tables=[FivetranTableChoice("t", columns={"_id": False})])
                ]
            )
        )


def test_constructors() -> None:
    tables = SyncSelection.of_tables(
        [TableRef("", "users"), TableRef("a/b", "jobs")], {TableRef("", "users"): ["secret"]}
    )
    assert tables.wire.to_json() == {
        "": {"users": {"secret": "excluded", "_other": "included"}, "_other": "excluded"},
        "a/b": {"jobs": {"_other": "included"}, "_other": "excluded"},
        "_other": "excluded",
    }
    comps = SyncSelection.of_components(["waitlist"])
    assert comps.accepts(TableRef("waitlist", "x")) and not comps.accepts(TableRef("", "x"))
    assert SyncSelection.everything().column_filter(TableRef("", "x")) is None
    assert SyncSelection.everything() == SyncSelection(Selection.everything())


def test_include_new_columns_is_per_table_when_the_table_gives_it() -> None:
    """``TableSelection.include_new_columns`` (field 4) is the table's own flag in the proto."""
    sync = from_fivetran_selection(
        FivetranTablesWithSchema(
            schemas=[
                FivetranSchemaChoice(
                    "app",
                    tables=[
                        FivetranTableChoice("open", columns={"a": True}, include_new_columns=True),
                        FivetranTableChoice("closed", columns={"_id": True, "a": True}, include_new_columns=False),
                        FivetranTableChoice("default", columns={"_id": True, "a": True}),
                    ],
                    include_new_columns=False,
                )
            ],
        )
    )
    assert sync.wire.to_json()[""] == {
        "open": {"a": "included", "_other": "included"},
        "closed": {"_id": "included", "a": "included", "_other": "excluded"},
        "default": {"_id": "included", "a": "included", "_other": "excluded"},
        "_other": "included",
    }
