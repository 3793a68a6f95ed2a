"""`convex-connectors import` spelled as `npx convex import` spells it (click's runner, real SQLite)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.cli import main


def _open(data_dir: Path) -> Deployment:
    return Deployment.open(data_dir=data_dir, config=DeploymentConfig(background=False))


def _tables(data_dir: Path) -> dict[str, int]:
    with _open(data_dir) as dep:
        return {t.name: dep.document_count(t.name) for t in dep.tables()}


def test_single_table_import_with_npx_flags(tmp_path: Path) -> None:
    data = tmp_path / "data"
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("name,age\nAda,36\nBob,41\n")
    jsonl_file = tmp_path / "more.jsonl"
    jsonl_file.write_text('{"name": "Cy", "age": 7}\n')
    runner = CliRunner()
    first = runner.invoke(main, ["import", "--data-dir", str(data), "--table", "people", str(csv_file)])
    assert first.exit_code == 0, first.output
    assert "Imported 2 documents into table people (csv)." in first.output
    refused = runner.invoke(main, ["import", "--data-dir", str(data), "--table", "people", str(jsonl_file)])
    assert refused.exit_code != 0 and "--append" in refused.output
    appended = runner.invoke(
        main, ["import", "--data-dir", str(data), "--table", "people", "--append", str(jsonl_file)]
    )
    assert appended.exit_code == 0, appended.output
    assert _tables(data) == {"people": 3}
    replaced = runner.invoke(
        main, ["import", "--data-dir", str(data), "--table", "people", "--replace", str(jsonl_file)]
    )
    assert replaced.exit_code == 0, replaced.output
    assert _tables(data) == {"people": 1}
    same = runner.invoke(
        main, ["import", "--data-dir", str(data), "--table", "people", "--mode", "append", str(jsonl_file)]
    )
    assert same.exit_code == 0, same.output
    assert _tables(data) == {"people": 2}


def test_replace_all_restores_a_backup_into_another_deployment(tmp_path: Path) -> None:
    src, dst, zip_path = tmp_path / "src", tmp_path / "dst", tmp_path / "backup.zip"
    with _open(src) as dep, dep.transaction() as tx:
        tx.create_table("products")
        product = tx.insert("products", {"name": "lamp"})
        tx.create_table("orders")
        tx.insert("orders", {"product": product})
    with _open(dst) as dep, dep.transaction() as tx:
        tx.create_table("users")
        tx.insert("users", {"name": "Ada"})
    runner = CliRunner()
    assert runner.invoke(main, ["export", "--data-dir", str(src), str(zip_path)]).exit_code == 0
    refused = runner.invoke(main, ["import", "--data-dir", str(dst), str(zip_path)])
    assert refused.exit_code != 0
    assert 'used by table "users"' in refused.output and "--replace-all" in refused.output
    restored = runner.invoke(main, ["import", "--data-dir", str(dst), "--replace-all", str(zip_path)])
    assert restored.exit_code == 0, restored.output
    assert _tables(dst) == {"products": 1, "orders": 1}


def test_usage_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    zip_path = tmp_path / "b.zip"
    zip_path.write_bytes(b"")
    csv_file = tmp_path / "x.csv"
    csv_file.write_text("a\n1\n")
    runner = CliRunner()
    cases = [
        (["--replace", "--append", str(zip_path)], "Choose one import mode"),
        (["--mode", "create", "--replace-all", str(zip_path)], "Choose one import mode"),
        (["--table", "t", str(zip_path)], "--table is not supported for a ZIP backup"),
        ([str(csv_file)], "give --table TABLE"),
        (["--table", "t", "--replace-all", str(csv_file)], "with --table use --replace"),
    ]
    for args, expected in cases:
        result = runner.invoke(main, ["import", "--data-dir", str(data), *args])
        assert result.exit_code == 2 and expected in result.output, (args, result.output)
