"""Restoring a backup into another deployment (issue #7 items 11 and 12), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from connectors import ids
from connectors.backend import streaming_import as si
from connectors.backend.engine import Deployment, TableInfo
from connectors.backup import (
    METADATA_ENTRY,
    BackupImportError,
    TableMetadataHook,
    export_backup,
    import_backup,
    register_table_metadata_hook,
    unregister_table_metadata_hook,
)
from tests.conftest import DeploymentFactory


def _docs(dep: Deployment, table: str) -> dict[str, dict[str, Any]]:
    return {d.id: d.value() for d in dep.iter_snapshot(dep.table(table))}


def _shop(dep: Deployment, *, with_reference: bool) -> tuple[str, str | None]:
    """products (10001) and, if asked, orders (10002) whose documents refer to a product by id."""
    with dep.transaction() as tx:
        tx.create_table("products")
        product = tx.insert("products", {"name": "lamp", "price": 12.5})
        order = None
        if with_reference:
            tx.create_table("orders")
            order = tx.insert("orders", {"product": product, "qty": 2.0})
    return product, order


def _users(dep: Deployment) -> str:
    with dep.transaction() as tx:
        tx.create_table("users")
        return tx.insert("users", {"name": "Ada"})


def test_unreferenced_table_is_placed_under_a_free_number(
    deployment_factory: DeploymentFactory, tmp_path: Path
) -> None:
    src, dst = deployment_factory.open(), deployment_factory.open(location=deployment_factory.new_location())
    product, _ = _shop(src, with_reference=False)
    user = _users(dst)
    export_backup(src, tmp_path / "b.zip")
    assert dst.table("users").table_number == src.table("products").table_number == 10001

    summary = import_backup(dst, tmp_path / "b.zip")  # mode create
    assert dst.table("users").table_number == 10001
    assert _docs(dst, "users").keys() == {user}
    number = dst.table("products").table_number
    assert number != 10001
    ((new_id, doc),) = _docs(dst, "products").items()
    assert ids.decode_id(new_id) == (number, ids.decode_id(product)[1])
    assert doc["name"] == "lamp"
    assert doc["_creationTime"] == _docs(src, "products")[product]["_creationTime"]
    assert any("products: placed under table number" in note for note in summary.notes)


def test_referenced_collision_is_refused_and_replace_all_restores_exactly(
    deployment_factory: DeploymentFactory, tmp_path: Path
) -> None:
    src, dst = deployment_factory.open(), deployment_factory.open(location=deployment_factory.new_location())
    product, order = _shop(src, with_reference=True)
    _users(dst)
    with dst.transaction() as tx:
        tx.create_table("reviews", component="feedback")
    export_backup(src, tmp_path / "b.zip")

    for mode in ("create", "replace", "append"):
        with pytest.raises(BackupImportError) as info:
            import_backup(dst, tmp_path / "b.zip", mode=mode)  # type: ignore[arg-type]
        message = info.value.message
        assert 'table "products" has table number 10001, which is used by table "users"' in message
        assert "1 value(s) in the backup refer to its documents by id" in message
        assert "--replace-all" in message
        assert info.value.code == "TableNumberInUse"
    # A refused import wrote nothing.
    assert [t.name for t in dst.tables()] == ["users", "reviews"]

    import_backup(dst, tmp_path / "b.zip", mode="replace-all")
    assert sorted((t.component, t.name, t.table_number) for t in dst.tables()) == [
        ("", "orders", 10002),
        ("", "products", 10001),
    ]
    assert _docs(dst, "products") == _docs(src, "products")
    assert _docs(dst, "orders")[order]["product"] == product


def test_a_self_reference_counts_as_a_reference(
    deployment_factory: DeploymentFactory, tmp_path: Path
) -> None:
    src, dst = deployment_factory.open(), deployment_factory.open(location=deployment_factory.new_location())
    with src.transaction() as tx:
        tx.create_table("nodes")
        root = tx.insert("nodes", {"parent": None})
        tx.insert("nodes", {"parent": root})
    _users(dst)
    export_backup(src, tmp_path / "b.zip")
    with pytest.raises(BackupImportError) as info:
        import_backup(dst, tmp_path / "b.zip")
    assert 'table "nodes"' in info.value.message and "1 value(s)" in info.value.message


def test_fivetran_and_airbyte_system_indexes_survive_a_backup(
    deployment_factory: DeploymentFactory, tmp_path: Path
) -> None:
    src, dst = deployment_factory.open(), deployment_factory.open(location=deployment_factory.new_location())
    si.fivetran_create_table(
        src,
        {
            "tableName": "books",
            "indexes": [
                {"indexDescriptor": "_fivetran_by_primary_key", "fields": ["fivetran.deleted", "id"]},
                {"indexDescriptor": "_fivetran_by_synced", "fields": ["fivetran.deleted", "fivetran.synced"]},
            ],
        },
    )
    upsert = [
        si.FivetranOperation(
            "books", "Upsert", {"id": 1.0, "title": "Dune", "fivetran": {"synced": 1.0, "deleted": False}}
        ),
        si.FivetranOperation(
            "books", "Upsert", {"id": 2.0, "title": "Emma", "fivetran": {"synced": 1.0, "deleted": False}}
        ),
    ]
    si.apply_fivetran_operations(src, upsert)
    si.add_primary_key_indexes(src, {"events": [["key"]]})
    src.run_backfill()
    export_backup(src, tmp_path / "b.zip")
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        assert METADATA_ENTRY in zf.namelist()

    import_backup(dst, tmp_path / "b.zip")
    by_name = {i.name: i for i in dst.indexes("books")}
    assert by_name["_fivetran_by_primary_key"].fields == ("fivetran.deleted", "id", "_creationTime")
    assert by_name["_fivetran_by_primary_key"].is_system and by_name["_fivetran_by_primary_key"].ready
    assert by_name["_fivetran_by_synced"].fields == ("fivetran.deleted", "fivetran.synced", "_creationTime")
    assert dst.index("events", si.AIRBYTE_PRIMARY_KEY_INDEX) is not None

    # The restored deployment takes Fivetran operations: an upsert of an existing key replaces it.
    si.apply_fivetran_operations(
        dst,
        [
            si.FivetranOperation(
                "books", "Update", {"id": 1.0, "title": "Dune Messiah", "fivetran": {"synced": 2.0}}
            )
        ],
    )
    titles = sorted(d["title"] for d in _docs(dst, "books").values())
    assert titles == ["Dune Messiah", "Emma"]
    si.fivetran_truncate_table(dst, "books", None, "SoftDelete")
    assert all(d["fivetran"]["deleted"] is True for d in _docs(dst, "books").values())


def test_table_metadata_hooks_round_trip(deployment_factory: DeploymentFactory, tmp_path: Path) -> None:
    src, dst = deployment_factory.open(), deployment_factory.open(location=deployment_factory.new_location())
    _shop(src, with_reference=False)
    restored: list[tuple[str, str, Any]] = []

    def export(dep: Deployment, table: TableInfo) -> Any:
        return {"columns": {"price": "DECIMAL"}} if table.name == "products" else None

    register_table_metadata_hook(
        TableMetadataHook("fivetran_columns", export, lambda dep, c, t, blob: restored.append((c, t, blob)))
    )
    try:
        export_backup(src, tmp_path / "b.zip")
        import_backup(dst, tmp_path / "b.zip")
    finally:
        unregister_table_metadata_hook("fivetran_columns")
    assert restored == [("", "products", {"columns": {"price": "DECIMAL"}})]
    # Without a hook to restore it, the blob is reported, not silently lost.
    other = deployment_factory.open(location=deployment_factory.new_location())
    summary = import_backup(other, tmp_path / "b.zip")
    assert any("skipped metadata 'fivetran_columns'" in note for note in summary.notes)


def test_bad_metadata_member_is_a_clear_error(deployment: Deployment) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("t/documents.jsonl", "")
        zf.writestr(
            METADATA_ENTRY, '{"version": 1, "tables": [{"component": "", "name": "t", "indexes": [{}]}]}'
        )
    buf.seek(0)
    with pytest.raises(BackupImportError) as info:
        import_backup(deployment, buf)
    assert METADATA_ENTRY in info.value.message and "indexes[0]" in info.value.message
