"""Schema discovery against answers a real Convex deployment gives: ``json_schemas`` without
``byComponent`` support (one flat object), or failing; and the reserved component name ``app``."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.client import TableColumns
from fivetran_source.service import APP_COMPONENT_MESSAGE, AppComponentError, discover_schema
from protos import common_pb2

STRING_SCHEMA = {"type": "string"}


def table_schema(table: str, **props: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "_id": {"$description": f"Id({table})", "type": "string"},
            "_creationTime": {"type": "number"},
            **props,
        },
        "additionalProperties": False,
        "required": sorted(["_id", "_creationTime", *props]),
    }


class FakeReader:
    def __init__(self, columns: dict[str, list[TableColumns]], schemas: Any) -> None:
        self.columns = columns
        self.schemas = schemas

    def table_columns(self) -> dict[str, list[TableColumns]]:
        return self.columns

    def json_schemas(self, *, delta_schema: bool) -> dict[str, Any]:
        if isinstance(self.schemas, Exception):
            raise self.schemas
        return dict(self.schemas)

    def snapshot_pages(self, *args: Any) -> Any:
        raise AssertionError("Schema never pages")

    def delta_pages(self, *args: Any) -> Any:
        raise AssertionError("Schema never pages")


COLUMNS = {
    "": [
        TableColumns("users", ("_id", "_creationTime", "name")),
        TableColumns("items", ("_id", "_creationTime", "n")),
    ],
    "shop": [TableColumns("items", ("_id", "_creationTime", "n"))],
}


def types(schemas: list[common_pb2.Schema]) -> dict[tuple[str, str, str], int]:
    return {(s.name, t.name, c.name): c.type for s in schemas for t in s.tables for c in t.columns}


def test_a_flat_json_schemas_answer_types_only_unambiguous_table_names() -> None:
    flat = {
        "users": table_schema("users", name=STRING_SCHEMA),
        "items": table_schema("items", n=STRING_SCHEMA),
    }
    got = types(discover_schema(FakeReader(COLUMNS, flat)))  # type: ignore[arg-type]
    assert got[("app", "users", "name")] == common_pb2.STRING
    assert got[("app", "items", "n")] == common_pb2.UNSPECIFIED  # two components have an `items` table
    assert got[("shop", "items", "n")] == common_pb2.UNSPECIFIED
    assert got[("app", "users", "_id")] == common_pb2.STRING
    assert got[("shop", "items", "_creationTime")] == common_pb2.UTC_DATETIME


def test_a_grouped_answer_types_every_component() -> None:
    grouped = {
        "": {
            "users": table_schema("users", name=STRING_SCHEMA),
            "items": table_schema("items", n=STRING_SCHEMA),
        },
        "shop": {"items": table_schema("items", n={"type": "boolean"})},
    }
    got = types(discover_schema(FakeReader(COLUMNS, grouped)))  # type: ignore[arg-type]
    assert got[("app", "items", "n")] == common_pb2.STRING
    assert got[("shop", "items", "n")] == common_pb2.BOOLEAN


def test_without_json_schemas_every_other_column_is_unspecified_like_the_reference() -> None:
    got = types(discover_schema(FakeReader(COLUMNS, RuntimeError("404"))))  # type: ignore[arg-type]
    assert got[("app", "users", "name")] == common_pb2.UNSPECIFIED
    assert got[("app", "users", "_id")] == common_pb2.STRING


def test_a_component_named_app_is_refused() -> None:
    with pytest.raises(AppComponentError) as err:
        discover_schema(FakeReader({"": [], "app": []}, {}))  # type: ignore[arg-type]
    assert str(err.value) == APP_COMPONENT_MESSAGE
