"""The snapshot export end to end: real deployments, the real HTTP server, real files read back with
pyarrow, DuckDB, fastavro and the backup importer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.backup import METADATA_ENTRY, import_backup
from connectors.cli import main
from connectors.client import ClientConfig, ConvexClient
from connectors.export import ExportFormat, ExportOptions, ExportResult, run_export
from connectors.export.output import TEMP_SUFFIX
from connectors.sync import HttpReader, LocalReader, TableRef
from tests.conftest import DeploymentFactory
from tests.integration.conftest import LiveServer
from tests.integration.export_helpers import (
    by_id,
    canonical,
    documents_at,
    expected_object,
    read_avro,
    read_duckdb,
    read_jsonl,
    read_parquet,
    seed,
)
from tests.unit.test_client import unused_port


def _client(live: LiveServer) -> ConvexClient:
    return ConvexClient(ClientConfig(deployment_url=live.url, deploy_key=live.admin_key))


def _export_http(live: LiveServer, out: Path, fmt: str, **kwargs: Any) -> ExportResult:
    with _client(live) as client:
        return run_export(HttpReader(client), ExportOptions(out=str(out), format=ExportFormat(fmt), **kwargs))


def _check_against(
    dep: Deployment, result: ExportResult, out: Path, fmt: str, *, every_table: bool = True
) -> None:
    """Every value of every table read back equals the deployment at the export's snapshot."""
    expected = documents_at(dep, result.snapshot_ts)
    if every_table:
        assert {(t.table.component, t.table.table) for t in result.tables} == set(expected)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["snapshot_ts"] == result.snapshot_ts and manifest["cursor"] == result.cursor
    for t in result.tables:
        assert t.tree is not None
        docs = expected[(t.table.component, t.table.table)]
        want = {i: canonical(expected_object(d, t.tree)) for i, d in docs.items()}
        entry = next(
            m
            for m in manifest["tables"]
            if m["table"] == t.table.table and m["component"] == t.table.component
        )
        assert entry["rows"] == len(docs) and entry["files"]
        table_dir = out / t.directory
        if fmt == "parquet":
            assert by_id(read_parquet(table_dir, t.tree)) == want, t.table
            duck = read_duckdb(table_dir, t.tree)
            nan_free = {d["_id"]: canonical(d, nan_payload=False) for d in duck}
            assert nan_free == {
                i: canonical(expected_object(d, t.tree), nan_payload=False) for i, d in docs.items()
            }
        elif fmt == "avro":
            assert by_id(read_avro(table_dir, t.tree)) == want, t.table
        else:
            assert by_id(read_jsonl(table_dir)) == {i: canonical(d) for i, d in docs.items()}, t.table


@pytest.mark.parametrize("fmt", ["parquet", "avro", "jsonl"])
def test_export_over_http_reads_back_exactly(live_server: LiveServer, tmp_path: Path, fmt: str) -> None:
    seed(live_server.deployment)
    out = tmp_path / "out"
    result = _export_http(live_server, out, fmt)
    _check_against(live_server.deployment, result, out, fmt)
    assert (out / "_root" / "empty").is_dir()
    assert (out / "parent.child" / "items").is_dir()
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    if fmt == "parquet":
        schema = pq.read_schema(out / "_root" / "all_types" / "part-00000.parquet")
        assert str(schema.field("i").type) == "int64" and str(schema.field("b").type) == "binary"
        assert str(schema.field("_creationTime").type) == "timestamp[us, tz=UTC]"
        assert schema.field("mixed").metadata == {b"convex:encoding": b"json"}
        assert str(schema.field("obj").type).startswith("struct<")
        assert str(schema.field("arr").type).startswith("list<")
        assert schema.field("nul").nullable and schema.field("opt").nullable
        assert pq.read_table(out / "_root" / "empty").num_rows == 0


def test_url_and_data_dir_give_identical_files(
    server_factory: Any, deployment_factory: DeploymentFactory, tmp_path: Path
) -> None:
    """``--url`` and the local reader (``--data-dir`` on SQLite, ``--db`` on PostgreSQL) write the same bytes."""
    live = server_factory.start()
    seed(live.deployment)
    for fmt in ("parquet", "avro", "jsonl"):
        via_http = tmp_path / f"http-{fmt}"
        _export_http(live, via_http, fmt)
        via_dir = tmp_path / f"dir-{fmt}"
        with deployment_factory.open_read_only(live.location) as dep:
            run_export(LocalReader(dep), ExportOptions(out=str(via_dir), format=ExportFormat(fmt)))
        files = sorted(p.relative_to(via_http) for p in via_http.rglob("part-*"))
        assert files and files == sorted(p.relative_to(via_dir) for p in via_dir.rglob("part-*"))
        for rel in files:
            assert (via_http / rel).read_bytes() == (via_dir / rel).read_bytes(), rel
        a, b = (json.loads((d / "_manifest.json").read_text()) for d in (via_http, via_dir))
        assert a["tables"] == b["tables"]


def test_zip_reimports_into_a_fresh_deployment(
    live_server: LiveServer, deployment_factory: DeploymentFactory, tmp_path: Path
) -> None:
    seed(live_server.deployment)
    path = tmp_path / "backup.zip"
    result = _export_http(live_server, path, "zip")
    assert path.is_file() and not (tmp_path / f".backup.zip{TEMP_SUFFIX}").exists()
    fresh = deployment_factory.open(location=deployment_factory.new_location())
    summary = import_backup(fresh, path)
    assert summary.total_documents == result.rows
    source = documents_at(live_server.deployment, result.snapshot_ts)
    copy = documents_at(fresh, fresh.read_timestamp())
    for key, docs in source.items():
        assert {i: canonical(d) for i, d in copy.get(key, {}).items()} == {
            i: canonical(d) for i, d in docs.items()
        }


def test_a_field_changing_type_between_shape_and_snapshot_widens_and_rewrites(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A writer commits between the shape read and the snapshot: the export widens the column, rewrites the
    parts already written, and every part ends up with one schema."""
    for fmt, ext in (("parquet", "parquet"), ("avro", "avro"), ("jsonl", "jsonl")):
        name = f"t_{fmt}"
        with deployment.transaction() as tx:
            tx.create_table(name)
            for i in range(60):
                tx.insert(name, {"x": i, "o": {"k": i}})

        class WriterBetween(LocalReader):
            table = name

            def json_schemas(self, *, delta_schema: bool) -> dict[str, dict[str, Any]]:
                schemas = super().json_schemas(delta_schema=delta_schema)
                with self.deployment.transaction() as tx:  # after the shape, before the snapshot
                    tx.insert(
                        self.table, {"x": "now a string", "o": {"k": 1.5, "new": b"\x01"}, "extra": True}
                    )
                return schemas

        out = tmp_path / fmt
        reader = WriterBetween(deployment, snapshot_page_limit=10)
        result = run_export(
            reader,
            ExportOptions(out=str(out), format=ExportFormat(fmt), tables=(TableRef("", name),), part_bytes=1),
        )
        (table,) = result.tables
        assert table.widened and table.rows == 61 and result.notes
        assert table.tree is not None and table.tree.field("extra") is not None
        _check_against(deployment, result, out, fmt, every_table=False)
        parts = sorted((out / "_root" / name).glob(f"part-*.{ext}"))
        assert len(parts) == 7  # pages of 10, one part each
        if fmt == "parquet":
            assert len({str(pq.read_schema(p)) for p in parts}) == 1


def test_export_with_writers_active_matches_the_manifest_timestamp(
    live_server: LiveServer, tmp_path: Path
) -> None:
    dep = live_server.deployment
    with dep.transaction() as tx:
        tx.create_table("busy")
        ids = [tx.insert("busy", {"n": i, "s": "x" * 50}) for i in range(3000)]
    stop = threading.Event()

    errors: list[BaseException] = []

    def write() -> None:
        # Replaces the even documents, deletes the odd ones, inserts new ones with a new field.
        i = 0
        try:
            while not stop.is_set() and 2 * i + 1 < len(ids):
                with dep.transaction() as tx:
                    tx.insert("busy", {"n": -i, "s": f"new {i}", "late": [i]})
                    tx.replace(ids[2 * i], {"n": i * 1.5, "s": None})
                    tx.delete(ids[2 * i + 1])
                i += 1
                time.sleep(0.001)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.05)
        out = tmp_path / "out"
        with _client(live_server) as client:
            result = run_export(HttpReader(client), ExportOptions(out=str(out), format=ExportFormat.PARQUET))
    finally:
        stop.set()
        writer.join()
    assert not errors
    _check_against(dep, result, out, "parquet")
    assert result.rows > 0


def test_since_applied_to_the_full_export_reproduces_the_later_state(
    live_server: LiveServer, tmp_path: Path
) -> None:
    dep = live_server.deployment
    seed(dep, n=20)
    full = tmp_path / "full"
    first = _export_http(live_server, full, "parquet")
    all_types = dep.table("all_types")
    victims = [d.id for d in dep.iter_snapshot(all_types)][:3]
    with dep.transaction() as tx:
        tx.delete(victims[0])
        tx.replace(victims[1], {"i": 7, "now": "replaced"})
        tx.insert("all_types", {"i": 8, "brand_new": [1.5]})
        tx.create_table("later")
        tx.insert("later", {"x": 1})
    with dep.transaction() as tx:
        tx.replace(victims[2], {"i": 9})
        tx.delete(victims[2])
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--url",
            live_server.url,
            "--key",
            live_server.admin_key,
            "--format",
            "jsonl",
            "--out",
            str(tmp_path / "changes"),
            "--since-manifest",
            str(full),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "changes" / "_manifest.json").read_text())
    assert manifest["since"] == first.cursor and manifest["cursor"] > first.cursor
    state: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for t in first.tables:
        assert t.tree is not None
        state[(t.table.component, t.table.table)] = {
            d["_id"]: d for d in read_parquet(full / t.directory, t.tree)
        }
    for entry in manifest["tables"]:
        table = state.setdefault((entry["component"], entry["table"]), {})
        for change in read_jsonl(tmp_path / "changes" / entry["path"]):
            assert type(change.pop("_ts")) is int
            if change.pop("_deleted"):
                table.pop(change["_id"], None)
            else:
                table[change["_id"]] = {k: v for k, v in change.items()}
    later = documents_at(dep, manifest["cursor"])
    first_trees = {(t.table.component, t.table.table): t.tree for t in first.tables}
    for key, docs in later.items():
        tree = first_trees.get(key)
        got = state.get(key, {})
        assert set(got) == set(docs), key
        for i, doc in docs.items():
            if tree is not None and i not in victims and "brand_new" not in doc:
                assert canonical(got[i]) == canonical(expected_object(doc, tree)), (key, i)
            else:
                assert canonical(got[i]) == canonical(doc), (key, i)


def test_an_export_killed_midway_leaves_no_complete_looking_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Deployment.open(data_dir=data, config=DeploymentConfig(background=False), create=True) as dep:
        with dep.transaction() as tx:
            tx.create_table("big")
        for _ in range(8):
            with dep.transaction() as tx:
                for i in range(10_000):
                    tx.insert("big", {"i": i, "s": f"row {i} " * 4, "f": i / 3})
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "connectors.cli",
        "export",
        "--data-dir",
        str(data),
        "--out",
        str(out),
        "--part-size-mb",
        "1",
        "--compression",
        "none",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(list(out.rglob(f"*{TEMP_SUFFIX}"))) >= 2:  # one part done, the next one started
                break
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "_manifest.json").exists()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and all(p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) for p in files), files
    # Run again into the same directory: the leftovers are removed and the export completes.
    rerun = CliRunner().invoke(main, cmd[3:])
    assert rerun.exit_code == 0, rerun.output
    assert json.loads((out / "_manifest.json").read_text())["tables"][0]["rows"] == 80_000
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    assert pq.read_table(out / "_root" / "big").num_rows == 80_000


def test_cli_local_export_while_serving_selection_and_file_uri(
    server_factory: Any, deployment_factory: DeploymentFactory, tmp_path: Path
) -> None:
    live = server_factory.start()  # holds the data directory, as `serve` does
    seed(live.deployment, n=10)
    local = deployment_factory.cli_location(live.location)
    out_uri = (tmp_path / "lake").as_uri()
    result = CliRunner().invoke(
        main,
        [
            "export",
            *local,
            "--format",
            "avro",
            "--out",
            out_uri,
            "--table",
            "all_types",
            "--component",
            "parent",
            "--exclude-column",
            "all_types.s",
            "--compression",
            "snappy",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Snapshot timestamp" in result.output and "continue with: --since" in result.output
    manifest = json.loads((tmp_path / "lake" / "_manifest.json").read_text())
    assert {(t["component"], t["table"]) for t in manifest["tables"]} == {
        ("", "all_types"),
        ("parent", "items"),
    }
    all_types = next(t for t in manifest["tables"] if t["table"] == "all_types")
    assert "s" not in {c["name"] for c in all_types["columns"]} and all_types["rows"] == 10
    # --format zip from a local deployment carries the backup's metadata entry (indexes) too.
    zipped = CliRunner().invoke(main, ["export", *local, "--format", "zip", "--out", str(tmp_path / "f.zip")])
    assert zipped.exit_code == 0, zipped.output
    with zipfile.ZipFile(tmp_path / "f.zip") as zf:
        assert (
            METADATA_ENTRY in zf.namelist()
            and "parent/_components/child/items/documents.jsonl" not in zf.namelist()
        )
        assert "_components/parent/_components/child/items/documents.jsonl" in zf.namelist()
    # The older form still writes a backup ZIP.
    legacy = CliRunner().invoke(main, ["export", *local, str(tmp_path / "b.zip")])
    assert legacy.exit_code == 0, legacy.output
    assert "Exported 12 documents in 4 tables." in legacy.output


def test_cli_errors_are_clear(live_server: LiveServer, tmp_path: Path) -> None:
    runner = CliRunner()
    refused_url = f"http://127.0.0.1:{unused_port()}"
    wrong_key = runner.invoke(
        main, ["export", "--url", live_server.url, "--key", "prod:nope|bad", "--out", str(tmp_path / "a")]
    )
    assert wrong_key.exit_code == 1 and "Cannot export from" in wrong_key.output
    assert "prod:nope|bad" not in wrong_key.output
    typo = runner.invoke(
        main,
        [
            "export",
            "--url",
            refused_url,
            "--key",
            live_server.admin_key,
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert typo.exit_code == 1 and f"Cannot reach {refused_url}" in typo.output
    assert "Check the URL" in typo.output
    assert live_server.admin_key not in typo.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    not_empty = runner.invoke(
        main,
        ["export", "--url", live_server.url, "--key", live_server.admin_key, "--out", str(tmp_path / "full")],
    )
    assert not_empty.exit_code == 1 and "is not empty" in not_empty.output
    assert (tmp_path / "full" / "x.txt").read_text() == "mine"
    no_manifest = runner.invoke(
        main,
        [
            "export",
            "--url",
            live_server.url,
            "--key",
            live_server.admin_key,
            "--out",
            str(tmp_path / "c"),
            "--since-manifest",
            str(tmp_path / "full"),
        ],
    )
    assert no_manifest.exit_code == 1 and "_manifest.json" in no_manifest.output
    bad_table = runner.invoke(
        main,
        [
            "export",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "d"),
            "--exclude-column",
            "t",
        ],
    )
    assert bad_table.exit_code == 2 and "TABLE.COLUMN" in bad_table.output
    assert TableRef.from_key("a/b/t") == TableRef("a/b", "t")
    no_table = runner.invoke(
        main,
        [
            "export",
            "--url",
            live_server.url,
            "--key",
            live_server.admin_key,
            "--out",
            str(tmp_path / "e"),
            "--table",
            "nosuch",
        ],
    )
    assert no_table.exit_code == 1 and "No such table or component: nosuch" in no_table.output
    assert not (tmp_path / "e").exists()
