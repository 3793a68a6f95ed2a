"""`convex-connectors export` / `import` as a user runs them (click's runner, real SQLite deployments)."""

from __future__ import annotations

import math
from pathlib import Path

from click.testing import CliRunner

from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.cli import main


def _seed(data_dir: Path) -> None:
    with (
        Deployment.open(data_dir=data_dir, config=DeploymentConfig(background=False)) as dep,
        dep.transaction() as tx,
    ):
        tx.create_table("users")
        tx.create_table("jobs", component="cron")
        tx.insert("users", {"n": 2**63 - 1, "b": b"\x00\xff", "f": float("nan"), "z": -0.0})
        tx.insert("jobs", {"when": 1.5}, component="cron")


def _documents(data_dir: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    with Deployment.open(data_dir=data_dir, config=DeploymentConfig(background=False)) as dep:
        for table in dep.tables():
            for doc in dep.iter_snapshot(table):
                out[doc.id] = {"table": (table.component, table.name, table.table_number), **doc.value()}
    return out


def test_export_then_import_round_trip(tmp_path: Path) -> None:
    src, dst, zip_path = tmp_path / "src", tmp_path / "dst", tmp_path / "backup.zip"
    _seed(src)
    runner = CliRunner()
    exported = runner.invoke(main, ["export", "--data-dir", str(src), str(zip_path)])
    assert exported.exit_code == 0, exported.output
    assert "Exported 2 documents in 2 tables." in exported.output
    assert "Snapshot timestamp" in exported.output
    imported = runner.invoke(main, ["import", "--data-dir", str(dst), str(zip_path)])
    assert imported.exit_code == 0, imported.output
    assert "Imported 2 documents" in imported.output
    before, after = _documents(src), _documents(dst)
    assert before.keys() == after.keys()
    for doc_id, doc in before.items():
        other = after[doc_id]
        assert other["table"] == doc["table"]
        assert other["_creationTime"] == doc["_creationTime"]
        for key, value in doc.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(other[key])
            elif isinstance(value, float):
                assert math.copysign(1.0, other[key]) == math.copysign(1.0, value) and other[key] == value
            else:
                assert type(other[key]) is type(value) and other[key] == value


def test_import_refuses_existing_documents_then_replace_works(tmp_path: Path) -> None:
    src, zip_path = tmp_path / "src", tmp_path / "backup.zip"
    _seed(src)
    runner = CliRunner()
    assert runner.invoke(main, ["export", "--data-dir", str(src), str(zip_path)]).exit_code == 0
    again = runner.invoke(main, ["import", "--data-dir", str(src), str(zip_path)])
    assert again.exit_code == 1
    assert "already exists" in again.output and "replace" in again.output
    replaced = runner.invoke(main, ["import", "--data-dir", str(src), "--mode", "replace", str(zip_path)])
    assert replaced.exit_code == 0, replaced.output
    assert len(_documents(src)) == 2


def test_import_of_a_non_zip_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "not.zip"
    bogus.write_text("hello")
    result = CliRunner().invoke(main, ["import", "--data-dir", str(tmp_path / "d"), str(bogus)])
    assert result.exit_code == 1
    assert "not a valid ZIP" in result.output


def test_export_of_a_missing_deployment_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = CliRunner().invoke(main, ["export", "--data-dir", str(missing), str(tmp_path / "b.zip")])
    assert result.exit_code == 1
    assert "There is no deployment in" in result.output
    assert not missing.exists()  # nothing was created by mistake
