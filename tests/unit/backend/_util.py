"""Helpers shared by the storage-engine tests."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from connectors.backend import export
from connectors.backend.engine import Change, Deployment
from connectors.selection import Selection
from connectors.shapes import TableShape
from connectors.values import ValueFormat, compare_values


def live_docs(
    dep: Deployment, table: str, snapshot: int | None = None, component: str = ""
) -> dict[str, Any]:
    """``{_id: document}`` of every document of ``table`` live at ``snapshot`` (default: now)."""
    info = dep.table(table, component)
    return {d.id: d.value() for d in dep.iter_snapshot(info, snapshot, page_size=7)}


def all_changes(dep: Deployment, after: int, limit: int | None = None) -> tuple[list[Change], int]:
    """Follow the change log from ``after`` until it is exhausted; returns (changes, final cursor)."""
    out: list[Change] = []
    cursor = after
    while True:
        page = dep.read_changes(cursor, limit)
        out.extend(page.changes)
        assert page.cursor >= cursor
        cursor = page.cursor
        if not page.has_more:
            return out, cursor


def snapshot_pages(
    dep: Deployment,
    snapshot: int | None = None,
    limit: int | None = None,
    fmt: ValueFormat = ValueFormat.JSON,
) -> tuple[list[dict[str, Any]], int]:
    """Every value of a list_snapshot traversal (all pages) and the traversal's snapshot."""
    out: list[dict[str, Any]] = []
    cursor = None
    first = True
    while True:
        page = export.list_snapshot(
            dep, snapshot=snapshot, cursor=cursor, fmt=fmt, selection=Selection.everything(), limit=limit
        )
        body = orjson.loads(page.to_json())
        if first:
            snapshot, first = body["snapshot"], False
        assert body["snapshot"] == snapshot
        out.extend(body["values"])
        if not body["hasMore"]:
            assert body["cursor"] is None
            return out, snapshot
        assert isinstance(body["cursor"], str)
        cursor = body["cursor"]


def count_rows(dep: Deployment, table: str, where: str = "", params: tuple = ()) -> int:
    sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
    return int(dep.persistence.read(sql, params)[0][0])


def assert_shape_matches(dep: Deployment, table: str, component: str = "") -> TableShape:
    """The maintained shape equals the shape computed from scratch over the live documents."""
    shape = dep.table_shape(table, component)
    expected = TableShape.from_documents(live_docs(dep, table, component=component).values())
    assert shape.document_count == expected.document_count
    assert dep.document_count(table, component) == expected.document_count
    assert shape.top_level_fields() == expected.top_level_fields()
    assert shape.json_schema(table, "json") == expected.json_schema(table, "json")
    assert shape.validator_json() == expected.validator_json()
    return shape


def convex_sorted(items: list[tuple[list[Any], bytes]]) -> list[tuple[list[Any], bytes]]:
    """Sort ``(index values, internal id)`` pairs in Convex index order (values, then id bytes)."""

    def cmp(a: tuple[list[Any], bytes], b: tuple[list[Any], bytes]) -> int:
        for x, y in zip(a[0], b[0], strict=True):
            c = compare_values(x, y)
            if c:
                return c
        return (a[1] > b[1]) - (a[1] < b[1])

    return sorted(items, key=functools.cmp_to_key(cmp))
