"""The Fivetran destination end to end: our gRPC server over a real channel, writing into our HTTP server."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import zstandard
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from google.protobuf import timestamp_pb2

from connectors.client import ClientConfig, ConvexClient
from fivetran_destination.harness import replay
from fivetran_destination.migrate import documents
from protos import common_pb2, destination_sdk_pb2, destination_sdk_pb2_grpc
from tests.integration.conftest import LiveServer, ServerFactory

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
if not FIXTURES.exists():
    FIXTURES = Path("/work/shared/fixtures")
BATCHES = FIXTURES / "fivetran_destination"
TESTER = FIXTURES / "fivetran_tester_inputs"
BOOKS_KEY = base64.b64decode("f/GQrILnRacI9U9ksJbyNNXXqDpquVx/IFmz5HCdFi0=")
UNMOD = "unmod-NcK9NIjPUutCsz4mjOQQztbnwnE1sY3"
NULL = "null-m8yilkvPsNulehxl2G6pmSQ3G3WWdLP"


@pytest.fixture(scope="module")
def stub(
    destination_stub: destination_sdk_pb2_grpc.DestinationConnectorStub,
) -> destination_sdk_pb2_grpc.DestinationConnectorStub:
    return destination_stub


def config(live: LiveServer) -> dict[str, str]:
    return {"url": live.url, "key": live.admin_key}


def table_docs(live: LiveServer, name: str) -> list[dict[str, Any]]:
    with ConvexClient(ClientConfig(live.url, live.admin_key)) as client:
        docs = list(documents(client, name))
    return sorted(docs, key=lambda d: json.dumps(d, sort_keys=True))


def column(name: str, t: int, pk: bool = False) -> common_pb2.Column:
    return common_pb2.Column(name=name, type=t, primary_key=pk)  # type: ignore[arg-type]


def books(
    id_type: int = common_pb2.LONG, title_type: int = common_pb2.STRING, magic: bool = True
) -> common_pb2.Table:
    cols = [column("id", id_type, True), column("title", title_type)]
    if magic:
        cols.append(column("magic_number", common_pb2.INT))
    cols += [
        column("_fivetran_deleted", common_pb2.BOOLEAN),
        column("_fivetran_synced", common_pb2.UTC_DATETIME),
    ]
    return common_pb2.Table(name="books", columns=cols)


def create(stub: Any, live: LiveServer, table: common_pb2.Table, schema: str = "public") -> None:
    resp = stub.CreateTable(
        destination_sdk_pb2.CreateTableRequest(configuration=config(live), schema_name=schema, table=table)
    )
    assert resp.WhichOneof("response") == "success", resp


def write(
    stub: Any,
    live: LiveServer,
    table: common_pb2.Table,
    *,
    replace: list[str] = (),  # type: ignore[assignment]
    update: list[str] = (),  # type: ignore[assignment]
    delete: list[str] = (),  # type: ignore[assignment]
    keys: dict[str, bytes] | None = None,
    compression: int = destination_sdk_pb2.OFF,
    encryption: int = destination_sdk_pb2.NONE,
    null: str = "magic-nullvalue",
    unmodified: str = UNMOD,
) -> Any:
    return stub.WriteBatch(
        destination_sdk_pb2.WriteBatchRequest(
            configuration=config(live),
            schema_name="public",
            table=table,
            keys=keys or {},
            replace_files=list(replace),
            update_files=list(update),
            delete_files=list(delete),
            file_params=destination_sdk_pb2.FileParams(
                compression=compression,  # type: ignore[arg-type]
                encryption=encryption,  # type: ignore[arg-type]
                null_string=null,
                unmodified_string=unmodified,
            ),
        )
    )


def by_id(docs: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {d["id"]["$integer"] if isinstance(d["id"], dict) else d["id"]: d for d in docs}


def int64(n: int) -> dict[str, str]:
    return {"$integer": base64.b64encode(n.to_bytes(8, "little", signed=True)).decode()}


# --- configuration, form, Test -------------------------------------------------------------------------------


def test_form_capabilities_and_test(stub: Any, live_server: LiveServer) -> None:
    form = stub.ConfigurationForm(common_pb2.ConfigurationFormRequest())
    assert [f.name for f in form.fields] == ["url", "key"]
    assert [(t.name, t.label) for t in form.tests] == [("connection", "Test connection")]
    caps = stub.Capabilities(destination_sdk_pb2.CapabilitiesRequest())
    assert caps.batch_file_format == destination_sdk_pb2.CSV
    ok = stub.Test(common_pb2.TestRequest(name="connection", configuration=config(live_server)))
    assert ok.success
    bad_key = stub.Test(
        common_pb2.TestRequest(configuration={"url": live_server.url, "key": "admin:nope|xyz"})
    )
    assert "(401)" in bad_key.failure or "(403)" in bad_key.failure
    assert "deploy key" in bad_key.failure
    missing = stub.Test(common_pb2.TestRequest(configuration={"url": live_server.url}))
    assert missing.failure == "Missing key"
    unreachable = stub.Test(common_pb2.TestRequest(configuration={"url": "http://127.0.0.1:9/", "key": "k"}))
    assert "could not reach http://127.0.0.1:9/" in unreachable.failure


def test_configuration_errors_are_tasks(stub: Any) -> None:
    resp = stub.DescribeTable(destination_sdk_pb2.DescribeTableRequest(configuration={}, table_name="x"))
    assert resp.task.message == "Missing url"
    resp = stub.CreateTable(
        destination_sdk_pb2.CreateTableRequest(configuration={"url": "not a url", "key": "k"})
    )
    assert resp.task.message == "Invalid url (must be an URL)"


# --- tables ---------------------------------------------------------------------------------------------------


def test_describe_round_trips_create_and_alter(stub: Any, live_server: LiveServer) -> None:
    describe = destination_sdk_pb2.DescribeTableRequest(
        configuration=config(live_server), schema_name="public", table_name="all_types"
    )
    assert stub.DescribeTable(describe).not_found
    cols = [column("id", common_pb2.INT, True)]
    for t in common_pb2.DataType.values():
        if t not in (common_pb2.UNSPECIFIED, common_pb2.INT):
            cols.append(column(f"c_{common_pb2.DataType.Name(t).lower()}", t))
    cols.append(column("_file", common_pb2.STRING))
    decimal = common_pb2.Column(name="amount", type=common_pb2.DECIMAL)
    decimal.params.decimal.precision, decimal.params.decimal.scale = 38, 10
    cols.append(decimal)
    sized = common_pb2.Column(name="label", type=common_pb2.STRING)
    sized.params.string_byte_length = 256
    cols.append(sized)
    cols += [
        column("_fivetran_synced", common_pb2.UTC_DATETIME),
        column("_fivetran_deleted", common_pb2.BOOLEAN),
    ]
    table = common_pb2.Table(name="all_types", columns=cols)
    create(stub, live_server, table)
    create(stub, live_server, table)  # idempotent
    got = stub.DescribeTable(describe).table
    assert got == table
    # AlterTable: the full desired definition; a column it leaves out is kept (drop_columns false).
    altered = common_pb2.Table(name="all_types", columns=[c for c in cols if c.name != "c_xml"])
    altered.columns.append(column("added", common_pb2.LONG))
    resp = stub.AlterTable(
        destination_sdk_pb2.AlterTableRequest(
            configuration=config(live_server), schema_name="public", table=altered
        )
    )
    assert resp.success
    got = stub.DescribeTable(describe).table
    assert {c.name for c in got.columns} == {c.name for c in cols} | {"added"}
    resp = stub.AlterTable(
        destination_sdk_pb2.AlterTableRequest(
            configuration=config(live_server), schema_name="public", table=altered, drop_columns=True
        )
    )
    assert resp.success
    assert stub.DescribeTable(describe).table == altered


def test_create_table_rejects_bad_names(stub: Any, live_server: LiveServer) -> None:
    table = common_pb2.Table(name="t", columns=[column("fivetran", common_pb2.STRING, True)])
    resp = stub.CreateTable(
        destination_sdk_pb2.CreateTableRequest(
            configuration=config(live_server), schema_name="s", table=table
        )
    )
    assert "contains a field named `fivetran`" in resp.task.message
    resp = stub.CreateTable(
        destination_sdk_pb2.CreateTableRequest(
            configuration=config(live_server), schema_name="", table=books()
        )
    )
    assert "isn\u2019t supported by Convex" in resp.task.message


# --- the fixture files (fivetran-destination.md §12) -------------------------------------------------------------


def test_books_end_to_end(stub: Any, live_server: LiveServer, tmp_path: Path) -> None:
    table = books()
    create(stub, live_server, table)
    aes = str(BATCHES / "books_batch_1_insert.csv.zst.aes")
    r = write(
        stub,
        live_server,
        table,
        replace=[aes],
        keys={aes: BOOKS_KEY},
        compression=destination_sdk_pb2.ZSTD,
        encryption=destination_sdk_pb2.AES,
        null="",
        unmodified="",
    )
    assert r.success, r
    r = write(stub, live_server, table, replace=[str(BATCHES / "books_upsert.csv")])
    assert r.success, r
    r = write(stub, live_server, table, update=[str(BATCHES / "books_update.csv")])
    assert r.success, r
    r = write(
        stub, live_server, table, delete=[str(BATCHES / "books_delete.csv")], null=NULL, unmodified=UNMOD
    )
    assert r.success, r
    docs = by_id(table_docs(live_server, "public_books"))
    assert sorted(docs) == sorted(int64(n)["$integer"] for n in (2, 3, 99))
    d3, d2, d99 = (docs[int64(n)["$integer"]] for n in (3, 2, 99))
    assert (d3["title"], d3["magic_number"]) == ("The Hobbit", 15.0)
    assert (d2["title"], d2["magic_number"]) == ("The empire strikes back", 1.0)
    assert (d99["title"], d99["magic_number"]) == (None, 99.0)
    assert d3["fivetran"] == {"deleted": False, "synced": 1707436800000.0}
    assert d99["fivetran"]["synced"] == 1704773419156.0576
    # Soft truncate before 2024-02-09T00:00:00Z: only id 99 (synced earlier) is marked deleted.
    ts = timestamp_pb2.Timestamp(seconds=1707436800)
    resp = stub.Truncate(
        destination_sdk_pb2.TruncateRequest(
            configuration=config(live_server),
            schema_name="public",
            table_name="books",
            synced_column="_fivetran_synced",
            utc_delete_before=ts,
            soft=destination_sdk_pb2.SoftTruncate(deleted_column="_fivetran_deleted"),
        )
    )
    assert resp.success
    docs = by_id(table_docs(live_server, "public_books"))
    assert [docs[int64(n)["$integer"]]["fivetran"]["deleted"] for n in (2, 3, 99)] == [False, False, True]
    # Hard truncate a day later removes ids 2 and 3, and the soft-deleted id 99 too: every row synced before
    # the cutoff, whatever its deleted flag (upstream's server range skipped soft-deleted rows).
    resp = stub.Truncate(
        destination_sdk_pb2.TruncateRequest(
            configuration=config(live_server),
            schema_name="public",
            table_name="books",
            synced_column="_fivetran_synced",
            utc_delete_before=timestamp_pb2.Timestamp(seconds=1707523200),
        )
    )
    assert resp.success
    assert table_docs(live_server, "public_books") == []
    for synced in ("_fivetran_synced", ""):
        resp = stub.Truncate(
            destination_sdk_pb2.TruncateRequest(
                configuration=config(live_server),
                schema_name="public",
                table_name="nothing",
                synced_column=synced,
            )
        )
        assert resp.success
    assert all(t.name != "public_nothing" for t in live_server.deployment.tables())
    resp = stub.Truncate(
        destination_sdk_pb2.TruncateRequest(
            configuration=config(live_server), schema_name="public", table_name="books", synced_column="other"
        )
    )
    assert "`other`" in resp.task.message


@pytest.mark.parametrize("name", ["books_delete.csv", "books_delete.csv.zst", "books_delete.csv.gz"])
def test_delete_file_compressions(stub: Any, live_server: LiveServer, name: str) -> None:
    table = books()
    create(stub, live_server, table)
    assert write(stub, live_server, table, replace=[str(BATCHES / "books_upsert.csv")]).success
    compression = {
        "csv": destination_sdk_pb2.OFF,
        "zst": destination_sdk_pb2.ZSTD,
        "gz": destination_sdk_pb2.GZIP,
    }
    r = write(
        stub,
        live_server,
        table,
        replace=[str(BATCHES / "books_upsert.csv")],
        null="magic-nullvalue",
    )
    r = write(
        stub,
        live_server,
        table,
        delete=[str(BATCHES / name)],
        null=NULL,
        unmodified=UNMOD,
        compression=compression[name.rsplit(".", 1)[-1]],
    )
    assert r.success, r
    assert len(table_docs(live_server, "public_books")) == 3  # id 1 was never there: a no-op


def test_multikey_end_to_end(stub: Any, live_server: LiveServer) -> None:
    table = common_pb2.Table(
        name="multikey_table",
        columns=[
            column("id1", common_pb2.INT, True),
            column("id2", common_pb2.INT, True),
            column("text", common_pb2.STRING),
            column("_fivetran_deleted", common_pb2.BOOLEAN),
            column("_fivetran_synced", common_pb2.UTC_DATETIME),
        ],
    )
    create(stub, live_server, table)
    assert write(stub, live_server, table, replace=[str(BATCHES / "multikey_table_upsert.csv")]).success
    r = write(
        stub,
        live_server,
        table,
        update=[str(BATCHES / "multikey_table_update.csv")],
        null="magic-nullvalue",
        unmodified="magic-unmodified-value",
    )
    assert r.success
    docs = table_docs(live_server, "public_multikey_table")
    assert {(d["id1"], d["text"], d["fivetran"]["deleted"]) for d in docs} == {
        (1.0, "first row", False),
        (2.0, "second row updated", False),
        (3.0, "third row soft deleted - but also this value updated", True),
    }
    assert write(stub, live_server, table, delete=[str(BATCHES / "multikey_table_delete.csv")]).success
    # Our primary-key index has no fivetran.deleted: the soft-deleted (3, 300) is hard-deleted too.
    assert [(d["id1"], d["id2"]) for d in table_docs(live_server, "public_multikey_table")] == [(2.0, 200.0)]


def test_backslash_is_literal(stub: Any, live_server: LiveServer) -> None:
    table = common_pb2.Table(
        name="paths",
        columns=[
            column("path", common_pb2.STRING, True),
            column("_fivetran_synced", common_pb2.UTC_DATETIME),
        ],
    )
    create(stub, live_server, table)
    r = write(
        stub, live_server, table, replace=[str(BATCHES / "backslash.csv")], null="null", unmodified="unmod"
    )
    assert r.success, r
    assert [d["path"] for d in table_docs(live_server, "public_paths")] == ["C:\\Program Files\\"]


# --- failures: a Task, and no half-applied chunk -------------------------------------------------------------------


def _aes(data: bytes, key: bytes) -> bytes:
    iv = secrets.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + enc.update(padder.update(data) + padder.finalize()) + enc.finalize()


def _books_csv(n: int, start: int = 1) -> bytes:
    lines = ["id,title,magic_number,_fivetran_deleted,_fivetran_synced"]
    lines += [f"{i},title {i},{i},false,2024-01-01T00:00:00Z" for i in range(start, start + n)]
    return ("\n".join(lines) + "\n").encode()


def test_bad_files_end_in_a_task_and_apply_nothing(
    stub: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    table = books()
    create(stub, live_server, table)
    key = secrets.token_bytes(32)
    good = _aes(zstandard.ZstdCompressor().compress(_books_csv(700)), key)
    cases: dict[str, tuple[bytes, bytes, str]] = {
        "wrong_key": (good, secrets.token_bytes(32), "key"),
        "bad_padding": (good[:-16] + _aes(b"x", key)[-16:], key, "padding"),
        "truncated": (good[: len(good) // 2 // 16 * 16], key, ""),
        "corrupted": (good[:48] + bytes(64) + good[112:], key, ""),
    }
    for name, (data, use_key, word) in cases.items():
        path = tmp_path / f"{name}.csv.zst.aes"
        path.write_bytes(data)
        r = write(
            stub,
            live_server,
            table,
            replace=[str(path)],
            keys={str(path): use_key},
            compression=destination_sdk_pb2.ZSTD,
            encryption=destination_sdk_pb2.AES,
        )
        assert r.WhichOneof("response") == "task", name
        assert f"{name}.csv.zst.aes" in r.task.message and word in r.task.message, r.task.message
        assert str(tmp_path) not in r.task.message  # the customer's folder is not in messages
    short = tmp_path / "short_key.csv"
    short.write_bytes(_books_csv(1))
    r = write(
        stub,
        live_server,
        table,
        replace=[str(short)],
        keys={str(short): b"123"},
        encryption=destination_sdk_pb2.AES,
    )
    assert r.WhichOneof("response") == "task"
    # Unknown column and type mismatch: the row number and column are named, the value is not.
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("id,secret_column,_fivetran_synced\n1,hunter2-value,2024-01-01T00:00:00Z\n")
    r = write(stub, live_server, table, replace=[str(unknown)])
    assert "secret_column" in r.task.message and "hunter2" not in r.task.message
    mismatch = tmp_path / "mismatch.csv"
    mismatch.write_bytes(_books_csv(3) + b"4,t,not-a-number-xyz,false,2024-01-01T00:00:00Z\n")
    r = write(stub, live_server, table, replace=[str(mismatch)])
    assert "magic_number" in r.task.message and "data row 4" in r.task.message
    assert "not-a-number-xyz" not in r.task.message
    assert table_docs(live_server, "public_books") == []  # the failing chunk was never sent


def test_retried_write_batch_converges(stub: Any, live_server: LiveServer, tmp_path: Path) -> None:
    table = books()
    create(stub, live_server, table)
    replace = tmp_path / "replace.csv"
    replace.write_bytes(_books_csv(1200))
    update = tmp_path / "update.csv"
    update.write_text(
        "id,title,_fivetran_synced,_fivetran_deleted\n5,updated,2024-02-01T00:00:00Z,false\n"
        "5000,missing row,2024-02-01T00:00:00Z,false\n7,unmod,2024-02-01T00:00:00Z,true\n"
    )
    delete = tmp_path / "delete.csv"
    delete.write_text("id,_fivetran_synced\n9,2024-02-01T00:00:00Z\n9999,2024-02-01T00:00:00Z\n")
    kwargs: dict[str, Any] = {"replace": [str(replace)], "update": [str(update)], "delete": [str(delete)]}
    assert write(stub, live_server, table, null="nul", unmodified="unmod", **kwargs).success
    first = table_docs(live_server, "public_books")
    assert write(stub, live_server, table, null="nul", unmodified="unmod", **kwargs).success
    second = table_docs(live_server, "public_books")
    assert first == second
    docs = by_id(second)
    assert len(docs) == 1199
    assert docs[int64(5)["$integer"]]["title"] == "updated"
    assert docs[int64(7)["$integer"]]["title"] == "title 7"
    assert docs[int64(7)["$integer"]]["fivetran"]["deleted"] is True
    assert int64(5000)["$integer"] not in docs


# --- history mode ----------------------------------------------------------------------------------------------------


def test_history_batch(stub: Any, live_server: LiveServer, tmp_path: Path) -> None:
    table = common_pb2.Table(
        name="h",
        columns=[
            column("id", common_pb2.INT, True),
            column("v", common_pb2.STRING),
            column("_fivetran_synced", common_pb2.UTC_DATETIME),
            column("_fivetran_start", common_pb2.UTC_DATETIME, True),
            column("_fivetran_end", common_pb2.UTC_DATETIME),
            column("_fivetran_active", common_pb2.BOOLEAN),
        ],
    )
    create(stub, live_server, table)
    end = "9999-12-31T23:59:59.999Z"

    def batch(**files: list[tuple[str, str]]) -> Any:
        req = destination_sdk_pb2.WriteHistoryBatchRequest(
            configuration=config(live_server),
            schema_name="public",
            table=table,
            file_params=destination_sdk_pb2.FileParams(null_string="NULL", unmodified_string="UNMOD"),
        )
        for kind, (header, body) in files.items():
            path = tmp_path / f"{kind}_{secrets.token_hex(3)}.csv"
            path.write_text(header + "\n" + body + "\n")
            getattr(req, f"{kind}_files").append(str(path))
        return stub.WriteHistoryBatch(req)

    h = "id,v,_fivetran_synced,_fivetran_start,_fivetran_end,_fivetran_active"
    r = batch(
        earliest_start=("id,_fivetran_start", "1,2025-01-01T00:00:00Z\n2,2025-01-01T00:00:00Z"),
        replace=(
            h,
            f"1,a,2025-01-05T00:00:00Z,2025-01-01T00:00:00Z,{end},true\n"
            f"2,b,2025-01-05T00:00:00Z,2025-01-01T00:00:00Z,{end},true",
        ),
    )
    assert r.success, r
    r = batch(
        earliest_start=("id,_fivetran_start", "1,2025-01-02T00:00:00Z"),
        update=(h, f"1,UNMOD,2025-01-06T00:00:00Z,2025-01-02T00:00:00Z,{end},true"),
        delete=("id,_fivetran_end,_fivetran_synced", "2,2025-01-03T00:00:00Z,2025-01-06T00:00:00Z"),
    )
    assert r.success, r
    rows = sorted(
        (
            d["id"],
            d["v"],
            d["fivetran"]["columns"]["fivetran_start"],
            d["fivetran"]["columns"]["fivetran_end"],
            d["fivetran"]["columns"]["fivetran_active"],
        )
        for d in table_docs(live_server, "public_h")
    )
    jan = 1735689600000.0
    day = 86400000.0
    assert rows == [
        (1.0, "a", jan, jan + day - 1, False),
        (1.0, "a", jan + day, 253402300799999.0, True),
        (2.0, "b", jan, jan + 2 * day, False),
    ]
    # Re-sending an earliest_start drops versions from that time on and reopens nothing.
    r = batch(earliest_start=("id,_fivetran_start", "1,2025-01-02T00:00:00Z"))
    assert r.success
    assert len(table_docs(live_server, "public_h")) == 2


# --- the replay harness ----------------------------------------------------------------------------------------------


TESTER_FILES = sorted(p for p in TESTER.rglob("*.json"))


@pytest.mark.parametrize("path", TESTER_FILES, ids=[p.name for p in TESTER_FILES])
def test_replay_tester_inputs(server_factory: ServerFactory, path: Path) -> None:
    live = server_factory.start()
    lines: list[str] = []
    report = replay(str(path), config(live), echo=lines.append)
    assert report.ok, "\n".join(lines)
    spec = json.loads(path.read_text())
    if path.parent.name == "operations_on_nonexistent_records":
        # Every operation aimed at a missing row or table succeeded and left nothing behind: each file's
        # upserts are truncated before its updates/deletes, the others touch keys never written.
        for name in spec.get("create_table", {}):
            assert table_docs(live, f"tester_{name}") == [], name
        assert all(t.name != "tester_nonexistent_table" for t in live.deployment.tables())
    if path.name == "input.json":
        tx = table_docs(live, "tester_transaction")
        versions = sorted(
            (d["id"], d["fivetran"]["columns"]["fivetran_start"], d["fivetran"]["columns"]["fivetran_active"])
            for d in tx
        )
        assert [v[0] for v in versions] == [1.0, 1.0, 1.0, 2.0]
        assert not any(v[2] for v in versions)  # id 2 deleted, id 1 soft-deleted: no active version left
        assert table_docs(live, "tester_campaign") == []
        assert all(d["fivetran"]["deleted"] for d in table_docs(live, "tester_composite_table"))
    if path.name == "schema_migrations_input_dml.json":
        tables = {t.name for t in live.deployment.tables()}
        assert "tester_transaction_renamed" in tables or "tester_transaction_new" in tables


def test_replay_our_inputs_cover_every_operation(server_factory: ServerFactory, tmp_path: Path) -> None:
    live = server_factory.start()
    spec = {
        "create_table": {
            "t": {"columns": {"id": "INT", "name": "STRING", "amount": "DOUBLE"}, "primary_key": ["id"]},
            "nopk": {"columns": {"v": "LONG"}, "primary_key": []},
            "hist": {"columns": {"id": "INT", "s": "STRING"}, "primary_key": ["id"], "history_mode": True},
        },
        "ops": [
            {
                "upsert": {
                    "t": [{"id": i, "name": f"n{i}", "amount": i * 1.5} for i in range(1, 7)],
                    "nopk": [{"_fivetran_id": "a", "v": 9007199254740993}],
                    "hist": [
                        {"id": 1, "s": "x", "op_time": "2025-01-01T00:00:00Z"},
                        {"id": 1, "s": "y", "op_time": "2025-01-02T00:00:00Z"},
                    ],
                }
            },
            {
                "update": {
                    "t": [{"id": 2, "amount": 99}, {"id": 404, "name": "missing"}],
                    "hist": [{"id": 1, "s": "z", "op_time": "2025-01-03T00:00:00Z"}],
                }
            },
            {
                "delete": {
                    "t": [{"id": 3}, {"id": 405}],
                    "hist": [{"id": 1, "op_time": "2025-01-04T00:00:00Z"}],
                }
            },
            {"soft_delete": {"t": [{"id": 4}, {"id": 406}]}},
            {"truncate_before": ["nopk", "missing_table"]},
            {"upsert": {"t": [{"id": 7, "name": "late", "amount": 0}]}},
            {"soft_truncate_before": ["t"]},
        ],
        "describe_table": ["t", "nopk", "hist"],
    }
    path = tmp_path / "ours.json"
    path.write_text(json.dumps(spec))
    lines: list[str] = []
    report = replay(str(path), config(live), echo=lines.append, plain=False)
    assert report.ok, "\n".join(lines)
    t = {d["id"]: d for d in table_docs(live, "tester_t")}
    assert sorted(t) == [1.0, 2.0, 4.0, 5.0, 6.0, 7.0]
    assert (t[2.0]["name"], t[2.0]["amount"]) == ("n2", 99.0)
    assert all(d["fivetran"]["deleted"] for d in t.values())  # soft truncate after the last upsert
    assert table_docs(live, "tester_nopk") == []
    hist = sorted(
        (d["s"], d["fivetran"]["columns"]["fivetran_active"]) for d in table_docs(live, "tester_hist")
    )
    assert hist == [("x", False), ("y", False), ("z", False)]
    described = report.described["t"]
    assert described is not None and {c.name for c in described.columns} == {
        "id",
        "name",
        "amount",
        "_fivetran_synced",
        "_fivetran_deleted",
    }


# --- streaming ---------------------------------------------------------------------------------------------------------


def test_large_encrypted_file_streams_in_flat_memory(tmp_path: Path) -> None:
    import tracemalloc

    from connectors.typemap.fivetran import FivetranDataType
    from fivetran_destination.batch_files import BatchFileParams
    from fivetran_destination.model import ColumnDef, TableDef
    from fivetran_destination.writer import file_rows

    key = secrets.token_bytes(32)
    iv = secrets.token_bytes(16)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    padder = padding.PKCS7(128).padder()
    path = tmp_path / "big.csv.aes"
    blob = "x" * 100_000
    rows = 500
    with open(path, "wb") as f:
        f.write(iv)
        f.write(enc.update(padder.update(b"id,payload,_fivetran_synced\n")))
        for i in range(rows):
            f.write(enc.update(padder.update(f"{i},{blob},2024-01-01T00:00:00Z\n".encode())))
        f.write(enc.update(padder.finalize()) + enc.finalize())
    assert path.stat().st_size > 50_000_000
    table = TableDef(
        "t",
        (
            ColumnDef("id", FivetranDataType.INT, True),
            ColumnDef("payload", FivetranDataType.STRING),
            ColumnDef("_fivetran_synced", FivetranDataType.UTC_DATETIME),
        ),
    )
    params = BatchFileParams(destination_sdk_pb2.OFF, destination_sdk_pb2.AES, "", "\x00")
    tracemalloc.start()
    count = 0
    for doc in file_rows(table, str(path), params, {str(path): key}):
        count += 1
        assert len(doc["payload"]) == 100_000
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == rows
    assert peak < 30_000_000, peak  # bounded buffers (batches cut at 4M characters), never the 50 MB file


def test_deployed_schema_mismatch_is_a_task_with_the_schema_ts_text(
    stub: Any, live_server: LiveServer
) -> None:
    from connectors.schema import parse_database_schema

    schema = parse_database_schema(
        {
            "tables": [
                {
                    "tableName": "public_books",
                    "indexes": [{"indexDescriptor": "by_id", "fields": ["id", "_creationTime"]}],
                    "documentType": {
                        "type": "object",
                        "value": {"id": {"fieldType": {"type": "string"}, "optional": False}},
                    },
                }
            ],
            "schemaValidation": False,
        }
    )
    with live_server.deployment.transaction() as tx:
        tx.set_schema(schema)
    resp = stub.CreateTable(
        destination_sdk_pb2.CreateTableRequest(
            configuration=config(live_server), schema_name="public", table=books()
        )
    )
    message = resp.task.message
    assert "is incorrect in the schema of your Convex destination" in message
    assert (
        "`public_books: defineTable({" in message and '.index("_fivetran_by_primary_key", ["id"])' in message
    )
    other = common_pb2.Table(name="other", columns=[column("k", common_pb2.STRING, True)])
    resp = stub.CreateTable(
        destination_sdk_pb2.CreateTableRequest(
            configuration=config(live_server), schema_name="public", table=other
        )
    )
    assert (
        "is missing in the schema" in resp.task.message
        and "`public_other: defineTable({" in resp.task.message
    )


def test_a_deployment_reset_behind_a_known_url_gets_its_definitions_table_again(
    stub: Any, live_server: LiveServer
) -> None:
    """The process remembers which URLs it prepared; a fresh deployment behind the same URL (a reset, a
    restore, or a test server reusing a port) must still get the definitions table's indexes."""
    from fivetran_destination.metadata import MetadataStore

    with ConvexClient(ClientConfig(live_server.url, live_server.admin_key)) as client:
        MetadataStore._prepared.add(client.config.deployment_url)  # as if prepared for an earlier deployment
    create(stub, live_server, books())
    describe = destination_sdk_pb2.DescribeTableRequest(
        configuration=config(live_server), schema_name="public", table_name="books"
    )
    response = stub.DescribeTable(describe)
    assert response.WhichOneof("response") == "table", response
