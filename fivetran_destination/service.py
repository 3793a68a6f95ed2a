"""The ``fivetran_sdk.v2.DestinationConnector`` servicer (fivetran-destination.md, fivetran-sdk.md §7).

Every failure is answered as a successful gRPC response carrying ``Task{message}`` (``TestResponse.failure``
for Test): the message says what is wrong and what to do, never a key or a cell value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any, Final, TypeVar

import grpc

from connectors.batching import BatchLimits
from connectors.client import ClientConfig, ConvexClient
from connectors.client.errors import ConvexApiError, ConvexConnectionError
from connectors.constants import (
    FIVETRAN_DELETED_COLUMN,
    FIVETRAN_LOG_ORIGIN_DESTINATION,
    FIVETRAN_PRIMARY_KEY_INDEX,
    FIVETRAN_SYNCED_COLUMN,
    PACKAGE_VERSION,
)
from connectors.errors import ConvexError
from connectors.fivetran.config import ConfigurationError, ConnectorConfig, parse_configuration
from connectors.fivetran.jsonlog import register_secret
from connectors.typemap.fivetran import FivetranDataType, fivetran_type_from_validator
from fivetran_destination.batch_files import BatchFileError, BatchFileParams
from fivetran_destination.metadata import MetadataStore
from fivetran_destination.migrate import MigrationError, migrate
from fivetran_destination.model import DefinitionError, TableDef, convex_table_name, placement
from fivetran_destination.rows import RowError
from fivetran_destination.schema_check import schema_problem
from fivetran_destination.writer import BatchFiles, WriteError, write_batch, write_history_batch
from protos import common_pb2, destination_sdk_pb2, destination_sdk_pb2_grpc

log = logging.getLogger(__name__)

CLIENT_NAME: Final = "fivetran-import"
ORIGIN: Final = FIVETRAN_LOG_ORIGIN_DESTINATION

R = TypeVar("R")


class TaskError(Exception):
    """Stops an RPC; ``str()`` is the Task message."""


def client_for(config: ConnectorConfig, *, max_retries: int = 6) -> ConvexClient:
    register_secret(config.key)
    return ConvexClient(
        ClientConfig(
            config.url,
            config.key,
            client_name=CLIENT_NAME,
            client_version=PACKAGE_VERSION,
            max_retries=max_retries,
        )
    )


def deployment_message(e: ConvexError, url: str) -> str:
    """The contract's text for a failed call (fivetran-destination.md §3), with what to do."""
    if isinstance(e, ConvexConnectionError):
        return (
            f"An error occurred on the Convex deployment: could not reach {url} ({_connection_reason(e.message)})."
            " Check the deployment URL in the connector settings and that the deployment is running."
        )
    if isinstance(e, ConvexApiError) and e.status:
        body = e.body_text or e.message
        text = (
            f"An error occurred on the Convex deployment: Call to /api/{e.endpoint} on {url} returned an"
            f" unsuccessful response ({e.status}): {body}"
        )
        if e.status in (401, 403):
            text += " Check the deploy key in the connector settings (Deployment settings of the Convex dashboard)."
        return text
    return f"An error occurred on the Convex deployment: {e.user_message}"


def _connection_reason(message: str) -> str:
    """A short reason instead of the HTTP library's nested exception text."""
    for needle, reason in (
        ("NameResolution", "the host name does not resolve"),
        ("Name or service not known", "the host name does not resolve"),
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("Timeout", "timed out"),
        ("SSL", "TLS handshake failed"),
    ):
        if needle in message:
            return reason
    return message


class DestinationService(destination_sdk_pb2_grpc.DestinationConnectorServicer):
    """One instance serves every call; each call builds its own client from its configuration."""

    def __init__(self, limits: BatchLimits | None = None) -> None:
        self.limits = limits or BatchLimits.fivetran_operations()

    # --- helpers -------------------------------------------------------------------------------------

    def _run(self, configuration: Mapping[str, str], body: Callable[[ConvexClient, ConnectorConfig], R]) -> R:
        try:
            config = parse_configuration(configuration)
        except ConfigurationError as e:
            raise TaskError(str(e)) from None
        client = client_for(config)
        try:
            return body(client, config)
        except ConvexError as e:
            raise TaskError(deployment_message(e, config.url)) from None
        finally:
            client.close()

    @staticmethod
    def _task(response_type: Any, rpc: str, error: Exception) -> Any:
        log.warning("%s failed: %s", rpc, error)
        return response_type(task=common_pb2.Task(message=str(error)))

    # --- configuration -------------------------------------------------------------------------------

    def ConfigurationForm(self, request: Any, context: Any) -> common_pb2.ConfigurationFormResponse:
        return common_pb2.ConfigurationFormResponse(
            schema_selection_supported=False,
            table_selection_supported=False,
            fields=[
                common_pb2.FormField(
                    name="url",
                    label="Deployment URL",
                    required=True,
                    text_field=common_pb2.PlainText,
                    placeholder="https://aware-llama-900.convex.cloud",
                    description="The domain where the deployment is hosted. You can find it in the deployment"
                    " settings page of the Convex dashboard.",
                ),
                common_pb2.FormField(
                    name="key",
                    label="Deploy Key",
                    required=True,
                    text_field=common_pb2.Password,
                    description="The key giving access to your deployment. You can find it in the deployment"
                    " settings page of the Convex dashboard.",
                ),
            ],
            tests=[common_pb2.ConfigurationTest(name="connection", label="Test connection")],
        )

    def Capabilities(self, request: Any, context: Any) -> destination_sdk_pb2.CapabilitiesResponse:
        return destination_sdk_pb2.CapabilitiesResponse(batch_file_format=destination_sdk_pb2.CSV)

    def Test(self, request: Any, context: Any) -> common_pb2.TestResponse:
        try:
            config = parse_configuration(request.configuration)
        except ConfigurationError as e:
            return common_pb2.TestResponse(failure=str(e))
        client = client_for(config, max_retries=1)
        try:
            client.get_schema()
        except ConvexError as e:
            message = deployment_message(e, config.url)
            log.warning("Test failed: %s", message)
            return common_pb2.TestResponse(failure=message)
        finally:
            client.close()
        return common_pb2.TestResponse(success=True)

    # --- tables --------------------------------------------------------------------------------------

    def DescribeTable(self, request: Any, context: Any) -> destination_sdk_pb2.DescribeTableResponse:
        def body(client: ConvexClient, _c: ConnectorConfig) -> destination_sdk_pb2.DescribeTableResponse:
            name = convex_table_name(request.schema_name, request.table_name)
            stored = MetadataStore(client).get(name)
            if stored is not None:
                return destination_sdk_pb2.DescribeTableResponse(table=stored.to_proto(request.table_name))
            schema = client.get_schema()
            deployed = _schema_table(schema, name)
            if deployed is None:
                return destination_sdk_pb2.DescribeTableResponse(not_found=True)
            return destination_sdk_pb2.DescribeTableResponse(
                table=_describe_deployed(request.table_name, deployed)
            )

        try:
            return self._run(request.configuration, body)
        except (TaskError, DefinitionError) as e:
            return self._task(destination_sdk_pb2.DescribeTableResponse, "DescribeTable", e)

    def _create_or_alter(
        self, client: ConvexClient, desired: TableDef, drop_columns: bool, *, create: bool = False
    ) -> None:
        store = MetadataStore(client)
        stored = store.get(desired.convex_name)
        # CreateTable takes the definition as given; AlterTable keeps columns it does not list.
        table = desired if stored is None or create else stored.merged_with(desired, drop_columns)
        schema = client.get_schema()
        problem = schema_problem(schema, table)
        if problem is not None:
            raise TaskError(problem)
        client.fivetran_create_table(table.create_table_body())
        store.put(table)

    def CreateTable(self, request: Any, context: Any) -> destination_sdk_pb2.CreateTableResponse:
        def body(client: ConvexClient, _c: ConnectorConfig) -> destination_sdk_pb2.CreateTableResponse:
            self._create_or_alter(
                client, TableDef.from_proto(request.schema_name, request.table), False, create=True
            )
            return destination_sdk_pb2.CreateTableResponse(success=True)

        try:
            return self._run(request.configuration, body)
        except (TaskError, DefinitionError) as e:
            return self._task(destination_sdk_pb2.CreateTableResponse, "CreateTable", e)

    def AlterTable(self, request: Any, context: Any) -> destination_sdk_pb2.AlterTableResponse:
        def body(client: ConvexClient, _c: ConnectorConfig) -> destination_sdk_pb2.AlterTableResponse:
            desired = TableDef.from_proto(request.schema_name, request.table)
            self._create_or_alter(client, desired, bool(request.drop_columns))
            return destination_sdk_pb2.AlterTableResponse(success=True)

        try:
            return self._run(request.configuration, body)
        except (TaskError, DefinitionError) as e:
            return self._task(destination_sdk_pb2.AlterTableResponse, "AlterTable", e)

    def Truncate(self, request: Any, context: Any) -> destination_sdk_pb2.TruncateResponse:
        def body(client: ConvexClient, _c: ConnectorConfig) -> destination_sdk_pb2.TruncateResponse:
            name = convex_table_name(request.schema_name, request.table_name)
            if request.synced_column not in ("", FIVETRAN_SYNCED_COLUMN):
                raise TaskError(
                    f"Truncate of `{name}` asks to compare the column `{request.synced_column}`; this destination"
                    f" keeps the sync time in `{FIVETRAN_SYNCED_COLUMN}` (`fivetran.synced`) only. Please"
                    " contact support."
                )
            soft = request.HasField("soft")
            if soft and request.soft.deleted_column not in ("", FIVETRAN_DELETED_COLUMN):
                raise TaskError(
                    f"Soft truncate of `{name}` asks to mark the column `{request.soft.deleted_column}`; this"
                    f" destination keeps the flag in `{FIVETRAN_DELETED_COLUMN}` (`fivetran.deleted`) only."
                    " Please contact support."
                )
            before = None
            if request.HasField("utc_delete_before"):
                before = request.utc_delete_before.ToDatetime(tzinfo=UTC)
            elif not soft and MetadataStore(client).get(name) is None:
                # A hard truncate without a date would create a missing table on the server (§10.3).
                return destination_sdk_pb2.TruncateResponse(success=True)
            client.fivetran_truncate_table(name, before, "SoftDelete" if soft else "HardDelete")
            return destination_sdk_pb2.TruncateResponse(success=True)

        try:
            return self._run(request.configuration, body)
        except (TaskError, DefinitionError) as e:
            return self._task(destination_sdk_pb2.TruncateResponse, "Truncate", e)

    # --- writes --------------------------------------------------------------------------------------

    def _write(self, request: Any, history: bool) -> destination_sdk_pb2.WriteBatchResponse:
        rpc = "WriteHistoryBatch" if history else "WriteBatch"

        def body(client: ConvexClient, _c: ConnectorConfig) -> destination_sdk_pb2.WriteBatchResponse:
            if not request.HasField("table"):
                raise TaskError("Missing table argument")
            if not request.HasField("file_params"):
                raise TaskError("Missing file_params argument")
            table = TableDef.from_proto(request.schema_name, request.table)
            if history and not table.history_mode:
                raise TaskError(
                    f"WriteHistoryBatch for `{table.convex_name}`, whose definition has no `_fivetran_start`"
                    " column: history mode needs `_fivetran_start`, `_fivetran_end` and `_fivetran_active`."
                )
            files = BatchFiles(
                tuple(request.replace_files),
                tuple(request.update_files),
                tuple(request.delete_files),
                tuple(request.earliest_start_files) if history else (),
            )
            params = BatchFileParams.from_proto(request.file_params)
            keys = dict(request.keys)
            run = write_history_batch if history else write_batch
            try:
                sink = run(client, table, files, params, keys, self.limits)
            except BatchFileError as e:
                raise TaskError(f"Can\u2019t read the file {e.file_name}: {e.reason}. {e.action}") from None
            except (RowError, WriteError) as e:
                raise TaskError(str(e)) from None
            log.info(
                "%s into %s: %d rows in %d requests (%d updates of missing rows ignored)",
                rpc,
                table.convex_name,
                sink.rows_sent,
                sink.requests,
                sink.missing_updates,
            )
            return destination_sdk_pb2.WriteBatchResponse(success=True)

        try:
            return self._run(request.configuration, body)
        except (TaskError, DefinitionError) as e:
            return self._task(destination_sdk_pb2.WriteBatchResponse, rpc, e)

    def WriteBatch(self, request: Any, context: Any) -> destination_sdk_pb2.WriteBatchResponse:
        return self._write(request, history=False)

    def WriteHistoryBatch(self, request: Any, context: Any) -> destination_sdk_pb2.WriteBatchResponse:
        return self._write(request, history=True)

    def Migrate(self, request: Any, context: Any) -> destination_sdk_pb2.MigrateResponse:
        def body(client: ConvexClient, _c: ConnectorConfig) -> destination_sdk_pb2.MigrateResponse:
            try:
                supported = migrate(client, request.details, self.limits)
            except MigrationError as e:
                raise TaskError(str(e)) from None
            if not supported:
                return destination_sdk_pb2.MigrateResponse(unsupported=True)
            return destination_sdk_pb2.MigrateResponse(success=True)

        try:
            return self._run(request.configuration, body)
        except (TaskError, DefinitionError) as e:
            return self._task(destination_sdk_pb2.MigrateResponse, "Migrate", e)


def register(server: grpc.Server, service: DestinationService | None = None) -> None:
    destination_sdk_pb2_grpc.add_DestinationConnectorServicer_to_server(
        service or DestinationService(), server
    )


# --- deployed schemas (fivetran-destination.md §7.4) -------------------------------------------------------


def _schema_table(schema: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    if not schema:
        return None
    for table in schema.get("tables") or []:
        if isinstance(table, Mapping) and table.get("tableName") == name:
            return table
    return None


def _describe_deployed(fivetran_name: str, table: Mapping[str, Any]) -> common_pb2.Table:
    doc_type = table.get("documentType")
    if not isinstance(doc_type, Mapping) or doc_type.get("type") == "any":
        raise TaskError(
            f"The table `{table.get('tableName')}` in the Convex destination stores arbitrary documents, which is"
            " not supported by Fivetran. Please edit the schema of the table in `schema.ts` so that the table"
            " isn\u2019t defined as `v.any()`."
        )
    if doc_type.get("type") == "union":
        members = doc_type.get("value") or []
        if len(members) != 1:
            raise TaskError(
                f"The table `{table.get('tableName')}` in the Convex destination stores multiple different types"
                " of documents, which is not supported by Fivetran. Please edit the schema of the table in"
                " `schema.ts` so that the table isn\u2019t defined as `v.union()`."
            )
        doc_type = members[0]
    fields: Mapping[str, Any] = doc_type.get("value") or {}
    pk: list[str] = []
    for index in table.get("indexes") or []:
        if index.get("indexDescriptor") in (FIVETRAN_PRIMARY_KEY_INDEX, "by_primary_key"):
            pk = [f for f in index.get("fields", []) if f != "_creationTime"]
    columns: list[common_pb2.Column] = []

    def add(name: str, data_type: FivetranDataType) -> None:
        columns.append(
            common_pb2.Column(name=name, type=int(data_type), primary_key=placement(name).dotted in pk)  # type: ignore[arg-type]
        )

    meta = fields.get("fivetran", {}).get("fieldType")
    if isinstance(meta, Mapping) and meta.get("type") == "object":
        meta_fields = meta.get("value") or {}
        if "deleted" in meta_fields:
            add(FIVETRAN_DELETED_COLUMN, FivetranDataType.BOOLEAN)
        if "id" in meta_fields:
            add("_fivetran_id", fivetran_type_from_validator(meta_fields["id"].get("fieldType", {})))
        add(FIVETRAN_SYNCED_COLUMN, FivetranDataType.UTC_DATETIME)
        inner = (meta_fields.get("columns") or {}).get("fieldType") or {}
        for name, spec in sorted((inner.get("value") or {}).items()):
            add(f"_{name}", fivetran_type_from_validator(spec.get("fieldType", {})))
    for name, spec in sorted(fields.items()):
        if name != "fivetran":
            add(name, fivetran_type_from_validator(spec.get("fieldType", {})))
    return common_pb2.Table(name=fivetran_name, columns=columns)
