"""Convex's Rust Fivetran destination (crate 0.0.1) replayed against a live server.

Requests are those of ``crates/fivetran_destination/src/convex_api.rs`` (``clients.RustDestination``):
``GET get_schema?``, and POSTs of compact serde JSON to ``fivetran_create_table`` (with ``_creationTime`` at
the end of the sync index, as the real connector sends it; streaming-import.md §13.1),
``apply_fivetran_operations`` (500-row chunks of ``{"table","operation","row"}``, rows in Convex internal JSON
with sorted keys) and ``fivetran_truncate_table`` (``deleteBefore`` as chrono's RFC 3339). Success bodies
are ignored by the connector except ``get_schema``; the checks here also pin them empty, as specified.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from connectors.backend.engine import Deployment
from tests.conformance.clients import RustDestination, current_documents, enc_int, error_body, typed, write
from tests.integration.conftest import LiveServer

ROWS_BY_REQUEST = 500
MISSING_UPDATED_ROW = "Fivetran is trying to update a row that doesn\u2019t exist in the Convex destination."
BOOKS = "public_books"


def books_definition(*, creation_time_in: tuple[str, ...] = ("_fivetran_by_synced",)) -> dict[str, Any]:
    """streaming-import.md §11.2, with `_creationTime` appended where the Rust connector appends it."""

    def fields(name: str, paths: list[str]) -> list[str]:
        return [*paths, "_creationTime"] if name in creation_time_in else paths

    def nullable(kind: str) -> dict[str, Any]:
        return {"fieldType": {"type": "union", "value": [{"type": kind}, {"type": "null"}]}, "optional": True}

    return {
        "tableName": BOOKS,
        "indexes": [
            {
                "indexDescriptor": "_fivetran_by_primary_key",
                "fields": fields("_fivetran_by_primary_key", ["fivetran.deleted", "id"]),
            },
            {
                "indexDescriptor": "_fivetran_by_synced",
                "fields": fields("_fivetran_by_synced", ["fivetran.deleted", "fivetran.synced"]),
            },
        ],
        "stagedDbIndexes": [],
        "searchIndexes": [],
        "stagedSearchIndexes": [],
        "vectorIndexes": [],
        "stagedVectorIndexes": [],
        "documentType": {
            "type": "object",
            "value": {
                "id": nullable("bigint"),
                "title": nullable("string"),
                "magic_number": nullable("number"),
                "fivetran": {
                    "fieldType": {
                        "type": "object",
                        "value": {
                            "deleted": {"fieldType": {"type": "boolean"}, "optional": True},
                            "synced": {"fieldType": {"type": "number"}, "optional": True},
                            "columns": {"fieldType": {"type": "object", "value": {}}, "optional": False},
                        },
                    },
                    "optional": False,
                },
            },
        },
    }


def sorted_object(value: Any) -> Any:
    """ConvexObject serializes its fields in sorted order."""
    if isinstance(value, dict) and not (len(value) == 1 and next(iter(value)).startswith("$")):
        return {k: sorted_object(value[k]) for k in sorted(value)}
    return value


def op(operation: str, row: dict[str, Any], table: str = BOOKS) -> dict[str, Any]:
    return {"table": table, "operation": operation, "row": sorted_object(row)}


def book(book_id: int, *, synced: float, deleted: bool | None = False, **columns: Any) -> dict[str, Any]:
    fivetran: dict[str, Any] = {"synced": synced}
    if deleted is not None:
        fivetran["deleted"] = deleted
    return {"id": enc_int(book_id), **columns, "fivetran": fivetran}


def chunks(rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``try_chunks2(ROWS_BY_REQUEST)`` over replace → update → delete rows."""
    for start in range(0, len(rows), ROWS_BY_REQUEST):
        yield list(rows[start : start + ROWS_BY_REQUEST])


def write_batch(dest: RustDestination, rows: Sequence[dict[str, Any]]) -> None:
    for chunk in chunks(rows):
        resp = dest.apply_operations(chunk)
        assert resp.status_code == 200 and resp.content == b"", (resp.status_code, resp.text)


def ok_empty(resp: Any) -> None:
    assert resp.status_code == 200 and resp.content == b"", (resp.request.url, resp.status_code, resp.text)


def books_state(dep: Deployment) -> dict[int, Any]:
    """id → typed user fields (system fields dropped)."""
    out: dict[int, Any] = {}
    for doc in current_documents(dep, BOOKS).values():
        assert doc["id"] not in out, "one document per primary key"
        out[doc["id"]] = typed({k: v for k, v in doc.items() if k not in ("_id", "_creationTime")})
    return out


@pytest.fixture
def dest(live_server: LiveServer) -> RustDestination:
    return RustDestination(live_server.url, live_server.import_key)


# --- Test / DescribeTable / CreateTable ---------------------------------------------------------------------


def test_get_schema_with_the_empty_query(live_server: LiveServer, dest: RustDestination) -> None:
    resp = dest.get_schema()
    assert (dest.sent[-1].url or "").endswith("/api/streaming_import/get_schema?")
    assert resp.status_code == 200 and resp.json() is None  # schemaless: DescribeTable says not_found


@pytest.mark.parametrize(
    "creation_time_in",
    [("_fivetran_by_synced",), ("_fivetran_by_primary_key", "_fivetran_by_synced"), ()],
    ids=["rust-connector", "both-indexes", "none"],
)
def test_create_table_tolerates_creation_time_and_is_idempotent(
    live_server: LiveServer, dest: RustDestination, creation_time_in: tuple[str, ...]
) -> None:
    definition = books_definition(creation_time_in=creation_time_in)
    ok_empty(dest.create_table(definition))
    assert dest.sent[-1].body is not None and dest.sent[-1].body.startswith(
        b'{"tableDefinition":{"tableName"'
    )
    dep = live_server.deployment
    stored = {i.name: i for i in dep.indexes(BOOKS)}
    assert stored["_fivetran_by_primary_key"].fields == ("fivetran.deleted", "id", "_creationTime")
    assert stored["_fivetran_by_synced"].fields == ("fivetran.deleted", "fivetran.synced", "_creationTime")
    assert all(i.is_system for i in stored.values())
    assert stored["_fivetran_by_primary_key"].ready  # the call returns after the backfill
    ok_empty(dest.create_table(definition))  # AlterTable / a retried CreateTable
    again = {i.name: i for i in dep.indexes(BOOKS)}
    assert {n: i.index_id for n, i in again.items()} == {n: i.index_id for n, i in stored.items()}
    assert dest.get_schema().json() is None  # system indexes are not part of a user schema


def test_create_table_without_soft_deletes(live_server: LiveServer, dest: RustDestination) -> None:
    definition = {
        "tableName": "public_authors",
        "indexes": [
            {"indexDescriptor": "_fivetran_by_primary_key", "fields": ["fivetran.id"]},
            {"indexDescriptor": "_fivetran_by_synced", "fields": ["fivetran.synced", "_creationTime"]},
        ],
        "stagedDbIndexes": [],
        "searchIndexes": [],
        "stagedSearchIndexes": [],
        "vectorIndexes": [],
        "stagedVectorIndexes": [],
        "documentType": {"type": "object", "value": {}},
    }
    ok_empty(dest.create_table(definition))
    fields = {i.name: i.fields for i in live_server.deployment.indexes("public_authors")}
    assert fields["_fivetran_by_synced"] == ("fivetran.synced", "_creationTime")
    assert fields["_fivetran_by_primary_key"] == ("fivetran.id", "_creationTime")
    row = {"fivetran": {"id": "abc", "synced": 1.0}, "name": "x"}
    write_batch(
        dest, [op("Upsert", row, "public_authors"), op("Upsert", {**row, "name": "y"}, "public_authors")]
    )
    docs = list(current_documents(live_server.deployment, "public_authors").values())
    assert [d["name"] for d in docs] == ["y"]


# --- WriteBatch ---------------------------------------------------------------------------------------------


def test_books_scenario_end_to_end(live_server: LiveServer, dest: RustDestination) -> None:
    """fivetran-destination.md §12.2 (derived Convex outcome), each step a WriteBatch or Truncate."""
    dep = live_server.deployment
    ok_empty(dest.create_table(books_definition()))
    first_synced = 1704739927754.6853  # 2024-01-08T18:52:07.754685370Z
    # 1. replace books_batch_1_insert.csv.zst.aes
    write_batch(
        dest,
        [
            op(
                "Upsert",
                book(1, synced=first_synced, title="The Hitchhiker's Guide to the Galaxy", magic_number=42.0),
            ),
            op("Upsert", book(2, synced=first_synced, title="The Lord of the Rings", magic_number=1.0)),
        ],
    )
    # The exact row bytes of the example in streaming-import.md §10.2.
    single = op(
        "Upsert",
        {
            "id": {"$integer": "AQAAAAAAAAA="},
            "title": "Dune",
            "fivetran": {"synced": 1704773419156.0576, "deleted": False},
        },
    )
    ok_empty(dest.apply_operations([single]))
    assert dest.sent[-1].body == (
        b'[{"table":"public_books","operation":"Upsert","row":{"fivetran":{"deleted":false,'
        b'"synced":1704773419156.0576},"id":{"$integer":"AQAAAAAAAAA="},"title":"Dune"}}]'
    )
    assert books_state(dep)[1] == typed(
        {"id": 1, "title": "Dune", "fivetran": {"deleted": False, "synced": 1704773419156.0576}}
    )
    # 2. replace books_upsert.csv
    write_batch(
        dest,
        [
            op("Upsert", book(2, synced=first_synced, title="The Two Towers", magic_number=1.0)),
            op("Upsert", book(3, synced=first_synced, title="The Hobbit", magic_number=14.0)),
            op("Upsert", book(99, synced=first_synced, title="null", magic_number=None)),
        ],
    )
    # 3. update books_update.csv (unmodified cells are left out of the row)
    write_batch(
        dest,
        [
            op("Update", book(3, synced=1707436800000.0, magic_number=15.0)),
            op("Update", book(2, synced=1707436800000.0, title="The empire strikes back")),
            op("Update", book(99, synced=1704773419156.0576, title=None, magic_number=99.0)),
        ],
    )
    # 4. delete books_delete.csv
    write_batch(dest, [op("HardDelete", book(1, synced=0.0, deleted=True, title=None, magic_number=None))])
    assert sorted(books_state(dep)) == [2, 3, 99]
    # 5. soft truncate before 2024-02-09T00:00:00Z
    ok_empty(dest.truncate_table(BOOKS, "2024-02-09T00:00:00Z", "SoftDelete"))
    assert dest.sent[-1].body == (
        b'{"tableName":"public_books","deleteBefore":"2024-02-09T00:00:00Z","deleteType":"SoftDelete"}'
    )
    assert books_state(dep) == {
        2: typed(
            {
                "id": 2,
                "title": "The empire strikes back",
                "magic_number": 1.0,
                "fivetran": {"deleted": False, "synced": 1707436800000.0},
            }
        ),
        3: typed(
            {
                "id": 3,
                "title": "The Hobbit",
                "magic_number": 15.0,
                "fivetran": {"deleted": False, "synced": 1707436800000.0},
            }
        ),
        99: typed(
            {
                "id": 99,
                "title": None,
                "magic_number": 99.0,
                "fivetran": {"deleted": True, "synced": 1704773419156.0576},
            }
        ),
    }


def test_500_row_chunks_spanning_operations(live_server: LiveServer, dest: RustDestination) -> None:
    ok_empty(dest.create_table(books_definition()))
    rows = [op("Upsert", book(i, synced=1.0, title=f"b{i}", magic_number=float(i))) for i in range(1200)]
    rows += [op("Update", book(i, synced=2.0, title=f"updated {i}")) for i in range(100)]
    rows += [op("HardDelete", book(i, synced=3.0)) for i in range(100, 200)]
    write_batch(dest, rows)
    assert [len(c) for c in chunks(rows)] == [500, 500, 400]  # the last chunk mixes all three operations
    assert len(dest.sent) == 4
    state = books_state(live_server.deployment)
    assert len(state) == 1100 and not any(100 <= i < 200 for i in state)
    assert state[5] == typed(
        {"id": 5, "title": "updated 5", "magic_number": 5.0, "fivetran": {"deleted": False, "synced": 2.0}}
    )
    assert state[500] == typed(
        {"id": 500, "title": "b500", "magic_number": 500.0, "fivetran": {"deleted": False, "synced": 1.0}}
    )


def test_update_merges_fivetran_object_and_missing_row_is_404(
    live_server: LiveServer, dest: RustDestination
) -> None:
    """streaming-import.md §10.2 vectors 2–4 (PK index `[fivetran.deleted, fivetran.id]`)."""
    definition = books_definition()
    definition["tableName"] = "default_cars"
    definition["indexes"][0]["fields"] = ["fivetran.deleted", "fivetran.id"]
    ok_empty(dest.create_table(definition))
    existing = {
        "name": "Convex",
        "otherField": True,
        "objectField": {"field_a": 1.0, "field_b": 2.0},
        "fivetran": {"id": 42.0, "deleted": False, "synced": 1.0},
    }
    write_batch(dest, [op("Upsert", existing, "default_cars")])
    update = {
        "name": "How Convex Rocks",
        "objectField": {"field_a": 1.0, "field_z": 3.0},
        "fivetran": {"id": 42.0, "synced": 2.0},
    }
    write_batch(dest, [op("Update", update, "default_cars")])
    (doc,) = current_documents(live_server.deployment, "default_cars").values()
    assert typed({k: v for k, v in doc.items() if not k.startswith("_")}) == typed(
        {
            "name": "How Convex Rocks",
            "otherField": True,
            "objectField": {"field_a": 1.0, "field_z": 3.0},
            "fivetran": {"id": 42.0, "deleted": False, "synced": 2.0},
        }
    )
    soft_delete = {"fivetran": {"id": 42.0, "deleted": True}}
    write_batch(dest, [op("Update", soft_delete, "default_cars")])
    (doc,) = current_documents(live_server.deployment, "default_cars").values()
    assert doc["fivetran"] == {"id": 42.0, "deleted": True, "synced": 2.0}
    resp = dest.apply_operations([op("Update", {"fivetran": {"id": 7.0, "synced": 3.0}}, "default_cars")])
    error_body(resp, 404, "FivetranMissingUpdatedRow", MISSING_UPDATED_ROW)


def test_soft_deleted_rows_are_invisible_to_lookups(live_server: LiveServer, dest: RustDestination) -> None:
    """§10.2 vectors 7–8: with the original connector's index (`fivetran.deleted` first) an Upsert of a
    soft-deleted key inserts a second document and a HardDelete of it does nothing."""
    ok_empty(dest.create_table(books_definition()))
    write_batch(dest, [op("Upsert", book(1, synced=1.0, title="a"))])
    ok_empty(dest.truncate_table(BOOKS, None, "SoftDelete"))
    write_batch(dest, [op("HardDelete", book(1, synced=2.0))])
    assert len(current_documents(live_server.deployment, BOOKS)) == 1
    write_batch(dest, [op("Upsert", book(1, synced=3.0, title="b"))])
    docs = sorted(
        current_documents(live_server.deployment, BOOKS).values(), key=lambda d: d["fivetran"]["synced"]
    )
    assert [(d["title"], d["fivetran"]["deleted"]) for d in docs] == [("a", True), ("b", False)]


def test_lookup_errors(live_server: LiveServer, dest: RustDestination) -> None:
    write(live_server.deployment, "public_plain", [{"id": 1}])
    resp = dest.apply_operations([op("Upsert", book(1, synced=1.0), "public_plain")])
    error_body(resp, 400, "MissingFivetranPrimaryKeyIndex")
    ok_empty(dest.create_table(books_definition()))
    resp = dest.apply_operations(
        [op("Upsert", {"title": "no id", "fivetran": {"synced": 1.0, "deleted": False}})]
    )
    error_body(resp, 400, "MissingValueForFivetranPrimaryKeyIndex")
    ok_empty(dest.apply_operations([]))


# --- Truncate -------------------------------------------------------------------------------------------------


def test_truncate_variants(live_server: LiveServer, dest: RustDestination) -> None:
    dep = live_server.deployment
    # A missing table: success and nothing created, except hard with no date, which creates it empty.
    ok_empty(dest.truncate_table("public_missing", "2024-02-09T00:00:00Z", "SoftDelete"))
    ok_empty(dest.truncate_table("public_missing", None, "HardDelete"))
    assert dep.find_table("public_missing") is not None and current_documents(dep, "public_missing") == {}

    ok_empty(dest.create_table(books_definition()))
    write_batch(dest, [op("Upsert", book(i, synced=i * 1000.0, title=f"t{i}")) for i in range(10)])
    # Hard, before 3 s: synced 0, 1000 and 2000 ms are deleted.
    ok_empty(dest.truncate_table(BOOKS, "1970-01-01T00:00:03Z", "HardDelete"))
    assert sorted(books_state(dep)) == list(range(3, 10))
    # Soft with a nanosecond timestamp, as chrono prints it: only synced < 1704773419156 ms.
    write_batch(
        dest, [op("Upsert", book(20, synced=1704773419155.0)), op("Upsert", book(21, synced=1704773419157.0))]
    )
    ok_empty(dest.truncate_table(BOOKS, "2024-01-09T04:10:19.156057706Z", "SoftDelete"))
    deleted = {d["id"]: d["fivetran"]["deleted"] for d in current_documents(dep, BOOKS).values()}
    assert deleted == {**{i: True for i in range(3, 10)}, 20: True, 21: False}
    # Soft, no date: every remaining live row; other fields untouched.
    ok_empty(dest.truncate_table(BOOKS, None, "SoftDelete"))
    assert all(d["fivetran"]["deleted"] for d in current_documents(dep, BOOKS).values())
    assert {d["id"]: d.get("title") for d in current_documents(dep, BOOKS).values()}[5] == "t5"
    # Hard, no date: an atomic clear that keeps the indexes, so writes work right after.
    ok_empty(dest.truncate_table(BOOKS, None, "HardDelete"))
    assert current_documents(dep, BOOKS) == {}
    assert {i.name for i in dep.indexes(BOOKS)} >= {"_fivetran_by_primary_key", "_fivetran_by_synced"}
    write_batch(dest, [op("Upsert", book(1, synced=5.0)), op("Upsert", book(1, synced=6.0))])
    assert list(books_state(dep)) == [1]


def test_row_values_in_convex_internal_json(live_server: LiveServer, dest: RustDestination) -> None:
    """Every value kind the Rust destination produces (fivetran-destination.md §6.1), in wide rows whose
    500-row request is well above 2 MiB (streaming-import.md §13.8)."""
    ok_empty(dest.create_table(books_definition()))
    special = {
        "long_max": enc_int(2**63 - 1),
        "long_min": enc_int(-(2**63)),
        "binary": {"$bytes": "SGVsbG8gd29ybGQ="},
        "nan": {"$float": "AAAAAAAA+H8="},
        "neg_zero": {"$float": "AAAAAAAAAIA="},
        "inf": {"$float": "AAAAAAAA8H8="},
        "short": 42.0,
        "float": 1.2300000190734863,
        "decimal": "3.1415926535897932384626433832",
        "naive_datetime": "2007-12-03 10:15:30.001",
        "utc": 1196676930123.0,
        "json": {"a": [1.0, 2.0, 3.0], "b": None, "c": {"d": True}},
        "json_array": [1.0, 2.0, 3.0],
        "nothing": None,
        "padding": "p" * 6000,
    }
    rows = [op("Upsert", book(i, synced=1.0, **special)) for i in range(500)]
    write_batch(dest, rows)
    assert len(dest.sent[-1].body or b"") > 3 * 2**20
    state = books_state(live_server.deployment)
    assert len(state) == 500
    expected = {
        "id": 7,
        "long_max": 2**63 - 1,
        "long_min": -(2**63),
        "binary": b"Hello world",
        "nan": float("nan"),
        "neg_zero": -0.0,
        "inf": float("inf"),
        "short": 42.0,
        "float": 1.2300000190734863,
        "decimal": "3.1415926535897932384626433832",
        "naive_datetime": "2007-12-03 10:15:30.001",
        "utc": 1196676930123.0,
        "json": {"a": [1.0, 2.0, 3.0], "b": None, "c": {"d": True}},
        "json_array": [1.0, 2.0, 3.0],
        "nothing": None,
        "padding": "p" * 6000,
        "fivetran": {"deleted": False, "synced": 1.0},
    }
    assert state[7] == typed(expected)
