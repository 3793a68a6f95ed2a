"""Replay harness: drive the destination with a Fivetran destination-tester input JSON (fivetran-sdk.md §12.2-12.3).

Over a real gRPC channel, like Fivetran's tester: ConfigurationForm and Test; DescribeTable/CreateTable (with the
system columns the tester adds) and AlterTable; then every op in order — each record op becomes real batch files
(CSV with shuffled columns, zstd, AES-256-CBC with a random key and IV, random sentinels) and one WriteBatch (or
WriteHistoryBatch for history-mode tables); truncates become Truncate; ``schema_migration`` entries become
AlterTable/Migrate. Each step is reported; at the end every table is described and its documents printed.
"""

from __future__ import annotations

import base64
import decimal
import json
import os
import random
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import grpc
import zstandard
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from google.protobuf import timestamp_pb2

from connectors.constants import (
    FIVETRAN_ACTIVE_COLUMN,
    FIVETRAN_DELETED_COLUMN,
    FIVETRAN_END_COLUMN,
    FIVETRAN_ID_COLUMN,
    FIVETRAN_START_COLUMN,
    FIVETRAN_SYNCED_COLUMN,
)
from connectors.fivetran.server import ServerSettings, create_server
from protos import common_pb2, destination_sdk_pb2, destination_sdk_pb2_grpc

MAX_END: Final = "9999-12-31T23:59:59.999Z"


class HarnessError(Exception):
    """The input file cannot be replayed; ``str()`` says why."""


@dataclass
class Step:
    label: str
    ok: bool
    message: str = ""


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    described: dict[str, common_pb2.Table | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


@dataclass
class _Table:
    name: str
    columns: dict[str, common_pb2.DataType]
    params: dict[str, common_pb2.DataTypeParams]
    primary_key: list[str]
    history: bool

    def proto(self) -> common_pb2.Table:
        cols = []
        for name, t in self.columns.items():
            col = common_pb2.Column(name=name, type=t, primary_key=name in self.primary_key)
            if name in self.params:
                col.params.CopyFrom(self.params[name])
            cols.append(col)
        return common_pb2.Table(name=self.name, columns=cols)


def _table_def(name: str, raw: Mapping[str, Any]) -> _Table:
    columns: dict[str, Any] = {}
    params: dict[str, common_pb2.DataTypeParams] = {}
    for col, spec in raw.get("columns", {}).items():
        if isinstance(spec, Mapping):
            columns[col] = common_pb2.DataType.Value(str(spec["type"]))
            if "precision" in spec:
                params[col] = common_pb2.DataTypeParams(
                    decimal=common_pb2.DecimalParams(
                        precision=int(spec["precision"]), scale=int(spec.get("scale", 0))
                    )
                )
        else:
            columns[col] = common_pb2.DataType.Value(str(spec))
    pk = list(raw.get("primary_key") or [])
    history = bool(raw.get("history_mode", False))
    columns[FIVETRAN_SYNCED_COLUMN] = common_pb2.UTC_DATETIME
    if not pk:
        columns[FIVETRAN_ID_COLUMN] = common_pb2.STRING
        pk = [FIVETRAN_ID_COLUMN]
    if history:
        columns[FIVETRAN_START_COLUMN] = common_pb2.UTC_DATETIME
        columns[FIVETRAN_END_COLUMN] = common_pb2.UTC_DATETIME
        columns[FIVETRAN_ACTIVE_COLUMN] = common_pb2.BOOLEAN
        pk = [*pk, FIVETRAN_START_COLUMN]
    else:
        columns[FIVETRAN_DELETED_COLUMN] = common_pb2.BOOLEAN
    return _Table(name, columns, params, pk, history)


def _cell(value: Any, data_type: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if data_type == common_pb2.BINARY and isinstance(value, str):
        return base64.b64encode(value.encode()).decode()
    if data_type == common_pb2.JSON and not isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, decimal.Decimal):
        if (
            data_type in (common_pb2.INT, common_pb2.SHORT, common_pb2.LONG)
            and value == value.to_integral_value()
        ):
            return str(int(value))
        return format(value, "f") if data_type == common_pb2.DECIMAL else str(value)
    return str(value)


def _instant(text: str) -> str:
    """An ISO instant normalized to the sortable form ``_iso`` writes."""
    return _iso(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class _Files:
    """Writes batch files into a temporary folder: CSV, optionally zstd + AES-256-CBC."""

    def __init__(self, folder: str, plain: bool, rng: random.Random) -> None:
        self.folder = folder
        self.plain = plain
        self.rng = rng
        self.keys: dict[str, bytes] = {}
        self.count = 0
        self.null = "null-" + secrets.token_hex(6)
        self.unmodified = "unmod-" + secrets.token_hex(6)

    def params(self) -> destination_sdk_pb2.FileParams:
        return destination_sdk_pb2.FileParams(
            compression=destination_sdk_pb2.OFF if self.plain else destination_sdk_pb2.ZSTD,
            encryption=destination_sdk_pb2.NONE if self.plain else destination_sdk_pb2.AES,
            null_string=self.null,
            unmodified_string=self.unmodified,
        )

    def write(self, label: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        data = buffer.getvalue().encode()
        self.count += 1
        name = f"{self.count:04d}_{label}.csv"
        if not self.plain:
            data = zstandard.ZstdCompressor().compress(data)
            key, iv = secrets.token_bytes(32), secrets.token_bytes(16)
            padder = padding.PKCS7(128).padder()
            encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            data = iv + encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()
            name += ".zst.aes"
        path = os.path.join(self.folder, name)
        with open(path, "wb") as f:
            f.write(data)
        if not self.plain:
            self.keys[path] = key
        return path


class Harness:
    def __init__(
        self,
        stub: destination_sdk_pb2_grpc.DestinationConnectorStub,
        configuration: Mapping[str, str],
        folder: str,
        *,
        schema: str = "tester",
        plain: bool = False,
        seed: int | None = None,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.stub = stub
        self.configuration = dict(configuration)
        self.schema = schema
        self.rng = random.Random(seed)
        self.files = _Files(folder, plain, self.rng)
        self.echo = echo
        self.tables: dict[str, _Table] = {}
        self.report = Report()
        self._clock = datetime.now(UTC)

    # --- reporting -----------------------------------------------------------------------------------

    def _step(self, label: str, response: Any) -> bool:
        kind = response.WhichOneof("response") if hasattr(response, "WhichOneof") else None
        if kind == "task":
            step = Step(label, False, response.task.message)
        elif kind == "warning":
            step = Step(label, True, "warning: " + response.warning.message)
        elif kind == "unsupported":
            step = Step(label, True, "unsupported")
        elif kind == "not_found":
            step = Step(label, True, "not found")
        else:
            step = Step(label, True)
        self.report.steps.append(step)
        self.echo(f"{'ok  ' if step.ok else 'FAIL'} {label}{': ' + step.message if step.message else ''}")
        return step.ok

    def _now(self) -> datetime:
        # Strictly increasing sync times, as the tester waits between operations.
        self._clock = max(datetime.now(UTC), self._clock + timedelta(milliseconds=2))
        return self._clock

    # --- the run -------------------------------------------------------------------------------------

    def run(self, spec: Mapping[str, Any]) -> Report:
        form = self.stub.ConfigurationForm(common_pb2.ConfigurationFormRequest())
        self.echo(f"ok   ConfigurationForm: {', '.join(f.name for f in form.fields)}")
        for test in form.tests:
            resp = self.stub.Test(common_pb2.TestRequest(name=test.name, configuration=self.configuration))
            ok = resp.WhichOneof("response") == "success"
            self.report.steps.append(Step(f"Test {test.name}", ok, "" if ok else resp.failure))
            self.echo(f"{'ok  ' if ok else 'FAIL'} Test {test.name}{'' if ok else ': ' + resp.failure}")
            if not ok:
                return self.report
        caps = self.stub.Capabilities(destination_sdk_pb2.CapabilitiesRequest())
        self.echo(f"ok   Capabilities: {destination_sdk_pb2.BatchFileFormat.Name(caps.batch_file_format)}")
        for name, raw in (spec.get("create_table") or {}).items():
            self._describe(name)
            table = _table_def(name, raw)
            self.tables[name] = table
            self._step(
                f"CreateTable {name}",
                self.stub.CreateTable(
                    destination_sdk_pb2.CreateTableRequest(
                        configuration=self.configuration, schema_name=self.schema, table=table.proto()
                    )
                ),
            )
        for name, raw in (spec.get("alter_table") or {}).items():
            table = _table_def(name, raw)
            self.tables[name] = table
            self._alter(table, drop=False)
        for index, op in enumerate(spec.get("ops") or []):
            for kind, payload in op.items():
                self._op(index, kind, payload)
        for batch in spec.get("schema_migration") or []:
            for kind, entries in batch.items():
                for params in entries:
                    self._migration(kind, params)
        for name in spec.get("describe_table") or []:
            self._describe(name)
        return self.report

    def _alter(self, table: _Table, drop: bool) -> None:
        self._step(
            f"AlterTable {table.name}",
            self.stub.AlterTable(
                destination_sdk_pb2.AlterTableRequest(
                    configuration=self.configuration,
                    schema_name=self.schema,
                    table=table.proto(),
                    drop_columns=drop,
                )
            ),
        )

    def _describe(self, name: str) -> None:
        resp = self.stub.DescribeTable(
            destination_sdk_pb2.DescribeTableRequest(
                configuration=self.configuration, schema_name=self.schema, table_name=name
            )
        )
        if self._step(f"DescribeTable {name}", resp):
            self.report.described[name] = resp.table if resp.WhichOneof("response") == "table" else None

    def _table(self, name: str) -> _Table:
        table = self.tables.get(name)
        if table is None:
            raise HarnessError(f"the input uses table {name!r}, which no create_table entry defines")
        return table

    # --- ops -----------------------------------------------------------------------------------------

    def _op(self, index: int, kind: str, payload: Any) -> None:
        label = f"op {index + 1} {kind}"
        if kind in ("truncate_before", "soft_truncate_before"):
            for name in payload:
                request = destination_sdk_pb2.TruncateRequest(
                    configuration=self.configuration,
                    schema_name=self.schema,
                    table_name=name,
                    synced_column=FIVETRAN_SYNCED_COLUMN,
                )
                ts = timestamp_pb2.Timestamp()
                ts.FromDatetime(self._now())
                request.utc_delete_before.CopyFrom(ts)
                if kind == "soft_truncate_before":
                    request.soft.deleted_column = FIVETRAN_DELETED_COLUMN
                self._step(f"{label} {name}", self.stub.Truncate(request))
            return
        if kind not in ("upsert", "update", "delete", "soft_delete"):
            raise HarnessError(
                f"unknown op {kind!r} (expected upsert, update, delete, soft_delete, truncate_before,"
                " soft_truncate_before)"
            )
        for name, rows in payload.items():
            table = self._table(name)
            if table.history:
                self._history_op(label, table, kind, rows)
            else:
                self._plain_op(label, table, kind, rows)

    def _header(self, table: _Table) -> list[str]:
        header = list(table.columns)
        self.rng.shuffle(header)
        return header

    def _plain_op(self, label: str, table: _Table, kind: str, rows: Sequence[Mapping[str, Any]]) -> None:
        synced = _iso(self._now())
        header = self._header(table)
        f = self.files
        lines = []
        for row in rows:
            cells = []
            for col in header:
                if col == FIVETRAN_SYNCED_COLUMN:
                    cells.append(synced)
                elif col == FIVETRAN_DELETED_COLUMN:
                    cells.append("true" if kind == "soft_delete" else "false")
                elif col in row:
                    cells.append(f.null if row[col] is None else _cell(row[col], table.columns[col]))
                elif kind == "upsert" or kind == "delete":
                    cells.append(f.null)
                else:
                    cells.append(f.unmodified)
            lines.append(cells)
        path = f.write(f"{table.name}_{kind}", header, lines)
        request = destination_sdk_pb2.WriteBatchRequest(
            configuration=self.configuration,
            schema_name=self.schema,
            table=table.proto(),
            keys={p: k for p, k in f.keys.items() if p == path},
            file_params=f.params(),
        )
        {
            "upsert": request.replace_files,
            "update": request.update_files,
            "soft_delete": request.update_files,
            "delete": request.delete_files,
        }[kind].append(path)
        self._step(f"{label} {table.name} ({len(rows)} rows)", self.stub.WriteBatch(request))

    def _history_op(self, label: str, table: _Table, kind: str, rows: Sequence[Mapping[str, Any]]) -> None:
        synced = _iso(self._now())
        f = self.files
        keys = [c for c in table.primary_key if c != FIVETRAN_START_COLUMN]
        request = destination_sdk_pb2.WriteHistoryBatchRequest(
            configuration=self.configuration,
            schema_name=self.schema,
            table=table.proto(),
            file_params=f.params(),
        )
        paths = []
        if kind in ("upsert", "update"):
            earliest: dict[tuple[str, ...], str] = {}
            header = self._header(table)
            lines = []
            # Several versions of one key in a batch: each but the last ends 1 ms before the next starts.
            versions: dict[tuple[str, ...], list[str]] = {}
            for row in rows:
                k = tuple(_cell(row[c], table.columns[c]) for c in keys)
                versions.setdefault(k, []).append(_instant(str(row.get("op_time") or synced)))
            for times in versions.values():
                times.sort()
            for row in rows:
                op_time = _instant(str(row.get("op_time") or synced))
                k = tuple(_cell(row[c], table.columns[c]) for c in keys)
                earliest[k] = min(op_time, earliest.get(k, op_time))
                later = [t for t in versions[k] if t > op_time]
                end = _iso(datetime.fromisoformat(later[0]) - timedelta(milliseconds=1)) if later else MAX_END
                cells = []
                for col in header:
                    if col == FIVETRAN_SYNCED_COLUMN:
                        cells.append(synced)
                    elif col == FIVETRAN_START_COLUMN:
                        cells.append(op_time)
                    elif col == FIVETRAN_END_COLUMN:
                        cells.append(end)
                    elif col == FIVETRAN_ACTIVE_COLUMN:
                        cells.append("false" if later else "true")
                    elif col in row:
                        cells.append(f.null if row[col] is None else _cell(row[col], table.columns[col]))
                    else:
                        cells.append(f.null if kind == "upsert" else f.unmodified)
                lines.append(cells)
            es_path = f.write(
                f"{table.name}_earliest_start",
                [*keys, FIVETRAN_START_COLUMN],
                [[*k, t] for k, t in earliest.items()],
            )
            request.earliest_start_files.append(es_path)
            path = f.write(f"{table.name}_{kind}", header, lines)
            (request.replace_files if kind == "upsert" else request.update_files).append(path)
            paths = [es_path, path]
        else:  # delete and soft_delete close the active version
            header = [*keys, FIVETRAN_END_COLUMN, FIVETRAN_SYNCED_COLUMN]
            lines = [
                [*(_cell(row[c], table.columns[c]) for c in keys), str(row.get("op_time") or synced), synced]
                for row in rows
            ]
            path = f.write(f"{table.name}_{kind}", header, lines)
            request.delete_files.append(path)
            paths = [path]
        for p in paths:
            if p in f.keys:
                request.keys[p] = f.keys[p]
        self._step(f"{label} {table.name} (history, {len(rows)} rows)", self.stub.WriteHistoryBatch(request))

    # --- schema migrations ---------------------------------------------------------------------------

    def _migration(self, kind: str, p: Mapping[str, Any]) -> None:
        details = destination_sdk_pb2.MigrationDetails(schema=self.schema, table=str(p.get("table", "")))
        label = f"migration {kind} {p.get('table') or p.get('from_table')}"
        if kind in ("add_column", "change_column_data_type", "drop_column"):
            table = self._table(str(p["table"]))
            if kind == "drop_column":
                table.columns.pop(str(p["column"]), None)
            else:
                table.columns[str(p["column"])] = common_pb2.DataType.Value(str(p["data_type"]))
            self._alter(table, drop=kind == "drop_column")
            return
        if kind == "copy_column":
            details.copy.copy_column.from_column = p["from_column"]
            details.copy.copy_column.to_column = p["to_column"]
        elif kind == "update_column_value":
            details.update_column_value.column = p["column"]
            details.update_column_value.value = str(p["value"])
        elif kind == "set_column_to_null":
            details.update_column_value.column = p["column"]
            details.update_column_value.value = "NULL"
        elif kind == "add_column_with_default_value":
            op = details.add.add_column_with_default_value
            op.column, op.default_value = p["column"], str(p["default_value"])
            op.column_type = common_pb2.DataType.Value(str(p["data_type"]))
        elif kind in ("copy_table", "rename_table"):
            entity = details.copy.copy_table if kind == "copy_table" else details.rename.rename_table
            entity.from_table, entity.to_table = p["from_table"], p["to_table"]
        elif kind == "rename_column":
            details.rename.rename_column.from_column = p["from_column"]
            details.rename.rename_column.to_column = p["to_column"]
        elif kind == "drop_table":
            details.drop.drop_table = True
        elif kind == "add_column_in_history_mode":
            op2 = details.add.add_column_in_history_mode
            op2.column, op2.default_value = p["column"], str(p["default_value"])
            op2.column_type = common_pb2.DataType.Value(str(p["data_type"]))
            op2.operation_timestamp = str(p["operation_timestamp"])
        elif kind == "drop_column_in_history_mode":
            details.drop.drop_column_in_history_mode.column = p["column"]
            details.drop.drop_column_in_history_mode.operation_timestamp = str(p["operation_timestamp"])
        elif kind == "copy_table_to_history_mode":
            op3 = details.copy.copy_table_to_history_mode
            op3.from_table, op3.to_table = p["from_table"], p["to_table"]
            op3.soft_deleted_column = str(p.get("deleted_column") or "")
        elif kind in _SYNC_MODE_MIGRATIONS:
            m = details.table_sync_mode_migration
            m.type = _SYNC_MODE_MIGRATIONS[kind]
            if p.get("deleted_column"):
                m.soft_deleted_column = str(p["deleted_column"])
            if "keep_deleted_rows" in p:
                m.keep_deleted_rows = bool(p["keep_deleted_rows"])
        else:
            raise HarnessError(f"unknown schema_migration operation {kind!r}")
        self._step(
            label,
            self.stub.Migrate(
                destination_sdk_pb2.MigrateRequest(configuration=self.configuration, details=details)
            ),
        )


# schema_migration names of the tester's sync-mode migrations (its README lists all six).
_SYNC_MODE_MIGRATIONS: Final = {
    "migrate_soft_delete_to_history": destination_sdk_pb2.SOFT_DELETE_TO_HISTORY,
    "migrate_history_to_soft_delete": destination_sdk_pb2.HISTORY_TO_SOFT_DELETE,
    "migrate_live_to_history": destination_sdk_pb2.LIVE_TO_HISTORY,
    "migrate_history_to_live": destination_sdk_pb2.HISTORY_TO_LIVE,
    "migrate_soft_delete_to_live": destination_sdk_pb2.SOFT_DELETE_TO_LIVE,
    "migrate_live_to_soft_delete": destination_sdk_pb2.LIVE_TO_SOFT_DELETE,
}


# The top-level sections of a destination-tester input file, in the order they are replayed.
INPUT_SECTIONS: Final = ("create_table", "alter_table", "ops", "schema_migration", "describe_table")


def load_input(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f, parse_float=decimal.Decimal)
    except OSError as e:
        raise HarnessError(f"cannot read {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise HarnessError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(spec, dict):
        raise HarnessError(f"{path} must hold a JSON object (the destination tester's input format)")
    unknown = sorted(set(spec) - set(INPUT_SECTIONS))
    if unknown:
        # A misspelt section would otherwise be skipped and the replay reported as a success.
        raise HarnessError(
            f"{path}: unknown section(s) {', '.join(map(repr, unknown))}; the destination tester's input has "
            f"{', '.join(INPUT_SECTIONS)}"
        )
    return spec


@contextmanager
def destination_channel(port: int | None) -> Iterator[grpc.Channel]:
    """A channel to an external destination on ``port``, or to one started here on a free port."""
    if port is not None:
        with grpc.insecure_channel(f"localhost:{port}", compression=grpc.Compression.Gzip) as channel:
            yield channel
        return
    from fivetran_destination.service import register

    bound = create_server(ServerSettings(0, grace_seconds=1.0), register, hosts=("127.0.0.1",))
    bound.server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{bound.port}", compression=grpc.Compression.Gzip) as channel:
            yield channel
    finally:
        bound.server.stop(1.0).wait()


def replay(
    input_path: str,
    configuration: Mapping[str, str],
    *,
    port: int | None = None,
    plain: bool = False,
    schema: str = "tester",
    echo: Callable[[str], None] = print,
) -> Report:
    spec = load_input(input_path)
    with (
        tempfile.TemporaryDirectory(prefix="fivetran-batches-") as folder,
        destination_channel(port) as channel,
    ):
        stub = destination_sdk_pb2_grpc.DestinationConnectorStub(channel)
        harness = Harness(stub, configuration, folder, schema=schema, plain=plain, echo=echo)
        report = harness.run(spec)
    return report
