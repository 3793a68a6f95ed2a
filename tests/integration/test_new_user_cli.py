"""What a new user meets on the command line: `fivetran-sync`, `export` and `fivetran-destination-test` with a
wrong key, a typo, a corrupt state file, a second runner, Ctrl-C. Each error is one clear line (no traceback),
exits non-zero, keeps keys out of the output and loses nothing already committed."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from connectors.backend.engine import DeploymentConfig
from connectors.cli import main
from connectors.typemap.fivetran import FivetranDataType
from fivetran_source import runner as runner_module
from fivetran_source.runner import warehouse_lock
from fivetran_source.warehouse import Cell, Warehouse
from tests.conformance.clients import write
from tests.integration.conftest import LiveServer, ServerFactory


@pytest.fixture
def live(server_factory: ServerFactory) -> LiveServer:
    server = server_factory.start(DeploymentConfig(background=False))
    write(server.deployment, "users", [{"name": f"u{i}", "age": i} for i in range(40)])
    return server


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, catch_exceptions=False)


def assert_clean_failure(result: Result, key: str, code: int = 1) -> str:
    """A failure a user can act on: the exit code, no traceback, no key; returns the output."""
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output
    assert key not in output
    secret = key.split("|", 1)[-1]
    assert secret not in output
    return output


def sync_args(live: LiveServer, warehouse: Path, *extra: str) -> list[str]:
    return [
        "fivetran-sync",
        "--url",
        live.url,
        "--key",
        live.export_key,
        "--warehouse",
        str(warehouse),
        *extra,
    ]


def warehouse_count(path: Path) -> int:
    warehouse = Warehouse(path, {})
    try:
        return len(warehouse.rows("app", "users"))
    finally:
        warehouse.close()


# --- fivetran-sync -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state_text", ['{"version":2,"checkpoint":{"garb', "not json", '{"version":7}'])
def test_sync_with_a_corrupt_state_file_says_how_to_start_over_and_keeps_the_warehouse(
    live: LiveServer, tmp_path: Path, state_text: str
) -> None:
    warehouse = tmp_path / "out.sqlite"
    assert invoke(sync_args(live, warehouse, "--no-progress")).exit_code == 0
    state = tmp_path / "out.sqlite.state.json"
    state.write_text(state_text, encoding="utf-8")
    output = assert_clean_failure(invoke(sync_args(live, warehouse, "--no-progress")), live.export_key)
    assert f"The state file {state} cannot be used" in output
    assert "Delete it (or pass --state with a new file)" in output
    assert "Fivetran" not in output  # the connector's advice (re-sync in Fivetran's UI) does not apply here
    assert state.read_text(encoding="utf-8") == state_text
    assert warehouse_count(warehouse) == 40
    state.unlink()  # what the message says to do: a full sync again, every row upserted once
    assert invoke(sync_args(live, warehouse, "--no-progress")).exit_code == 0
    assert warehouse_count(warehouse) == 40


def test_sync_from_an_expired_cursor_says_to_delete_the_state_file(live: LiveServer, tmp_path: Path) -> None:
    warehouse = tmp_path / "out.duckdb"
    assert invoke(sync_args(live, warehouse, "--no-progress")).exit_code == 0
    state = tmp_path / "out.duckdb.state.json"
    state.write_text('{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":1000}},"tablesSeen":["users"]}')
    output = assert_clean_failure(invoke(sync_args(live, warehouse, "--no-progress")), live.export_key)
    assert f"Delete the state file {state}" in output
    assert "run again to continue" not in output and "Re-sync all historical data" not in output
    state.unlink()
    assert invoke(sync_args(live, warehouse, "--no-progress")).exit_code == 0
    assert warehouse_count(warehouse) == 40


def test_a_second_runner_on_the_same_warehouse_is_refused(live: LiveServer, tmp_path: Path) -> None:
    warehouse = tmp_path / "out.sqlite"
    with warehouse_lock(warehouse):  # what a running fivetran-sync holds
        output = assert_clean_failure(invoke(sync_args(live, warehouse)), live.export_key)
    assert "Another fivetran-sync" in output and "is writing to" in output
    assert not (tmp_path / "out.sqlite.state.json").exists()
    # Released with the holder: the next run works.
    assert invoke(sync_args(live, warehouse, "--no-progress")).exit_code == 0


@pytest.mark.parametrize("name", ["missing-dir/out.duckdb", "missing-dir/out.sqlite"])
def test_sync_into_a_missing_directory_names_it(live: LiveServer, tmp_path: Path, name: str) -> None:
    output = assert_clean_failure(invoke(sync_args(live, tmp_path / name)), live.export_key)
    assert "missing-dir" in output and "directory exists" in output


@pytest.mark.parametrize("suffix", [".db", ".duckdb"])
def test_sync_into_a_file_of_another_kind_is_refused_before_syncing(
    live: LiveServer, tmp_path: Path, suffix: str
) -> None:
    warehouse = tmp_path / f"notes{suffix}"
    warehouse.write_text("my notes, not a database\n" * 100, encoding="utf-8")
    output = assert_clean_failure(invoke(sync_args(live, warehouse)), live.export_key)
    assert f"Cannot open the {'SQLite' if suffix == '.db' else 'DuckDB'} warehouse" in output
    assert warehouse.read_text(encoding="utf-8").startswith("my notes")


@pytest.mark.parametrize("url", ["htp://127.0.0.1:3210", "http://127.0.0.1:3210/api"])
def test_sync_with_a_typo_in_the_url_says_what_a_url_looks_like(
    live: LiveServer, tmp_path: Path, url: str
) -> None:
    args = sync_args(live, tmp_path / "out.duckdb")
    args[args.index(live.url)] = url
    output = assert_clean_failure(invoke(args), live.export_key)
    assert f"--url was {url!r}" in output and "root URL" in output


def test_sync_with_a_wrong_key_fails_without_showing_it(live: LiveServer, tmp_path: Path) -> None:
    wrong = live.export_key[:-4] + "AAAA"
    args = sync_args(live, tmp_path / "out.duckdb")
    args[args.index(live.export_key)] = wrong
    output = assert_clean_failure(invoke(args), wrong)
    assert "BadAdminKey" in output and "Check the Deploy Key" in output


def test_ctrl_c_says_the_warehouse_keeps_the_last_checkpoint(
    live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: runner_module.SyncRunner) -> runner_module.SyncSummary:
        raise KeyboardInterrupt  # what SIGINT raises in the main thread mid-sync

    monkeypatch.setattr(runner_module.SyncRunner, "run", interrupted)
    result = CliRunner().invoke(main, sync_args(live, tmp_path / "out.duckdb"))
    assert result.exit_code == 130
    assert "Interrupted" in result.output and "run the same command again" in result.output


def test_duckdb_upserts_in_multi_row_statements_keep_every_row(tmp_path: Path) -> None:
    # More rows than one INSERT statement holds, a re-upserted key and a NULL in one flush.
    path = tmp_path / "w.duckdb"
    warehouse = Warehouse(path, {("app", "t"): {"_id": FivetranDataType.STRING, "n": FivetranDataType.LONG}})
    try:
        for i in range(700):
            warehouse.upsert("app", "t", {"_id": Cell("string", f"k{i}"), "n": Cell("long", i)})
        warehouse.upsert("app", "t", {"_id": Cell("string", "k5"), "n": Cell("null", None)})
        warehouse.commit()
        rows = {r["_id"]: r["n"] for r in warehouse.rows("app", "t")}
    finally:
        warehouse.close()
    assert len(rows) == 700 and rows["k5"] is None and rows["k699"] == 699


# --- export --------------------------------------------------------------------------------------------------


def test_export_with_a_wrong_key_says_which_option_to_fix(live: LiveServer, tmp_path: Path) -> None:
    wrong = live.export_key[:-4] + "AAAA"
    result = invoke(["export", "--url", live.url, "--key", wrong, "--out", str(tmp_path / "lake")])
    output = assert_clean_failure(result, wrong)
    assert "Check --key (or CONVEX_DEPLOY_KEY)" in output
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("cursor", ["garbage", "-5", "12abc"])
def test_export_since_a_garbage_cursor_says_what_a_cursor_is(
    live: LiveServer, tmp_path: Path, cursor: str
) -> None:
    args = [
        "export",
        "--url",
        live.url,
        "--key",
        live.export_key,
        "--out",
        str(tmp_path / "c"),
        "--since",
        cursor,
    ]
    output = assert_clean_failure(invoke(args), live.export_key, code=2)
    assert "is not a cursor" in output and "--since-manifest" in output


# --- fivetran-destination-test -------------------------------------------------------------------------------


def test_destination_test_refuses_a_misspelt_input_section(live: LiveServer, tmp_path: Path) -> None:
    spec = tmp_path / "input.json"
    spec.write_text(json.dumps({"creat_table": {}, "ops": []}), encoding="utf-8")
    args = ["fivetran-destination-test", "--url", live.url, "--key", live.admin_key, "--input", str(spec)]
    output = assert_clean_failure(invoke(args), live.admin_key)
    assert "unknown section(s) 'creat_table'" in output and "create_table" in output


def test_destination_test_against_a_port_with_no_destination(live: LiveServer, tmp_path: Path) -> None:
    spec = tmp_path / "input.json"
    spec.write_text(json.dumps({"describe_table": ["t"]}), encoding="utf-8")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["fivetran-destination-test", "--url", live.url, "--key", live.admin_key, "--input", str(spec)]
    output = assert_clean_failure(invoke([*args, "--port", str(port)]), live.admin_key)
    assert f"No destination answers on localhost:{port}" in output and "fivetran-destination --port" in output


def test_destination_test_with_a_typo_in_the_url(live: LiveServer, tmp_path: Path) -> None:
    spec = tmp_path / "input.json"
    spec.write_text(json.dumps({"describe_table": ["t"]}), encoding="utf-8")
    args = [
        "fivetran-destination-test",
        "--url",
        "htp://x:3210",
        "--key",
        live.admin_key,
        "--input",
        str(spec),
    ]
    output = assert_clean_failure(invoke(args), live.admin_key, code=2)
    assert "the url was 'htp://x:3210'" in output


def test_export_excluding_a_column_of_a_misspelt_table_is_refused(live: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "lake"
    args = ["export", "--url", live.url, "--key", live.export_key, "--out", str(out)]
    output = assert_clean_failure(invoke([*args, "--exclude-column", "userz.name"]), live.export_key)
    assert "No such table or component: userz" in output and "users" in output
    assert not out.exists()
    assert invoke([*args, "--exclude-column", "users.name"]).exit_code == 0


def test_export_excluding_a_misspelt_column_is_refused(live: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "lake"
    args = ["export", "--url", live.url, "--key", live.export_key, "--out", str(out)]
    output = assert_clean_failure(invoke([*args, "--exclude-column", "users.nme"]), live.export_key)
    assert "table 'users' has no column 'nme'" in output and "age, name" in output
    assert not out.exists()
    result = invoke([*args, "--exclude-column", "users.age"])
    assert result.exit_code == 0, result.output
    names = pq.read_table(out / "_root" / "users").column_names
    assert "age" not in names and "name" in names


# --- fivetran-source -----------------------------------------------------------------------------------------


def test_source_server_on_a_port_in_use_says_so(live: LiveServer) -> None:
    port = live.url.rsplit(":", 1)[1].rstrip("/")  # the HTTP server's port is taken
    result = CliRunner().invoke(main, ["fivetran-source", "--port", port])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"Could not listen on port {port}" in result.output and "another --port" in result.output


def test_ctrl_c_during_an_export_says_it_is_incomplete(
    live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.export import core

    def interrupted(*args: object, **kwargs: object) -> core.ExportResult:
        raise KeyboardInterrupt  # what SIGINT raises in the main thread mid-export

    monkeypatch.setattr(core, "run_export", interrupted)
    out = tmp_path / "lake"
    result = CliRunner().invoke(
        main, ["export", "--url", live.url, "--key", live.export_key, "--out", str(out)]
    )
    assert result.exit_code == 130
    assert (
        "Interrupted: the export is incomplete" in result.output
        and "run the same command again" in result.output
    )
    assert not (out / "_manifest.json").exists()


def test_destination_test_reports_a_failure_once(
    live: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = tmp_path / "input.json"
    table = {"columns": {"id": "INT", "n": "LONG"}, "primary_key": ["id"]}
    rows = [{"id": 1, "n": "not-a-number-SECRET"}]
    spec.write_text(
        json.dumps({"create_table": {"t": table}, "ops": [{"upsert": {"t": rows}}]}), encoding="utf-8"
    )
    args = ["fivetran-destination-test", "--url", live.url, "--key", live.admin_key, "--input", str(spec)]
    caplog.set_level(logging.WARNING)
    output = assert_clean_failure(invoke(args), live.admin_key)
    assert output.count("Couldn't parse field n as LONG") == 1  # on the FAIL line, not again as a log line
    assert "FAIL op 1 upsert t" in output and "SECRET" not in output
    assert not [r for r in caplog.records if r.name.startswith("fivetran_destination")]


def test_sync_of_one_table_leaves_the_others_out_and_a_misspelt_table_is_named(
    live: LiveServer, tmp_path: Path
) -> None:
    write(live.deployment, "orders", [{"n": i} for i in range(5)])
    warehouse = tmp_path / "out.sqlite"
    result = invoke(sync_args(live, warehouse, "--table", "orders"))
    assert result.exit_code == 0, result.output
    synced = Warehouse(warehouse, {})
    try:
        assert len(synced.rows("app", "orders")) == 5
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            synced.rows("app", "users")
    finally:
        synced.close()
    output = assert_clean_failure(
        invoke(sync_args(live, tmp_path / "b.sqlite", "--table", "ordrs")), live.export_key
    )
    assert "No table 'ordrs'" in output
    output = assert_clean_failure(
        invoke(sync_args(live, tmp_path / "c.sqlite", "--component", "shop")), live.export_key
    )
    assert "No component 'shop'" in output
