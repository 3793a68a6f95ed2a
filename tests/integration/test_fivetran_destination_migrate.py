"""Fivetran destination Migrate and Truncate end to end: our gRPC server over a real channel, writing into our
HTTP server (SQLite and PostgreSQL), asserting the stored documents, the indexes and DescribeTable."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from connectors.batching import BatchLimits
from connectors.client import ClientConfig, ConvexClient
from fivetran_destination.harness import replay
from fivetran_destination.migrate import MAX_TIMESTAMP_MS, MigrationError, documents, migrate
from protos import common_pb2, destination_sdk_pb2
from tests.integration.conftest import LiveServer, ServerFactory
from tests.integration.faults import Fault, FaultProxy

END = "9999-12-31T23:59:59.999Z"
JAN = 1735689600000.0  # 2025-01-01T00:00:00Z
DAY = 86400000.0
STAGING_SUFFIX = "_fivetran_migration"


Rows = tuple[str, Sequence[str]]  # a CSV header and its data lines


@dataclass
class Dest:
    """The destination over gRPC, bound to one live server and a folder for batch files."""

    destination_stub: Any
    live: LiveServer
    folder: Path

    @property
    def configuration(self) -> dict[str, str]:
        return {"url": self.live.url, "key": self.live.admin_key}

    def table(self, name: str, columns: Sequence[tuple[str, int, bool]]) -> common_pb2.Table:
        return common_pb2.Table(
            name=name,
            columns=[common_pb2.Column(name=n, type=t, primary_key=pk) for n, t, pk in columns],  # type: ignore[arg-type]
        )

    def create(self, table: common_pb2.Table) -> None:
        resp = self.destination_stub.CreateTable(
            destination_sdk_pb2.CreateTableRequest(
                configuration=self.configuration, schema_name="public", table=table
            )
        )
        assert resp.WhichOneof("response") == "success", resp

    def _file(self, rows: Rows) -> str:
        path = self.folder / f"{secrets.token_hex(4)}.csv"
        path.write_text(rows[0] + "\n" + "".join(line + "\n" for line in rows[1]))
        return str(path)

    def _params(self) -> destination_sdk_pb2.FileParams:
        return destination_sdk_pb2.FileParams(null_string="NULL", unmodified_string="UNMOD")

    def write(
        self, table: common_pb2.Table, *, replace: Rows | None = None, update: Rows | None = None
    ) -> None:
        req = destination_sdk_pb2.WriteBatchRequest(
            configuration=self.configuration, schema_name="public", table=table, file_params=self._params()
        )
        if replace:
            req.replace_files.append(self._file(replace))
        if update:
            req.update_files.append(self._file(update))
        resp = self.destination_stub.WriteBatch(req)
        assert resp.WhichOneof("response") == "success", resp

    def write_history(self, table: common_pb2.Table, **files: Rows) -> Any:
        req = destination_sdk_pb2.WriteHistoryBatchRequest(
            configuration=self.configuration, schema_name="public", table=table, file_params=self._params()
        )
        for kind, rows in files.items():
            getattr(req, f"{kind}_files").append(self._file(rows))
        return self.destination_stub.WriteHistoryBatch(req)

    def migrate(self, details: destination_sdk_pb2.MigrationDetails) -> Any:
        details.schema = "public"
        return self.destination_stub.Migrate(
            destination_sdk_pb2.MigrateRequest(configuration=self.configuration, details=details)
        )

    def truncate(self, name: str, before: datetime, soft: bool) -> None:
        req = destination_sdk_pb2.TruncateRequest(
            configuration=self.configuration,
            schema_name="public",
            table_name=name,
            synced_column="_fivetran_synced",
            utc_delete_before=timestamp_pb2.Timestamp(seconds=int(before.timestamp())),
        )
        if soft:
            req.soft.deleted_column = "_fivetran_deleted"
        resp = self.destination_stub.Truncate(req)
        assert resp.WhichOneof("response") == "success", resp

    def describe(self, name: str) -> dict[str, tuple[str, bool]] | None:
        resp = self.destination_stub.DescribeTable(
            destination_sdk_pb2.DescribeTableRequest(
                configuration=self.configuration, schema_name="public", table_name=name
            )
        )
        if resp.WhichOneof("response") == "not_found":
            return None
        assert resp.WhichOneof("response") == "table", resp
        return {c.name: (common_pb2.DataType.Name(c.type), c.primary_key) for c in resp.table.columns}

    def docs(self, name: str) -> list[dict[str, Any]]:
        with ConvexClient(ClientConfig(self.live.url, self.live.admin_key)) as client:
            found = list(documents(client, name))
        # By id (or the renamed key), then by content (history versions of one id).
        return sorted(found, key=lambda d: (d.get("id", d.get("key")) or 0.0, json.dumps(d, sort_keys=True)))

    def index_fields(self, name: str, index: str) -> list[str]:
        info = self.live.deployment.index(name, index)
        assert info is not None
        return [f for f in info.fields if f != "_creationTime"]

    def table_names(self) -> set[str]:
        return {t.name for t in self.live.deployment.tables()}


@pytest.fixture
def dest(destination_stub: Any, live_server: LiveServer, tmp_path: Path) -> Dest:
    return Dest(destination_stub, live_server, tmp_path)


def sync_mode(kind: int, soft_deleted_column: str = "", keep_deleted_rows: bool = False) -> Any:
    details = destination_sdk_pb2.MigrationDetails(table="t")
    details.table_sync_mode_migration.type = kind  # type: ignore[assignment]
    if soft_deleted_column:
        details.table_sync_mode_migration.soft_deleted_column = soft_deleted_column
    details.table_sync_mode_migration.keep_deleted_rows = keep_deleted_rows
    return details


def history_of(doc: dict[str, Any]) -> tuple[float, float, bool]:
    cols = doc["fivetran"]["columns"]
    return cols["fivetran_start"], cols["fivetran_end"], cols["fivetran_active"]


ID = ("id", common_pb2.INT, True)
V = ("v", common_pb2.STRING, False)
SYNCED = ("_fivetran_synced", common_pb2.UTC_DATETIME, False)
DELETED = ("_fivetran_deleted", common_pb2.BOOLEAN, False)
HISTORY = [
    ("_fivetran_start", common_pb2.UTC_DATETIME, True),
    ("_fivetran_end", common_pb2.UTC_DATETIME, False),
    ("_fivetran_active", common_pb2.BOOLEAN, False),
]


def soft_table(dest: Dest) -> common_pb2.Table:
    """``public_t``: ids 1-4 synced on Jan 1-4, id 2 soft-deleted."""
    table = dest.table("t", [ID, V, SYNCED, DELETED])
    dest.create(table)
    dest.write(
        table,
        replace=(
            "id,v,_fivetran_synced,_fivetran_deleted",
            [f"{i},v{i},2025-01-0{i}T00:00:00Z,{'true' if i == 2 else 'false'}" for i in range(1, 5)],
        ),
    )
    return table


def history_table(dest: Dest, name: str = "t") -> common_pb2.Table:
    """``public_<name>`` in history mode: id 1 has versions a (Jan 1) and b (Jan 2, active); id 2 one active
    version with v null (Jan 1); id 3 was deleted on Jan 3."""
    table = dest.table(name, [ID, V, SYNCED, *HISTORY])
    dest.create(table)
    h = "id,v,_fivetran_synced,_fivetran_start,_fivetran_end,_fivetran_active"
    r = dest.write_history(
        table,
        earliest_start=("id,_fivetran_start", [f"{i},2025-01-01T00:00:00Z" for i in (1, 2, 3)]),
        replace=(
            h,
            [
                "1,a,2025-01-05T00:00:00Z,2025-01-01T00:00:00Z,2025-01-01T23:59:59.999Z,false",
                f"1,b,2025-01-05T00:00:00Z,2025-01-02T00:00:00Z,{END},true",
                f"2,NULL,2025-01-05T00:00:00Z,2025-01-01T00:00:00Z,{END},true",
                "3,c,2025-01-05T00:00:00Z,2025-01-01T00:00:00Z,2025-01-03T00:00:00Z,false",
            ],
        ),
    )
    assert r.success, r
    return table


# --- sync-mode migrations ---------------------------------------------------------------------------------------


def test_soft_delete_to_live_then_live_to_soft_delete(dest: Dest) -> None:
    soft_table(dest)
    r = dest.migrate(sync_mode(destination_sdk_pb2.SOFT_DELETE_TO_LIVE, "_fivetran_deleted"))
    assert r.WhichOneof("response") == "success", r
    docs = dest.docs("public_t")
    assert [d["id"] for d in docs] == [1.0, 3.0, 4.0]  # the soft-deleted row is gone
    assert all("deleted" not in d["fivetran"] for d in docs)
    assert dest.describe("t") == {
        "id": ("INT", True),
        "v": ("STRING", False),
        "_fivetran_synced": ("UTC_DATETIME", False),
    }
    assert dest.index_fields("public_t", "_fivetran_by_synced") == ["fivetran.synced"]

    r = dest.migrate(sync_mode(destination_sdk_pb2.LIVE_TO_SOFT_DELETE, "_fivetran_deleted"))
    assert r.WhichOneof("response") == "success", r
    docs = dest.docs("public_t")
    assert [(d["id"], d["fivetran"]["deleted"]) for d in docs] == [(1.0, False), (3.0, False), (4.0, False)]
    assert dest.describe("t") == {
        "id": ("INT", True),
        "v": ("STRING", False),
        "_fivetran_synced": ("UTC_DATETIME", False),
        "_fivetran_deleted": ("BOOLEAN", False),
    }
    assert dest.index_fields("public_t", "_fivetran_by_synced") == ["fivetran.deleted", "fivetran.synced"]
    # The table works in its new mode: a soft truncate marks the rows synced before Jan 4.
    dest.truncate("t", datetime(2025, 1, 4, tzinfo=UTC), soft=True)
    assert [(d["id"], d["fivetran"]["deleted"]) for d in dest.docs("public_t")] == [
        (1.0, True),
        (3.0, True),
        (4.0, False),
    ]


def test_soft_delete_mode_changes_with_a_custom_column(dest: Dest) -> None:
    table = dest.table("t", [ID, V, SYNCED, ("is_gone", common_pb2.BOOLEAN, False)])
    dest.create(table)
    dest.write(
        table,
        replace=(
            "id,v,_fivetran_synced,is_gone",
            [
                "1,a,2025-01-01T00:00:00Z,NULL",
                "2,b,2025-01-01T00:00:00Z,true",
                "3,c,2025-01-01T00:00:00Z,false",
            ],
        ),
    )
    r = dest.migrate(sync_mode(destination_sdk_pb2.LIVE_TO_SOFT_DELETE, "is_gone"))
    assert r.WhichOneof("response") == "success", r
    assert [(d["id"], d["is_gone"]) for d in dest.docs("public_t")] == [
        (1.0, False),
        (2.0, True),
        (3.0, False),
    ]
    r = dest.migrate(sync_mode(destination_sdk_pb2.SOFT_DELETE_TO_LIVE, "is_gone"))
    assert r.WhichOneof("response") == "success", r
    # Rows flagged in the custom column are deleted; the column itself stays (only `_fivetran_deleted` goes).
    assert [(d["id"], d["is_gone"]) for d in dest.docs("public_t")] == [(1.0, False), (3.0, False)]
    described = dest.describe("t")
    assert described is not None and described["is_gone"] == ("BOOLEAN", False)


def test_soft_delete_to_history_and_back(dest: Dest) -> None:
    soft_table(dest)
    r = dest.migrate(sync_mode(destination_sdk_pb2.SOFT_DELETE_TO_HISTORY, "_fivetran_deleted"))
    assert r.WhichOneof("response") == "success", r
    docs = {d["id"]: d for d in dest.docs("public_t")}
    latest_synced = JAN + 3 * DAY  # MAX(_fivetran_synced)
    assert {i: history_of(d) for i, d in docs.items()} == {
        1.0: (latest_synced, MAX_TIMESTAMP_MS, True),
        2.0: (0.0, 0.0, False),
        3.0: (latest_synced, MAX_TIMESTAMP_MS, True),
        4.0: (latest_synced, MAX_TIMESTAMP_MS, True),
    }
    assert all("deleted" not in d["fivetran"] for d in docs.values())
    assert dest.describe("t") == {
        "id": ("INT", True),
        "v": ("STRING", False),
        "_fivetran_synced": ("UTC_DATETIME", False),
        "_fivetran_start": ("UTC_DATETIME", True),
        "_fivetran_end": ("UTC_DATETIME", False),
        "_fivetran_active": ("BOOLEAN", False),
    }
    assert dest.index_fields("public_t", "_fivetran_by_primary_key") == [
        "fivetran.columns.fivetran_start",
        "id",
    ]
    assert not any(n.endswith(STAGING_SUFFIX) for n in dest.table_names())
    # Re-sent: nothing changes.
    assert dest.migrate(sync_mode(destination_sdk_pb2.SOFT_DELETE_TO_HISTORY)).success
    assert {d["id"]: d for d in dest.docs("public_t")} == docs

    r = dest.migrate(sync_mode(destination_sdk_pb2.HISTORY_TO_SOFT_DELETE, "_fivetran_deleted"))
    assert r.WhichOneof("response") == "success", r
    back = dest.docs("public_t")
    assert [(d["id"], d["v"], d["fivetran"]["deleted"]) for d in back] == [
        (1.0, "v1", False),
        (2.0, "v2", True),
        (3.0, "v3", False),
        (4.0, "v4", False),
    ]
    assert all("columns" not in d["fivetran"] for d in back)
    assert dest.index_fields("public_t", "_fivetran_by_primary_key") == ["id"]
    assert dest.index_fields("public_t", "_fivetran_by_synced") == ["fivetran.deleted", "fivetran.synced"]
    assert not any(n.endswith(STAGING_SUFFIX) for n in dest.table_names())


def test_live_to_history_then_history_to_live(dest: Dest) -> None:
    table = dest.table("t", [ID, V, SYNCED])
    dest.create(table)
    dest.write(
        table, replace=("id,v,_fivetran_synced", [f"{i},v{i},2025-01-01T00:00:00Z" for i in (1, 2, 3)])
    )
    before = datetime.now(UTC).timestamp() * 1000 - 1
    r = dest.migrate(sync_mode(destination_sdk_pb2.LIVE_TO_HISTORY))
    assert r.WhichOneof("response") == "success", r
    after = datetime.now(UTC).timestamp() * 1000 + 1
    docs = dest.docs("public_t")
    starts = {history_of(d)[0] for d in docs}
    assert len(starts) == 1 and before <= next(iter(starts)) <= after  # every row starts "now"
    assert {history_of(d)[1:] for d in docs} == {(MAX_TIMESTAMP_MS, True)}
    described = dest.describe("t")
    assert described is not None and described["_fivetran_start"] == ("UTC_DATETIME", True)
    # History mode works: a new version of id 1, id 2 deleted.
    history = dest.table("t", [ID, V, SYNCED, *HISTORY])
    h = "id,v,_fivetran_synced,_fivetran_start,_fivetran_end,_fivetran_active"
    later = datetime.fromtimestamp(after / 1000 + 60, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    r = dest.write_history(
        history,
        earliest_start=("id,_fivetran_start", [f"1,{later}"]),
        replace=(h, [f"1,new,{later},{later},{END},true"]),
        delete=("id,_fivetran_end,_fivetran_synced", [f"2,{later},{later}"]),
    )
    assert r.success, r
    assert len(dest.docs("public_t")) == 4

    r = dest.migrate(sync_mode(destination_sdk_pb2.HISTORY_TO_LIVE, keep_deleted_rows=False))
    assert r.WhichOneof("response") == "success", r
    docs = dest.docs("public_t")
    assert [(d["id"], d["v"]) for d in docs] == [(1.0, "new"), (3.0, "v3")]  # the deleted key is gone
    assert all("columns" not in d["fivetran"] and "deleted" not in d["fivetran"] for d in docs)
    assert dest.describe("t") == {
        "id": ("INT", True),
        "v": ("STRING", False),
        "_fivetran_synced": ("UTC_DATETIME", False),
    }
    assert dest.index_fields("public_t", "_fivetran_by_primary_key") == ["id"]
    # Live mode works: an upsert replaces by id.
    dest.write(table, replace=("id,v,_fivetran_synced", ["1,again,2025-02-01T00:00:00Z"]))
    assert [(d["id"], d["v"]) for d in dest.docs("public_t")] == [(1.0, "again"), (3.0, "v3")]


def test_history_to_live_keeping_deleted_rows(dest: Dest) -> None:
    history_table(dest)
    r = dest.migrate(sync_mode(destination_sdk_pb2.HISTORY_TO_LIVE, keep_deleted_rows=True))
    assert r.WhichOneof("response") == "success", r
    # One row per key: the latest version, the deleted key's last version kept.
    assert [(d["id"], d["v"]) for d in dest.docs("public_t")] == [(1.0, "b"), (2.0, None), (3.0, "c")]


# --- history-mode column changes --------------------------------------------------------------------------------


def add_in_history(column: str, default: str, at: str) -> Any:
    details = destination_sdk_pb2.MigrationDetails(table="t")
    op = details.add.add_column_in_history_mode
    op.column, op.column_type, op.default_value, op.operation_timestamp = (
        column,
        common_pb2.STRING,
        default,
        at,
    )
    return details


def drop_in_history(column: str, at: str) -> Any:
    details = destination_sdk_pb2.MigrationDetails(table="t")
    details.drop.drop_column_in_history_mode.column = column
    details.drop.drop_column_in_history_mode.operation_timestamp = at
    return details


def versions(dest: Dest) -> list[tuple[Any, ...]]:
    """(id, v, article, start, end, active) of every version, by id and start."""
    rows = [(d["id"], d.get("v"), d.get("article"), *history_of(d)) for d in dest.docs("public_t")]
    return sorted(rows, key=lambda row: (row[0], row[3]))


def test_add_and_drop_column_in_history_mode(dest: Dest) -> None:
    history_table(dest)
    original = versions(dest)
    # An operation time before an active version's start cannot be recorded: a Task, nothing written.
    r = dest.migrate(add_in_history("article", "x", "2025-01-01T12:00:00Z"))
    assert "operation_timestamp" in r.task.message and "1 active row" in r.task.message, r
    assert versions(dest) == original

    r = dest.migrate(add_in_history("article", "x", "2025-01-10T00:00:00Z"))
    assert r.WhichOneof("response") == "success", r
    t10 = JAN + 9 * DAY
    expected = [
        (1.0, "a", None, JAN, JAN + DAY - 1, False),
        (1.0, "b", None, JAN + DAY, t10 - 1, False),
        (1.0, "b", "x", t10, MAX_TIMESTAMP_MS, True),
        (2.0, None, None, JAN, t10 - 1, False),
        (2.0, None, "x", t10, MAX_TIMESTAMP_MS, True),
        (3.0, "c", None, JAN, JAN + 2 * DAY, False),
    ]
    assert versions(dest) == expected
    described = dest.describe("t")
    assert described is not None and described["article"] == ("STRING", False)
    # Re-sent: the same versions.
    assert dest.migrate(add_in_history("article", "x", "2025-01-10T00:00:00Z")).success
    assert versions(dest) == expected

    r = dest.migrate(drop_in_history("v", "2025-01-11T00:00:00Z"))
    assert r.WhichOneof("response") == "success", r
    t11 = JAN + 10 * DAY
    # Only id 1's active version held a value in `v`: it gets a successor with null; id 2 is left as is.
    assert versions(dest) == [
        (1.0, "a", None, JAN, JAN + DAY - 1, False),
        (1.0, "b", None, JAN + DAY, t10 - 1, False),
        (1.0, "b", "x", t10, t11 - 1, False),
        (1.0, None, "x", t11, MAX_TIMESTAMP_MS, True),
        (2.0, None, None, JAN, t10 - 1, False),
        (2.0, None, "x", t10, MAX_TIMESTAMP_MS, True),
        (3.0, "c", None, JAN, JAN + 2 * DAY, False),
    ]
    described = dest.describe("t")
    assert described is not None and "v" in described  # the column stays, as Fivetran documents


def test_history_mode_column_changes_need_a_history_table(dest: Dest) -> None:
    soft_table(dest)
    r = dest.migrate(add_in_history("article", "x", "2025-01-10T00:00:00Z"))
    assert "is not in history mode" in r.task.message, r
    r = dest.migrate(add_in_history("article", "x", "not a time"))
    assert r.WhichOneof("response") == "task", r


def test_add_column_in_history_mode_on_an_empty_table_adds_the_column(dest: Dest) -> None:
    dest.create(dest.table("t", [ID, V, SYNCED, *HISTORY]))
    assert dest.migrate(add_in_history("article", "x", "2025-01-10T00:00:00Z")).success
    assert dest.docs("public_t") == []
    described = dest.describe("t")
    assert described is not None and described["article"] == ("STRING", False)


# --- primary-key renames and failures -----------------------------------------------------------------------------


def rename_column(from_column: str, to_column: str) -> Any:
    details = destination_sdk_pb2.MigrationDetails(table="t")
    details.rename.rename_column.from_column = from_column
    details.rename.rename_column.to_column = to_column
    return details


def test_rename_primary_key_column(dest: Dest) -> None:
    soft_table(dest)
    r = dest.migrate(rename_column("id", "key"))
    assert r.WhichOneof("response") == "success", r
    docs = dest.docs("public_t")
    assert [d["key"] for d in docs] == [1.0, 2.0, 3.0, 4.0] and all("id" not in d for d in docs)
    described = dest.describe("t")
    assert described is not None and described["key"] == ("INT", True) and "id" not in described
    assert dest.index_fields("public_t", "_fivetran_by_primary_key") == ["key"]
    assert not any(n.endswith(STAGING_SUFFIX) for n in dest.table_names())
    # Re-sent: success, nothing changes; writes go by the new key.
    assert dest.migrate(rename_column("id", "key")).success
    renamed = dest.table("t", [("key", common_pb2.INT, True), V, SYNCED, DELETED])
    dest.write(
        renamed, replace=("key,v,_fivetran_synced,_fivetran_deleted", ["1,one,2025-02-01T00:00:00Z,false"])
    )
    assert [(d["key"], d["v"]) for d in dest.docs("public_t")][:2] == [(1.0, "one"), (2.0, "v2")]
    assert len(dest.docs("public_t")) == 4


def _first_after(lines: list[str], first: str, then: str) -> int:
    start = next(i for i, line in enumerate(lines) if first in line)
    return next(i for i, line in enumerate(lines) if i > start and then in line)


@pytest.mark.parametrize("failing_step", [1, 2])
def test_a_key_change_stopped_halfway_keeps_every_row_and_a_resend_completes_it(
    dest: Dest, failing_step: int
) -> None:
    """SOFT_DELETE_TO_HISTORY with the deployment failing from step 1 (the first rewrite request) or step 2
    (the index switch) on: every row stays, the Task names the step, and re-sending converges."""
    soft_table(dest)
    original = dest.docs("public_t")
    details = sync_mode(destination_sdk_pb2.SOFT_DELETE_TO_HISTORY, "_fivetran_deleted")
    details.schema = "public"
    limits = BatchLimits.fivetran_operations()
    # Learn the request sequence on an identical table (through a proxy, so the same requests happen).
    with (
        FaultProxy(dest.live.url) as proxy,
        ConvexClient(ClientConfig(proxy.url, dest.live.admin_key, max_retries=0)) as client,
    ):
        dry = destination_sdk_pb2.MigrationDetails()
        dry.CopyFrom(details)
        copy = destination_sdk_pb2.MigrationDetails(schema="public")
        copy.copy.copy_table.from_table, copy.copy.copy_table.to_table = "t", "u"
        assert migrate(client, copy, limits)
        lines_before = len(proxy.request_lines)
        dry.table = "u"
        assert migrate(client, dry, limits)
        lines = proxy.request_lines[lines_before:]
    step1 = next(i for i, line in enumerate(lines) if "apply_fivetran_operations" in line)
    # Step 1 writes the rows; the next fivetran_create_table is the index switch of step 2.
    fail_at = (
        step1
        if failing_step == 1
        else _first_after(lines, "apply_fivetran_operations", "fivetran_create_table")
    )
    faults = [Fault.PASS] * fail_at + [Fault.BAD_GATEWAY] * 50
    with (
        FaultProxy(dest.live.url, faults) as proxy,
        ConvexClient(ClientConfig(proxy.url, dest.live.admin_key, max_retries=0)) as client,
        pytest.raises(MigrationError) as info,
    ):
        migrate(client, details, limits)
    message = str(info.value)
    assert f"stopped at step {failing_step}" in message and "Re-sending the migration completes it" in message
    assert dest.live.admin_key not in message
    after = dest.docs("public_t")
    assert [d["id"] for d in after] == [d["id"] for d in original]  # every row is still there
    described = dest.describe("t")
    assert described is not None and "_fivetran_deleted" in described  # still the old definition
    # Re-sent through gRPC: the same result as the uninterrupted run on the copy.
    r = dest.migrate(sync_mode(destination_sdk_pb2.SOFT_DELETE_TO_HISTORY, "_fivetran_deleted"))
    assert r.WhichOneof("response") == "success", r
    assert dest.docs("public_t") == dest.docs("public_u")
    assert dest.describe("t") == dest.describe("u")


# --- truncate ----------------------------------------------------------------------------------------------------


def test_hard_truncate_removes_soft_deleted_rows_too(dest: Dest) -> None:
    table = soft_table(dest)
    # Row 3 soft-deleted too; rows 1-3 synced before Jan 3 12:00, row 4 after.
    dest.write(table, update=("id,_fivetran_synced,_fivetran_deleted", ["3,2025-01-03T00:00:00Z,true"]))
    dest.truncate("t", datetime(2025, 1, 3, 12, tzinfo=UTC), soft=True)
    assert [(d["id"], d["fivetran"]["deleted"]) for d in dest.docs("public_t")] == [
        (1.0, True),
        (2.0, True),
        (3.0, True),
        (4.0, False),
    ]
    dest.truncate("t", datetime(2025, 1, 3, 12, tzinfo=UTC), soft=False)
    assert [d["id"] for d in dest.docs("public_t")] == [4.0]
    # A truncate of a table that does not exist is a success.
    dest.truncate("missing", datetime(2025, 1, 3, tzinfo=UTC), soft=False)
    dest.truncate("missing", datetime(2025, 1, 3, tzinfo=UTC), soft=True)
    assert "public_missing" not in dest.table_names()


# --- WriteHistoryBatch retried ----------------------------------------------------------------------------------------


def test_retried_write_history_batch_converges(dest: Dest) -> None:
    """A WriteHistoryBatch re-sent after a failure — after it applied fully, or after only its first steps
    were applied — leaves the same versions as one run."""
    h = "id,v,_fivetran_synced,_fivetran_start,_fivetran_end,_fivetran_active"
    files: dict[str, Rows] = {
        "earliest_start": ("id,_fivetran_start", ["1,2025-01-05T00:00:00Z", "2,2025-01-05T00:00:00Z"]),
        "replace": (h, [f"2,two,2025-01-06T00:00:00Z,2025-01-05T00:00:00Z,{END},true"]),
        "update": (h, [f"1,UNMOD,2025-01-06T00:00:00Z,2025-01-05T00:00:00Z,{END},true"]),
        "delete": ("id,_fivetran_end,_fivetran_synced", ["1,2025-01-07T00:00:00Z,2025-01-07T00:00:00Z"]),
    }
    table = history_table(dest, "t")
    assert dest.write_history(table, **files).success
    once = dest.docs("public_t")
    id1 = sorted((d.get("v"), *history_of(d)) for d in once if d["id"] == 1.0)
    t5, t7 = JAN + 4 * DAY, JAN + 6 * DAY
    assert id1 == [("a", JAN, JAN + DAY - 1, False), ("b", JAN + DAY, t5 - 1, False), ("b", t5, t7, False)]
    assert dest.write_history(table, **files).success
    assert dest.docs("public_t") == once
    # Partial first runs on twin tables (only the first steps' files arrived), then the whole batch.
    for name, parts in (("u", ("earliest_start",)), ("w", ("earliest_start", "replace", "update"))):
        twin = history_table(dest, name)
        assert dest.write_history(twin, **{k: files[k] for k in parts}).success
        assert dest.write_history(twin, **files).success
        assert dest.docs(f"public_{name}") == once, name


# --- the replay harness ------------------------------------------------------------------------------------------


def test_replay_every_sync_mode_migration(server_factory: ServerFactory, tmp_path: Path) -> None:
    """Our tester-format input with every schema_migration name of the tester's README (sync modes,
    history-mode columns) and a primary-key rename, replayed through the harness."""
    live = server_factory.start()
    row_ops = [
        {
            "upsert": {
                "live": [{"id": i, "v": f"v{i}"} for i in (1, 2, 3)],
                "soft": [{"id": i, "v": f"s{i}"} for i in (1, 2, 3)],
                "hist": [
                    {"id": 1, "v": "a", "op_time": "2025-01-01T00:00:00Z"},
                    {"id": 1, "v": "b", "op_time": "2025-01-02T00:00:00Z"},
                    {"id": 2, "v": "c", "op_time": "2025-01-01T00:00:00Z"},
                ],
            }
        },
        {"soft_delete": {"soft": [{"id": 2}]}},
    ]
    spec = {
        "create_table": {
            "live": {"columns": {"id": "INT", "v": "STRING"}, "primary_key": ["id"]},
            "soft": {"columns": {"id": "INT", "v": "STRING"}, "primary_key": ["id"]},
            "hist": {"columns": {"id": "INT", "v": "STRING"}, "primary_key": ["id"], "history_mode": True},
        },
        "ops": row_ops,
        "schema_migration": [
            {
                "add_column_in_history_mode": [
                    {
                        "table": "hist",
                        "column": "article",
                        "data_type": "STRING",
                        "default_value": "x",
                        "operation_timestamp": "2025-01-10T00:00:00Z",
                    }
                ],
                "drop_column_in_history_mode": [
                    {"table": "hist", "column": "v", "operation_timestamp": "2025-01-11T00:00:00Z"}
                ],
                "migrate_history_to_live": [{"table": "hist", "keep_deleted_rows": False}],
                "migrate_soft_delete_to_live": [{"table": "soft", "deleted_column": "_fivetran_deleted"}],
                "migrate_live_to_history": [{"table": "live"}],
            },
            {
                "migrate_history_to_soft_delete": [{"table": "live", "deleted_column": "_fivetran_deleted"}],
                "migrate_live_to_soft_delete": [{"table": "hist", "deleted_column": "_fivetran_deleted"}],
                "rename_column": [{"table": "soft", "from_column": "id", "to_column": "key"}],
            },
        ],
        "describe_table": ["live", "soft", "hist"],
    }
    path = tmp_path / "sync_modes.json"
    path.write_text(json.dumps(spec))
    lines: list[str] = []
    report = replay(str(path), {"url": live.url, "key": live.admin_key}, echo=lines.append)
    assert report.ok, "\n".join(lines)
    assert not any(line.endswith("unsupported") for line in lines), "\n".join(lines)
    dest = Dest(None, live, tmp_path)
    # hist: history -> live (the latest active version per id: the ones with v dropped to null) -> soft delete.
    assert [
        (d["id"], d.get("v"), d["article"], d["fivetran"]["deleted"]) for d in dest.docs("tester_hist")
    ] == [
        (1.0, None, "x", False),
        (2.0, None, "x", False),
    ]
    # soft: the soft-deleted row is gone; the key column renamed.
    assert [(d["key"], d["v"]) for d in dest.docs("tester_soft")] == [(1.0, "s1"), (3.0, "s3")]
    # live: live -> history -> soft delete: every row, none deleted, no history fields.
    live_docs = dest.docs("tester_live")
    assert [(d["id"], d["fivetran"]["deleted"]) for d in live_docs] == [
        (1.0, False),
        (2.0, False),
        (3.0, False),
    ]
    assert all("columns" not in d["fivetran"] for d in live_docs)
    described = {name: {c.name for c in t.columns} for name, t in report.described.items() if t is not None}
    assert described["soft"] == {"key", "v", "_fivetran_synced"}
    assert described["hist"] == {"id", "v", "article", "_fivetran_synced", "_fivetran_deleted"}
    assert described["live"] == {"id", "v", "_fivetran_synced", "_fivetran_deleted"}
    assert not any(t.name.endswith(STAGING_SUFFIX) for t in live.deployment.tables())
