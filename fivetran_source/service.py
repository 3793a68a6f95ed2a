"""The ``fivetran_sdk.v2.SourceConnector`` service (fivetran-source.md): a thin adapter over the sync engine.

* ConfigurationForm: the reference's form (§2.1).
* Test: configuration (§2.2), then ``test_streaming_export_connection`` (§4).
* Schema: ``get_table_column_names`` (§5); columns other than ``_id``/``_creationTime`` are typed from the
  table's shape (``json_schemas``) where it is exact, else left UNSPECIFIED for Fivetran to infer.
* Update: ``run_sync(HttpReader, selection, state, STOP_AFTER_SNAPSHOT)``; events become serialized
  ``UpdateResponse`` messages (``records.MessageBuilder``) built by a producer thread into a small bounded
  queue, so page k+1 is fetched (the client's pipeline) and encoded while page k is being sent. Errors are one
  Task that ends the stream (§6). The stream is not gzipped unless ``SourceOptions.gzip_update`` asks for it
  (gzip requests are always accepted; the unary responses stay gzipped).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import grpc

from connectors.client import ClientConfig, ConvexClient
from connectors.constants import CREATION_TIME_FIELD, ID_FIELD
from connectors.fivetran.config import ConfigurationError, ConnectorConfig, parse_configuration
from connectors.sync import (
    ExportReader,
    FivetranSchemaChoice,
    FivetranSelection,
    FivetranTableChoice,
    FivetranTablesWithSchema,
    FivetranWithoutSchema,
    HttpReader,
    SyncMode,
    SyncState,
    fivetran_state,
    from_fivetran_selection,
    run_sync,
)
from connectors.sync.selection import FIVETRAN_ROOT_SCHEMA
from connectors.typemap.fivetran import FivetranDataType, fivetran_column_type
from connectors.typemap.jsonschema import table_type_from_json_schema
from connectors.typemap.tree import ObjectType, TypeMapError
from fivetran_source.errors import internal_error_text, user_error_text
from fivetran_source.records import MessageBuilder, schema_name, task_message
from protos import common_pb2, connector_sdk_pb2

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "fivetran_sdk.v2.SourceConnector"
CONNECTOR_VERSION: Final = "2.1.0"  # continues Convex's connector versions (2.0.2); sent as Convex-Client
CLIENT_NAME: Final = "fivetran-export"
APP_COMPONENT_MESSAGE: Final = (
    "Your Convex deployment contains a component named `app`. This conflicts with the name of the default "
    "Fivetran schema. Please rename the component to avoid issues."
)
QUEUE_MESSAGES: Final = 8  # encoded messages waiting to be sent: bounded memory, enough to overlap
_DONE: Final = object()


@dataclass(frozen=True)
class SourceOptions:
    single_records: bool = False
    """One ``record`` per message instead of ``records`` batches (hosts that do not accept ``records``)."""
    gzip_update: bool = False
    """Gzip the Update stream's messages (the server's default for every other response). Off by default:
    Fivetran reaches the connector over a local link, where gzip only costs CPU: ~4 µs of the connector's
    per row (12.5 instead of 8.2) and ~1.5 µs of the receiver's (benchmarks/README.md, Fivetran source)."""
    client_retries: int = 6
    quick_call_retries: int = 2
    """Retries for Test and Schema, which a person waits for."""


def configuration_form() -> common_pb2.ConfigurationFormResponse:
    return common_pb2.ConfigurationFormResponse(
        schema_selection_supported=True,
        table_selection_supported=True,
        fields=[
            common_pb2.FormField(
                name="url",
                label="Deployment URL",
                required=True,
                description=(
                    "The domain where the deployment is hosted. You can find it in the deployment settings "
                    "page of the Convex dashboard."
                ),
                text_field=common_pb2.PlainText,
                placeholder="https://aware-llama-900.convex.cloud",
            ),
            common_pb2.FormField(
                name="key",
                label="Deploy Key",
                required=True,
                description=(
                    "The key giving access to your deployment. You can find it in the deployment settings "
                    "page of the Convex dashboard."
                ),
                text_field=common_pb2.Password,
            ),
        ],
        tests=[common_pb2.ConfigurationTest(name="connection", label="Test connection")],
    )


def fivetran_selection_input(request: connector_sdk_pb2.UpdateRequest) -> FivetranSelection:
    """The protobuf ``UpdateRequest.selection`` as the sync engine's typed input."""
    if not request.HasField("selection"):
        return None
    which = request.selection.WhichOneof("selection")
    if which is None:
        return None
    if which == "without_schema":
        return FivetranWithoutSchema()
    with_schema = request.selection.with_schema
    return FivetranTablesWithSchema(
        schemas=[
            FivetranSchemaChoice(
                schema_name=schema.schema_name,
                included=schema.included,
                tables=[
                    FivetranTableChoice(
                        table_name=table.table_name,
                        included=table.included,
                        columns=dict(table.columns),
                        include_new_columns=table.include_new_columns,
                    )
                    for table in schema.tables
                ],
                include_new_tables=schema.include_new_tables,
            )
            for schema in with_schema.schemas
        ],
        include_new_schemas=with_schema.include_new_schemas,
    )


class SourceConnector:
    """The four rpcs. ``client_factory`` builds the HTTP client of one call (tests inject faults there)."""

    def __init__(
        self,
        options: SourceOptions | None = None,
        client_factory: Callable[[ClientConfig], ConvexClient] = ConvexClient,
    ) -> None:
        self.options = options or SourceOptions()
        self._client_factory = client_factory

    def _client(self, config: ConnectorConfig, retries: int) -> ConvexClient:
        return self._client_factory(
            ClientConfig(
                config.url,
                config.key,
                client_name=CLIENT_NAME,
                client_version=CONNECTOR_VERSION,
                max_retries=retries,
            )
        )

    # --- unary rpcs -------------------------------------------------------------------------------------

    def ConfigurationForm(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return configuration_form()

    def Test(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        config: ConnectorConfig | None = None
        try:
            config = parse_configuration(request.configuration)
            with self._client(config, self.options.quick_call_retries) as client:
                client.test_streaming_export_connection()
        except Exception as exc:
            text = user_error_text(exc, config.url if config else None)
            if text is None:
                log.exception("Test failed unexpectedly")
                text = internal_error_text(exc)
            log.warning("Test %r failed: %s", request.name, text)
            return common_pb2.TestResponse(failure=text)
        log.info("Test %r succeeded", request.name)
        return common_pb2.TestResponse(success=True)

    def Schema(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        config: ConnectorConfig | None = None
        try:
            config = parse_configuration(request.configuration)
            with self._client(config, self.options.quick_call_retries) as client:
                schemas = discover_schema(HttpReader(client))
        except AppComponentError as exc:
            context.abort(grpc.StatusCode.INTERNAL, str(exc))
        except Exception as exc:
            text = user_error_text(exc, config.url if config else None)
            if text is None:
                log.exception("Schema failed unexpectedly")
                text = internal_error_text(exc)
            log.warning("Schema failed: %s", text)
            context.abort(grpc.StatusCode.INTERNAL, text)
        tables = sum(len(s.tables) for s in schemas)
        log.info("Schema: %d schemas, %d tables", len(schemas), tables)
        return connector_sdk_pb2.SchemaResponse(
            with_schema=common_pb2.SchemaList(schemas=schemas), selection_not_supported=False
        )

    # --- Update -----------------------------------------------------------------------------------------

    def Update(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:  # noqa: N802
        """Serialized ``UpdateResponse`` messages (the handler is registered with an identity serializer)."""
        gzip = self.options.gzip_update
        stop = threading.Event()
        context.add_callback(stop.set)  # the client went away or the server stops: end the producer
        out: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_MESSAGES)
        producer = threading.Thread(
            target=self._produce, args=(request, out, stop), name="fivetran-update", daemon=True
        )
        producer.start()
        try:
            while True:
                try:
                    item = out.get(timeout=0.1)
                except queue.Empty:
                    # A cancelled call's producer stops without queueing _DONE: never wait on it forever (a
                    # blocked gRPC worker would also keep the process from exiting).
                    if stop.is_set() or (not producer.is_alive() and out.empty()):
                        return
                    continue
                if item is _DONE:
                    return
                if not gzip:
                    # Per message: the server compresses every response by default (gzip for the small
                    # unary answers stays as it was), and set_compression(NoCompression) on the call
                    # did not turn it off (grpcio 1.85).
                    context.disable_next_message_compression()
                yield item
        finally:
            stop.set()
            # Unblock a producer waiting on a full queue, then let it finish closing the sync.
            while producer.is_alive():
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.05)

    def _produce(self, request: Any, out: queue.Queue[Any], stop: threading.Event) -> None:
        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for message in self._messages(request, stop):
                if not put(message):
                    return
        finally:
            put(_DONE)

    def _messages(self, request: Any, stop: threading.Event) -> Iterator[bytes]:
        config: ConnectorConfig | None = None
        builder = MessageBuilder(single_records=self.options.single_records)
        started = time.monotonic()
        try:
            config = parse_configuration(request.configuration)
            selection = from_fivetran_selection(fivetran_selection_input(request))
            state_json = request.state_json if request.HasField("state_json") else None
            state = fivetran_state.parse(state_json) or SyncState.fresh()
            phase = "delta sync" if state.snapshot_done else "initial sync"
            resumed = " (resuming)" if state_json not in (None, "{}") and not state.snapshot_done else ""
            log.info("Update: %s%s", phase, resumed)
            with self._client(config, self.options.client_retries) as client:
                events = run_sync(HttpReader(client), selection, state, SyncMode.STOP_AFTER_SNAPSHOT)
                try:
                    for event in events:
                        if stop.is_set():
                            log.info("Update cancelled by the caller")
                            return
                        yield from builder.messages(event)
                finally:
                    events.close()
            yield from builder.flush()
        except Exception as exc:
            yield from builder.flush()
            text = user_error_text(exc, config.url if config else None)
            if text is None:
                log.exception("Update failed unexpectedly")
                text = internal_error_text(exc)
            else:
                log.warning("Update failed: %s", text)
            yield task_message(text)
            return
        elapsed = time.monotonic() - started
        log.info(
            "Update finished: %d records, %d checkpoints in %.1f s",
            builder.records_sent,
            builder.checkpoints_sent,
            elapsed,
        )


class AppComponentError(ConfigurationError):
    """A component is named ``app``, the Fivetran schema of the root component."""


def discover_schema(reader: ExportReader) -> list[common_pb2.Schema]:
    """One Fivetran schema per component, one table per Convex table (fivetran-source.md §5)."""
    by_component = reader.table_columns()
    if FIVETRAN_ROOT_SCHEMA in by_component:
        raise AppComponentError(APP_COMPONENT_MESSAGE)
    shapes = _table_shapes(reader, by_component)
    schemas: list[common_pb2.Schema] = []
    for component, tables in by_component.items():
        out_tables = []
        for table in tables:
            shape = shapes.get((component, table.name))
            columns = [
                common_pb2.Column(name=ID_FIELD, type=common_pb2.STRING, primary_key=True),
                common_pb2.Column(name=CREATION_TIME_FIELD, type=common_pb2.UTC_DATETIME),
            ]
            for name in table.columns:
                if name.startswith("_"):
                    continue  # _id and _creationTime above; other system fields are never sent
                columns.append(common_pb2.Column(name=name, type=_column_type(shape, name)))
            out_tables.append(common_pb2.Table(name=table.name, columns=columns))
        schemas.append(common_pb2.Schema(name=schema_name(component), tables=out_tables))
    return schemas


def _column_type(shape: ObjectType | None, name: str) -> Any:
    if shape is None:
        return int(FivetranDataType.UNSPECIFIED)
    found = shape.field(name)
    return int(FivetranDataType.UNSPECIFIED if found is None else fivetran_column_type(found.type))


def _table_shapes(reader: ExportReader, by_component: Mapping[str, Any]) -> dict[tuple[str, str], ObjectType]:
    """Exact table shapes from ``json_schemas``, where the deployment gives them unambiguously.

    Servers that know ``byComponent`` answer per component; others (Convex deployments without it) answer
    one flat object per table name, which is only used for table names no two components share. A
    deployment whose ``json_schemas`` fails or cannot be read leaves every column UNSPECIFIED (what
    Convex's connector always sends) rather than failing Schema."""
    try:
        raw = reader.json_schemas(delta_schema=False)
    except Exception as exc:  # typing is an improvement over the reference; never a reason to fail Schema
        log.warning(
            "json_schemas is not available (%s); column types are left to Fivetran", type(exc).__name__
        )
        return {}
    out: dict[tuple[str, str], ObjectType] = {}
    # Flat: every value is a table schema. Grouped: every value maps table names to schemas (a table schema
    # has "type": "object"; a group's "type" entry, if a table has that name, is a schema, not a string).
    flat = all(isinstance(v, dict) and v.get("type") == "object" for v in raw.values())
    if flat:
        owners: dict[str, list[str]] = {}
        for component, tables in by_component.items():
            for table in tables:
                owners.setdefault(table.name, []).append(component)
        grouped: dict[str, dict[str, Any]] = {}
        for name, schema in raw.items():
            if len(owners.get(name, [])) == 1:
                grouped.setdefault(owners[name][0], {})[name] = schema
    else:
        grouped = {c: t for c, t in raw.items() if isinstance(t, dict)}
    for component, tables in grouped.items():
        for name, schema in tables.items():
            try:
                out[(component, name)] = table_type_from_json_schema(schema, name)
            except TypeMapError as exc:
                log.warning(
                    "The JSON Schema of a table could not be read (%s); its columns stay UNSPECIFIED", exc
                )
    return out


def register(connector: SourceConnector) -> Callable[[grpc.Server], None]:
    """Adds the service to a server. Update's messages are already serialized (identity serializer)."""
    sdk = connector_sdk_pb2
    common = common_pb2
    handlers = {
        "ConfigurationForm": grpc.unary_unary_rpc_method_handler(
            connector.ConfigurationForm,
            request_deserializer=common.ConfigurationFormRequest.FromString,
            response_serializer=common.ConfigurationFormResponse.SerializeToString,
        ),
        "Test": grpc.unary_unary_rpc_method_handler(
            connector.Test,
            request_deserializer=common.TestRequest.FromString,
            response_serializer=common.TestResponse.SerializeToString,
        ),
        "Schema": grpc.unary_unary_rpc_method_handler(
            connector.Schema,
            request_deserializer=sdk.SchemaRequest.FromString,
            response_serializer=sdk.SchemaResponse.SerializeToString,
        ),
        "Update": grpc.unary_stream_rpc_method_handler(
            connector.Update,
            request_deserializer=sdk.UpdateRequest.FromString,
            response_serializer=_identity,
        ),
    }

    def add(server: grpc.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))

    return add


def _identity(message: bytes) -> bytes:
    return message
