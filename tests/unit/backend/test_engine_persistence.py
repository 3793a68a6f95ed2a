"""Storage engine: exact shapes, schema validation, and everything surviving a reopen of the same SQLite
data directory or PostgreSQL schema."""

from __future__ import annotations

import orjson
import pytest

from connectors import ids, values
from connectors.backend import export
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.errors import SchemaValidationError
from connectors.schema import parse_database_schema
from connectors.selection import Selection
from connectors.values import ValueFormat
from tests.conftest import DeploymentFactory, FakeClock
from tests.unit.backend._util import all_changes, assert_shape_matches, live_docs, snapshot_pages


def _fields(dep: Deployment, table: str) -> dict[str, tuple[object, bool]]:
    """Top-level user fields of the shape: ``{name: (validator type, optional)}``."""
    out = {}
    for name, f in dep.table_shape(table).validator_json()["value"].items():
        vt = f["fieldType"]
        out[name] = (vt["type"] if vt["type"] != "union" else [m["type"] for m in vt["value"]], f["optional"])
    return out


# --- shapes -----------------------------------------------------------------------------------------


def test_shapes_follow_inserts_patches_replaces_and_deletes(deployment_factory) -> None:
    dep = deployment_factory.open()
    with dep.transaction() as tx:
        tx.create_table("t")
    shape = assert_shape_matches(dep, "t")
    assert shape.document_count == 0 and shape.top_level_fields() == ["_creationTime", "_id"]

    with dep.transaction() as tx:
        a = tx.insert("t", {"a": 1, "b": "x", "nested": {"p": [1, 2.5]}})
        b = tx.insert("t", {"a": 2})
    assert _fields(dep, "t") == {
        "a": ("bigint", False),
        "b": ("string", True),
        "nested": ("object", True),
    }
    assert_shape_matches(dep, "t")

    with dep.transaction() as tx:
        tx.patch(b, {"b": "y"})  # b becomes required
    assert _fields(dep, "t")["b"] == ("string", False)
    with dep.transaction() as tx:
        tx.patch(a, {"a": "now a string", "nested": values.MISSING})  # a: union; nested disappears
    assert _fields(dep, "t") == {"a": (["bigint", "string"], False), "b": ("string", False)}
    assert_shape_matches(dep, "t")

    with dep.transaction() as tx:
        tx.replace(b, {"c": [None, b"\x01"], "d": float("nan")})  # a and b become optional
    assert _fields(dep, "t") == {
        "a": ("string", True),
        "b": ("string", True),
        "c": ("array", True),
        "d": ("number", True),
    }
    assert_shape_matches(dep, "t")

    with dep.transaction() as tx:
        tx.delete(a)  # a and b disappear, c and d become required
        gone = tx.insert("t", {"e": 1})
        tx.delete(gone)  # inserted and deleted in one transaction: no trace in the shape
    assert _fields(dep, "t") == {"c": ("array", False), "d": ("number", False)}
    shape = assert_shape_matches(dep, "t")
    assert shape.document_count == 1 == dep.document_count("t")
    assert shape.top_level_fields() == ["_creationTime", "_id", "c", "d"]
    schema = shape.json_schema("t", "json")
    assert schema["required"] == ["_creationTime", "_id", "c", "d"]
    assert schema["properties"]["c"] == {
        "type": "array",
        "items": {"anyOf": [{"type": "null"}, {"$description": "base64 bytes", "type": "string"}]},
    }

    # Shapes survive reopening, and keep being maintained afterwards.
    before = dep.table_shape("t").json_schema("t", "json")
    dep.close()
    dep = deployment_factory.open(location=deployment_factory.location)
    assert dep.table_shape("t").json_schema("t", "json") == before
    with dep.transaction() as tx:
        tx.delete(b)
    shape = assert_shape_matches(dep, "t")
    assert shape.document_count == 0 and shape.top_level_fields() == ["_creationTime", "_id"]
    # Only zero counts are left (or none at all).
    rows = dep.persistence.read("SELECT n FROM shape_counts WHERE tablet = ?", (dep.table("t").tablet,))
    assert all(n == 0 for (n,) in rows)


def test_shapes_per_table_and_component_and_export_schemas(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        tx.create_table("t", component="comp")
        tx.insert("t", {"root": 1})
        tx.insert("t", {"in_comp": True}, component="comp")
    assert deployment.table_shape("t").top_level_fields() == ["_creationTime", "_id", "root"]
    assert deployment.table_shape("t", "comp").top_level_fields() == ["_creationTime", "_id", "in_comp"]
    assert_shape_matches(deployment, "t")
    assert_shape_matches(deployment, "t", "comp")
    grouped = export.json_schemas(deployment, delta_schema=False, fmt=ValueFormat.JSON, by_component=True)
    assert set(grouped) == {"", "comp"}
    assert "root" in grouped[""]["t"]["properties"] and "in_comp" in grouped["comp"]["t"]["properties"]
    columns = export.table_column_names(deployment)["byComponent"]
    assert columns == {
        "": [{"name": "t", "columns": ["_creationTime", "_id", "root"]}],
        "comp": [{"name": "t", "columns": ["_creationTime", "_id", "in_comp"]}],
    }


# --- schema -----------------------------------------------------------------------------------------

USERS_SCHEMA = {
    "tables": [
        {
            "tableName": "users",
            "indexes": [{"indexDescriptor": "by_name", "fields": ["name", "_creationTime"]}],
            "documentType": {
                "type": "object",
                "value": {
                    "name": {"fieldType": {"type": "string"}, "optional": False},
                    "age": {"fieldType": {"type": "bigint"}, "optional": True},
                    "info": {
                        "fieldType": {
                            "type": "object",
                            "value": {"x": {"fieldType": {"type": "number"}, "optional": False}},
                        },
                        "optional": True,
                    },
                },
            },
        }
    ],
    "schemaValidation": True,
}


def test_schema_validation(deployment_factory) -> None:
    dep = deployment_factory.open()
    assert dep.get_schema() is None
    schema = parse_database_schema(USERS_SCHEMA)
    with dep.transaction() as tx:
        tx.create_table("users")
        tx.create_table("free")
        tx.set_schema(schema)
        # Enforced from the moment it is set, in the same transaction.
        with pytest.raises(SchemaValidationError):
            tx.insert("users", {"name": 1})
        ok = tx.insert("users", {"name": "Ada", "age": 36, "info": {"x": 1.5}})
    assert dep.get_schema() == schema

    bad = [
        ({"name": 5}, "field .name must be string (v.string()), got int64"),
        ({"age": 1}, "required field .name is missing (expected v.string())"),
        ({"name": "a", "zzz": 1}, "field .zzz is not in the schema (extra field)"),
        ({"name": "a", "age": 1.5}, "field .age must be int64 (v.int64()), got float64"),
        ({"name": "a", "info": {"x": "s"}}, "field .info.x must be float64 (v.float64()), got string"),
    ]
    for doc, detail in bad:
        with pytest.raises(SchemaValidationError) as err, dep.transaction() as tx:
            tx.insert("users", doc)
        assert err.value.code == "SchemaValidationFailed" and err.value.status == 400
        assert err.value.message == f'Document in table "users" does not match the schema: {detail}.'
    with pytest.raises(SchemaValidationError, match=r"\.age"), dep.transaction() as tx:
        tx.patch(ok, {"age": "old"})
    with pytest.raises(SchemaValidationError, match=r"\.name is missing"), dep.transaction() as tx:
        tx.replace(ok, {"age": 1})
    with pytest.raises(SchemaValidationError, match=r"\.name is missing"), dep.transaction() as tx:
        tx.patch(ok, {"name": values.MISSING})
    assert live_docs(dep, "users")[ok]["age"] == 36 and dep.document_count("users") == 1
    with dep.transaction() as tx:
        tx.insert("free", {"anything": [1, "goes"]})  # tables without a definition are not checked
        tx.patch(ok, {"age": values.MISSING})  # optional fields may be removed

    # A rolled-back schema change leaves the old schema in force.
    with pytest.raises(RuntimeError), dep.transaction() as tx:
        tx.set_schema(parse_database_schema({**USERS_SCHEMA, "schemaValidation": False}))
        raise RuntimeError
    assert dep.get_schema() == schema
    with pytest.raises(SchemaValidationError), dep.transaction() as tx:
        tx.insert("users", {"name": 5})

    # The schema survives reopening, validation included.
    dep.close()
    dep = deployment_factory.open(location=deployment_factory.location)
    assert dep.get_schema() == schema
    assert dep.get_schema().to_json() == schema.to_json()
    with pytest.raises(SchemaValidationError), dep.transaction() as tx:
        tx.insert("users", {"name": 5})

    # schemaValidation: false stores the schema but accepts non-matching documents.
    lax = parse_database_schema({**USERS_SCHEMA, "schemaValidation": False})
    with dep.transaction() as tx:
        tx.set_schema(lax)
        tx.insert("users", {"name": 5, "extra": True})
    assert dep.get_schema() == lax and not dep.get_schema().schema_validation
    with dep.transaction() as tx:
        tx.set_schema(None)
    assert dep.get_schema() is None
    dep.close()
    dep = deployment_factory.open(location=deployment_factory.location)
    assert dep.get_schema() is None
    assert dep.document_count("users") == 2


# --- reopening --------------------------------------------------------------------------------------


def test_reopen_keeps_documents_tables_indexes_and_timestamps(deployment_factory) -> None:
    dep = deployment_factory.open()
    with dep.transaction() as tx:
        tx.create_table("users")
        tx.create_table("posts", component="c1")
        tx.create_table("imported", table_number=20001)
        tx.create_table("dropped")
        tx.add_index("users", "by_name", ["name"])
        users = [tx.insert("users", {"name": f"u{i}", "i": i}) for i in range(7)]
        tx.insert("posts", {"title": "p"}, component="c1")
        tx.insert("imported", {"x": b"\x00"})
        tx.insert("dropped", {})
    with dep.transaction() as tx:
        tx.delete_table("dropped")
        tx.patch(users[0], {"name": "renamed"})
        tx.delete(users[1])
    assert dep.set_meta_if_absent("user.secret", "s1") == "s1"
    # Start a list_snapshot traversal before the restart.
    first = export.list_snapshot(
        dep, snapshot=None, cursor=None, fmt=ValueFormat.ENCODED, selection=Selection.everything(), limit=2
    )
    snap = first.snapshot
    full_before, _ = snapshot_pages(dep, snapshot=snap, fmt=ValueFormat.ENCODED)
    tables_before = dep.tables(include_deleted=True)
    indexes_before = dep.indexes("users")
    docs_before = {t.name: live_docs(dep, t.name, component=t.component) for t in dep.tables()}
    last_ts = dep.last_commit_ts
    handed_out = dep.read_timestamp()
    dep.close()

    dep = deployment_factory.open(location=deployment_factory.location)
    assert dep.tables(include_deleted=True) == tables_before
    assert [t.table_number for t in dep.tables()] == [10001, 10001, 20001]  # c1 numbers on its own
    assert dep.components() == ["", "c1"]
    assert dep.indexes("users") == indexes_before and indexes_before[0].ready
    assert {t.name: live_docs(dep, t.name, component=t.component) for t in dep.tables()} == docs_before
    assert dep.find_table("dropped") is None
    assert dep.get_meta("user.secret") == "s1" and dep.set_meta_if_absent("user.secret", "s2") == "s1"
    assert dep.last_commit_ts == last_ts
    assert dep.read_timestamp() >= handed_out
    # The list_snapshot traversal continues with the cursor from before the restart.
    rest, _ = [], None
    cursor = first.cursor
    while cursor is not None:
        page = export.list_snapshot(
            dep,
            snapshot=snap,
            cursor=cursor,
            fmt=ValueFormat.ENCODED,
            selection=Selection.everything(),
            limit=3,
        )
        assert page.snapshot == snap
        rest.extend(orjson.loads(page.values_json))
        cursor = page.cursor
    assert orjson.loads(first.values_json) + rest == full_before
    # Commit timestamps keep increasing, and the index still works.
    with dep.transaction() as tx:
        assert tx.ts > handed_out
        new = tx.insert("users", {"name": "u3"})
        assert sorted(i for i, _ in tx.index_query("users", "by_name", ["u3"])) == sorted([users[3], new])
        again = tx.create_table("dropped")
    # A deleted table's number is not reused ("dropped" had 20002, after "imported").
    assert [t.table_number for t in tables_before] == [10001, 10001, 20001, 20002]
    assert again.table_number == 20003
    changes, _ = all_changes(dep, handed_out)
    assert [c.id for c in changes] == [new]
    assert ids.decode_id(new)[0] == 10001


def test_timestamps_handed_out_before_a_clean_shutdown_stay_below_later_commits(
    deployment_factory: DeploymentFactory,
) -> None:
    clock = FakeClock()
    dep = deployment_factory.open(DeploymentConfig(background=False, clock_ns=clock))
    handed_out = dep.read_timestamp()
    dep.close()
    clock.now -= 3_600 * 10**9  # the wall clock went back an hour before the restart
    dep = deployment_factory.open(DeploymentConfig(background=False, clock_ns=clock))
    with dep.transaction() as tx:
        tx.create_table("t")
    assert dep.last_commit_ts > handed_out
    assert dep.read_timestamp() >= handed_out
