"""``convex-connectors fivetran-sync``: run the connector the way Fivetran does, into a local warehouse.

The connector's gRPC server is started in this process on a free loopback port; a real gRPC client calls
Test, Schema and Update on it (the same messages Fivetran exchanges), and ``warehouse.Warehouse`` applies
them with Fivetran's semantics. At every checkpoint the warehouse commits, then the checkpoint's state is
written to the state file (atomically), so a re-run continues from there; records after the last checkpoint
are re-sent and re-applied as idempotent upserts.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import grpc

from connectors.constants import FIVETRAN_GRPC_MAX_MESSAGE_BYTES
from connectors.fivetran.config import INVALID_URL, KEY_KEY, NOT_A_ROOT_URL, URL_KEY, URL_WITHOUT_HOST
from connectors.fivetran.jsonlog import register_secret
from connectors.fivetran.server import ServerSettings, create_server
from connectors.sync import fivetran_state
from connectors.typemap.fivetran import FivetranDataType
from fivetran_source.records import EXPIRED_CURSOR_HINT
from fivetran_source.service import SourceConnector, SourceOptions, register
from fivetran_source.warehouse import Cell, Warehouse, WarehouseError, warehouse_kind
from protos import common_pb2, connector_sdk_pb2, connector_sdk_pb2_grpc

log = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
CHANNEL_OPTIONS: Final = (
    ("grpc.max_send_message_length", FIVETRAN_GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", FIVETRAN_GRPC_MAX_MESSAGE_BYTES),
)
_PLAIN_PROGRESS_EVERY_S: Final = 2.0


class RunnerError(RuntimeError):
    """The sync stopped; the text is what the connector said (its Task or Test failure)."""


@dataclass
class SyncSummary:
    rows: dict[str, int] = field(default_factory=dict)
    deletes: int = 0
    truncates: int = 0
    checkpoints: int = 0
    state_json: str | None = None
    elapsed_s: float = 0.0
    warehouse: str = ""
    state_path: str = ""

    def describe(self) -> str:
        total = sum(self.rows.values())
        phase = "deltas" if self.state_json and "DeltaUpdates" in self.state_json else "initial sync"
        lines = [
            f"Synced {total:,} rows, {self.deletes:,} deletes, {self.truncates} truncates in "
            f"{self.elapsed_s:.1f} s into {self.warehouse} ({self.checkpoints} checkpoints; next run: {phase}, "
            f"state in {self.state_path})"
        ]
        lines += [f"  {table}: {count:,} rows" for table, count in sorted(self.rows.items())]
        return "\n".join(lines)


def decode_value(value: common_pb2.ValueType) -> Cell:
    member = value.WhichOneof("inner")
    if member is None:
        return Cell("null", None)
    if member == "utc_datetime":
        ts = value.utc_datetime
        # Microsecond precision, as the warehouses store it.
        return Cell(member, datetime.fromtimestamp(ts.seconds, UTC).replace(microsecond=ts.nanos // 1000))
    return Cell(member, getattr(value, member))


def read_state(path: Path, warehouse: Path) -> str | None:
    """The state file's text, checked before the connector sees it (its errors speak of Fivetran's UI)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunnerError(f"Cannot read the state file {path}: {exc}") from None
    if not text:
        return None
    try:
        fivetran_state.parse(text)
    except fivetran_state.FivetranStateError as exc:
        problem = str(exc).replace(fivetran_state.RESYNC_HINT, "").strip()
        raise RunnerError(
            f"The state file {path} cannot be used: {problem} Delete it (or pass --state with a new file) to "
            f"sync everything again: the rows already in {warehouse} are upserted again, nothing is lost."
        ) from None
    return text


@contextlib.contextmanager
def warehouse_lock(warehouse: Path) -> Iterator[None]:
    """One runner per warehouse: an flock on ``<warehouse>.lock`` (released by the OS if the process dies).

    Two runners would interleave upserts and overwrite each other's state file; DuckDB also refuses a
    second writer, SQLite fails it with "database is locked" mid-sync."""
    lock_path = warehouse.with_name(warehouse.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise RunnerError(
            f"Cannot create {lock_path} ({exc.strerror or exc}): check that the warehouse's directory exists "
            "and is writable."
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunnerError(
                f"Another fivetran-sync (process {holder}) is writing to {warehouse}: wait for it to finish, "
                "or sync into another --warehouse."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


def write_state(path: Path, state_json: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(state_json)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Progress:
    """tqdm bars per table on a terminal (rows/s each), else a plain line every few seconds."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self.last_line = self.started

    def add(self, table: str, n: int) -> None:
        self.counts[table] = self.counts.get(table, 0) + n
        if self.enabled:
            bar = self.bars.get(table)
            if bar is None:
                from tqdm import tqdm

                bar = self.bars[table] = tqdm(
                    desc=table, unit=" rows", position=len(self.bars), leave=True, dynamic_ncols=True
                )
            bar.update(n)

    def checkpoint(self) -> None:
        now = time.monotonic()
        if self.enabled or now - self.last_line < _PLAIN_PROGRESS_EVERY_S:
            return
        self.last_line = now
        elapsed = max(now - self.started, 1e-9)
        parts = ", ".join(f"{t}: {c:,} rows ({c / elapsed:,.0f}/s)" for t, c in sorted(self.counts.items()))
        print(f"fivetran-sync: {parts}", file=sys.stderr, flush=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class SyncRunner:
    def __init__(
        self,
        *,
        url: str,
        key: str,
        warehouse: Path,
        state_path: Path | None = None,
        single_records: bool = False,
        progress: bool = False,
        tables: tuple[str, ...] = (),
        components: tuple[str, ...] = (),
    ) -> None:
        register_secret(key)
        self.configuration = {URL_KEY: url, KEY_KEY: key}
        self.warehouse_path = warehouse
        self.state_path = state_path or warehouse.with_name(warehouse.name + ".state.json")
        self.single_records = single_records
        self.progress = progress
        self.tables = tables
        self.components = components

    def run(self) -> SyncSummary:
        try:
            warehouse_kind(self.warehouse_path)
        except WarehouseError as exc:
            raise RunnerError(str(exc)) from None
        with warehouse_lock(self.warehouse_path):
            return self._serve_and_run()

    def _serve_and_run(self) -> SyncSummary:
        connector = SourceConnector(SourceOptions(single_records=self.single_records))
        bound = create_server(
            ServerSettings(port=0, max_workers=4, grace_seconds=5), register(connector), (LOOPBACK,)
        )
        bound.server.start()
        channel = grpc.insecure_channel(f"{LOOPBACK}:{bound.port}", options=list(CHANNEL_OPTIONS))
        try:
            stub = connector_sdk_pb2_grpc.SourceConnectorStub(channel)
            return self._run(stub)
        finally:
            channel.close()
            bound.server.stop(None).wait()

    def _run(self, stub: connector_sdk_pb2_grpc.SourceConnectorStub) -> SyncSummary:
        started = time.monotonic()
        test = stub.Test(common_pb2.TestRequest(name="connection", configuration=self.configuration))
        if test.WhichOneof("response") == "failure":
            hint = ""
            if test.failure in (INVALID_URL, URL_WITHOUT_HOST, NOT_A_ROOT_URL):
                url = self.configuration[URL_KEY]
                hint = (
                    f" --url was {url!r}: give the deployment's root URL, http:// or https:// with no path, "
                    "e.g. http://127.0.0.1:3210 or https://happy-otter-123.convex.cloud."
                )
            raise RunnerError(f"Connection test failed: {test.failure}{hint}")
        try:
            schema = stub.Schema(connector_sdk_pb2.SchemaRequest(configuration=self.configuration))
        except grpc.RpcError as exc:
            raise RunnerError(f"Schema failed: {exc.details()}") from None
        declared: dict[tuple[str, str], dict[str, FivetranDataType]] = {
            (s.name, t.name): {c.name: FivetranDataType(c.type) for c in t.columns}
            for s in schema.with_schema.schemas
            for t in s.tables
        }
        try:
            warehouse = Warehouse(self.warehouse_path, declared)
        except WarehouseError as exc:
            raise RunnerError(str(exc)) from None
        summary = SyncSummary(warehouse=str(self.warehouse_path), state_path=str(self.state_path))
        progress = _Progress(self.progress)
        request = connector_sdk_pb2.UpdateRequest(configuration=self.configuration)
        chosen = update_selection(schema.with_schema, self.tables, self.components)
        if chosen is not None:
            request.selection.CopyFrom(chosen)
        state_json = read_state(self.state_path, self.warehouse_path)
        if state_json is not None:
            request.state_json = state_json
        try:
            for response in stub.Update(request):
                which = response.WhichOneof("operation")
                if which == "records":
                    for record in response.records.records:
                        self._apply(warehouse, record, summary, progress)
                elif which == "record":
                    self._apply(warehouse, response.record, summary, progress)
                elif which == "checkpoint":
                    warehouse.commit()
                    write_state(self.state_path, response.checkpoint.state_json)
                    summary.state_json = response.checkpoint.state_json
                    summary.checkpoints += 1
                    progress.checkpoint()
                elif which == "warning":
                    print(f"fivetran-sync: warning: {response.warning.message}", file=sys.stderr)
                elif which == "task":
                    raise RunnerError(self._task_text(response.task.message))
        except grpc.RpcError as exc:
            raise RunnerError(f"Update failed: {exc.details()}") from None
        except (sqlite3.Error, duckdb_error()) as exc:
            # The database's text may quote row values: name the failure, not the data.
            raise RunnerError(
                f"The warehouse {self.warehouse_path} refused a write ({type(exc).__module__}."
                f"{type(exc).__name__}); everything up to the last checkpoint is kept and a re-run continues "
                "from there. Check the disk (space, permissions) or sync into a new --warehouse."
            ) from None
        finally:
            progress.close()
            warehouse.close()
        summary.rows = dict(progress.counts)
        summary.elapsed_s = time.monotonic() - started
        return summary

    def _task_text(self, message: str) -> str:
        if EXPIRED_CURSOR_HINT in message:
            # A re-run would stop the same way; Fivetran's "historical re-sync" is a fresh state here.
            local = (
                f"Delete the state file {self.state_path} to sync everything again: the first sync "
                f"re-upserts every row into {self.warehouse_path} and marks the rows deleted since as "
                "_fivetran_deleted."
            )
            return f"The sync stopped: {message.replace(EXPIRED_CURSOR_HINT, local)}"
        return (
            f"The sync stopped: {message} (everything up to the last checkpoint is in {self.warehouse_path}; "
            "run again to continue)"
        )

    @staticmethod
    def _apply(warehouse: Warehouse, record: Any, summary: SyncSummary, progress: _Progress) -> None:
        schema, table = record.schema_name, record.table_name
        if record.type == common_pb2.UPSERT:
            warehouse.upsert(schema, table, {k: decode_value(v) for k, v in record.data.items()})
            progress.add(f"{schema}.{table}", 1)
        elif record.type == common_pb2.DELETE:
            warehouse.delete(schema, table, record.data["_id"].string)
            summary.deletes += 1
        elif record.type == common_pb2.TRUNCATE:
            warehouse.truncate(schema, table)
            summary.truncates += 1
        else:
            raise RunnerError(f"unexpected record type {record.type} (this connector sends no UPDATE)")


def update_selection(
    schemas: common_pb2.SchemaList, tables: tuple[str, ...], components: tuple[str, ...]
) -> connector_sdk_pb2.Selection | None:
    """The ``UpdateRequest.selection`` Fivetran would send for a connection set to sync only ``components``
    (Fivetran schema names: ``app`` is the root component) and, in them, only ``tables`` (``TABLE``, in every
    chosen component, or ``SCHEMA.TABLE``). None when neither is given: everything, as without a selection.

    Like Fivetran's, a selection is only what the next Update sends: a table added to it later is synced
    from then on, not backfilled (a re-sync from an empty state is)."""
    if not tables and not components:
        return None
    by_schema = {s.name: [t.name for t in s.tables] for s in schemas.schemas}
    unknown = [c for c in components if c not in by_schema]
    if unknown:
        raise RunnerError(
            f"No component {', '.join(map(repr, unknown))} in the deployment; its components are "
            f"{', '.join(map(repr, sorted(by_schema)))} (`app` is the root component)"
        )
    chosen_schemas = set(components) if components else set(by_schema)
    wanted: dict[str, set[str]] = {name: set() for name in chosen_schemas}
    for entry in tables:
        schema_name, dot, table = entry.rpartition(".")
        places = [schema_name] if dot else sorted(chosen_schemas)
        found = [p for p in places if p in chosen_schemas and table in by_schema.get(p, ())]
        if not found:
            where = f"component {schema_name!r}" if dot else "the chosen components"
            raise RunnerError(f"No table {table!r} in {where} (tables are given as TABLE or COMPONENT.TABLE)")
        for place in found:
            wanted[place].add(table)
    return connector_sdk_pb2.Selection(
        with_schema=connector_sdk_pb2.TablesWithSchema(
            include_new_schemas=False,  # a selection names what to sync: nothing that appears later
            schemas=[
                connector_sdk_pb2.SchemaSelection(
                    schema_name=name,
                    included=name in chosen_schemas and (not tables or bool(wanted.get(name))),
                    include_new_tables=not tables,
                    tables=[
                        connector_sdk_pb2.TableSelection(
                            table_name=table,
                            included=not tables or table in wanted.get(name, set()),
                            include_new_columns=True,
                        )
                        for table in table_names
                    ],
                )
                for name, table_names in by_schema.items()
            ],
        )
    )


def duckdb_error() -> type[Exception]:
    """``duckdb.Error`` (imported only when needed: SQLite warehouses do not need DuckDB)."""
    import duckdb

    return duckdb.Error


def records_of(responses: Iterator[connector_sdk_pb2.UpdateResponse]) -> Iterator[Any]:
    """Every record of a stream of responses, in order (``record`` and ``records`` alike)."""
    for response in responses:
        which = response.WhichOneof("operation")
        if which == "records":
            yield from response.records.records
        elif which == "record":
            yield response.record
