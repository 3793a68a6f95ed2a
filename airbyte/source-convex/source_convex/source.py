"""``SourceConvex``: spec, check, discover and read of one Convex deployment, as a thin adapter over
``connectors.sync`` (paging, cursors, state), ``connectors.typemap.airbyte`` (schemas, values) and
``connectors.client`` (HTTP and retries).

Streams: one per table; the component path is the stream namespace (the app's own tables have none, so
existing connections keep their stream names). Primary key ``_id``, source-defined cursor ``_ts``.

Read: each configured stream runs the sync engine over its one table (``SyncSelection.of_tables``):
full_refresh is (the rest of) a snapshot, resumable from a snapshot-phase state; incremental is the snapshot
(first sync) and then the change feed, deletes included as records with ``_ab_cdc_deleted_at`` set. State is
the published connector's per-stream shape (``connectors.sync.airbyte_state``), emitted after every page the
records it covers, so a resumed sync neither skips nor repeats a page. An expired cursor
(``SnapshotTooOld``/``InvalidWindowToReadDocuments`` only) restarts the stream from a new snapshot once, with a
warning that says so.

Retries: the sync engine reads through ``ConvexClient``, whose transport retries connection failures, 429
and 5xx with full-jitter backoff and ``Retry-After`` (``connectors.client.transport``). CDK 7's
error-handler objects belong to its ``HttpStream``/``HttpClient`` request path, which this source does not
use: the shared client is the one place retries are decided for every connector, so they behave the same
(and are tested once) everywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import orjson
from airbyte_cdk.models import (
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    AirbyteStateMessage,
    AirbyteStream,
    AirbyteStreamStatus,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteStream,
    ConnectorSpecification,
    ConnectorSpecificationSerializer,
    FailureType,
    Status,
    SyncMode,
)
from airbyte_cdk.sources.source import Source
from airbyte_cdk.utils.stream_status_utils import as_airbyte_message as stream_status_message
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from connectors.client import ConvexClient
from connectors.constants import ID_FIELD
from connectors.errors import ConvexError, ForbiddenError, NotFoundError, Reaction, UnauthenticatedError
from connectors.sync import (
    Checkpoint,
    CursorExpired,
    Deletes,
    HttpReader,
    Rows,
    SyncSelection,
    SyncState,
    TableRef,
    airbyte_state,
    run_sync,
)
from connectors.sync import SyncMode as EngineMode
from connectors.typemap import TypeMapError
from connectors.typemap.airbyte import airbyte_stream_schema
from connectors.typemap.jsonschema import table_types_from_json_schemas
from source_convex.config import SourceConfig, SourceConfigError
from source_convex.records import StreamRenderer

CURSOR_FIELD: Final = "_ts"
CHECK_RETRIES: Final = 1  # check answers quickly; reads retry with the client's default budget

log = logging.getLogger("airbyte")


@dataclass(frozen=True)
class StreamRead:
    """One configured stream: its table, its mode and its stored state object (None: no state)."""

    ref: TableRef
    name: str
    namespace: str | None
    incremental: bool
    state: object


def explain(exc: ConvexError, config: SourceConfig) -> str:
    """What went wrong and what to fix, for a failed call to the deployment (never the key)."""
    url = config.deployment_url
    if isinstance(exc, UnauthenticatedError):
        return (
            f"Convex at {url} rejected the access key ({exc.message}). Check `access_key`: it must be a deploy "
            "key of this deployment (Settings > Deploy keys in the Convex dashboard)."
        )
    if isinstance(exc, ForbiddenError):
        return (
            f"The access key may not export data from {url} ({exc.message}). Use a deploy key with permission "
            "to read data (`deployment:data:view`); streaming export needs a Convex Pro plan."
        )
    if isinstance(exc, NotFoundError):
        return (
            f"{url} does not serve Convex's streaming export API ({exc.code or 'HTTP 404'}: {exc.message}). "
            "Check `deployment_url`: it is the deployment's base URL, e.g. https://murky-swan-635.convex.cloud."
        )
    if exc.status == 0:
        return (
            f"Could not reach the Convex deployment at {url}: {exc.message}. Check `deployment_url` (scheme, "
            "host and port) and that the deployment is running and reachable from here."
        )
    text = f"{exc.code}: {exc.message}" if exc.code else exc.message
    if exc.reaction is Reaction.TRANSIENT:
        return f"Convex at {url} is failing ({text}); it was retried. Try again later."
    return f"Convex at {url} refused the request ({text})."


class SourceConvex(Source):
    """The CDK ``Source``. ``read`` yields typed ``AirbyteMessage``s (for in-process CDK callers);
    ``read_rendered`` is the same sync as ready JSON lines, which the ``source-convex`` entrypoint writes."""

    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        raw = resources.files("source_convex").joinpath("spec.json").read_text()
        return ConnectorSpecificationSerializer.load(json.loads(raw))

    # --- check ---------------------------------------------------------------------------------------------

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        try:
            cfg = SourceConfig.from_mapping(config)
        except SourceConfigError as exc:
            return AirbyteConnectionStatus(status=Status.FAILED, message=str(exc))
        try:
            with ConvexClient(cfg.client_config(max_retries=CHECK_RETRIES)) as client:
                client.test_streaming_export_connection()
                schemas = client.json_schemas(delta_schema=True, by_component=True)
                table_types_from_json_schemas(schemas, by_component=True)
        except ConvexError as exc:
            return AirbyteConnectionStatus(status=Status.FAILED, message=explain(exc, cfg))
        except TypeMapError as exc:
            return AirbyteConnectionStatus(
                status=Status.FAILED,
                message=f"The deployment's table schemas (json_schemas) cannot be read: {exc}",
            )
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    # --- discover ------------------------------------------------------------------------------------------

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteCatalog:
        cfg = _config(config)
        try:
            with ConvexClient(cfg.client_config()) as client:
                schemas = HttpReader(client).json_schemas(delta_schema=True)
        except ConvexError as exc:
            raise _traced(explain(exc, cfg), exc) from None
        try:
            tables = table_types_from_json_schemas(schemas, by_component=True)
        except TypeMapError as exc:
            raise _traced(
                f"The deployment's table schemas (json_schemas) cannot be read: {exc}", exc
            ) from None
        streams = []
        for (component, table), shape in sorted(tables.items()):
            if not cfg.includes_component(component):
                continue
            streams.append(
                AirbyteStream(
                    name=table,
                    namespace=component or None,
                    json_schema=airbyte_stream_schema(shape),
                    supported_sync_modes=[SyncMode.full_refresh, SyncMode.incremental],
                    source_defined_cursor=True,
                    default_cursor_field=[CURSOR_FIELD],
                    source_defined_primary_key=[[ID_FIELD]],
                    is_resumable=True,
                )
            )
        return AirbyteCatalog(streams=streams)

    # --- read ----------------------------------------------------------------------------------------------

    def read(
        self,
        logger: logging.Logger,
        config: Mapping[str, Any],
        catalog: ConfiguredAirbyteCatalog,
        state: list[AirbyteStateMessage] | None = None,
    ) -> Iterator[AirbyteMessage]:
        """The CDK interface: the rendered lines parsed back into messages (the CDK's serializer then drops
        top-level nulls again; the ``source-convex`` entrypoint writes the lines as they are)."""
        load = AirbyteMessageSerializer.load
        for item in self.read_rendered(logger, config, catalog, state):
            if isinstance(item, AirbyteMessage):
                yield item
                continue
            for line in bytes(item).splitlines():
                yield load(orjson.loads(line))

    def read_rendered(
        self,
        logger: logging.Logger,
        config: Mapping[str, Any],
        catalog: ConfiguredAirbyteCatalog,
        state: list[AirbyteStateMessage] | None = None,
    ) -> Iterator[bytearray | AirbyteMessage]:
        """The sync: chunks of RECORD and STATE lines (one chunk per page, ending with its STATE line) and
        stream-status messages."""
        cfg = _config(config)
        reads = _stream_reads(catalog, state or [])
        with ConvexClient(cfg.client_config()) as client:
            reader = HttpReader(client)
            for stream in reads:
                descriptor = _Descriptor(stream.name, stream.namespace)
                yield stream_status_message(descriptor, AirbyteStreamStatus.STARTED)
                try:
                    yield from self._read_stream(reader, stream, cfg, descriptor)
                except ConvexError as exc:
                    yield stream_status_message(descriptor, AirbyteStreamStatus.INCOMPLETE)
                    raise _traced(f"Stream {_label(stream)}: {explain(exc, cfg)}", exc) from None
                yield stream_status_message(descriptor, AirbyteStreamStatus.COMPLETE)

    def _read_stream(
        self, reader: HttpReader, stream: StreamRead, cfg: SourceConfig, descriptor: _Descriptor
    ) -> Iterator[bytearray | AirbyteMessage]:
        try:
            sync_state = airbyte_state.parse(stream.state, _label(stream))
        except airbyte_state.AirbyteStateError as exc:
            raise AirbyteTracedException(
                message=str(exc), internal_message=str(exc), failure_type=FailureType.config_error
            ) from None
        mode = EngineMode.INCREMENTAL if stream.incremental else EngineMode.SNAPSHOT_ONLY
        selection = SyncSelection.of_tables([stream.ref])
        renderer = StreamRenderer(stream.name, stream.namespace)
        restarted = False
        running = False
        while True:
            expired: CursorExpired | None = None
            out = bytearray()
            count = 0
            for event in run_sync(reader, selection, sync_state, mode):
                if isinstance(event, Rows):
                    renderer.records(event.values, deleted=False, out=out)
                    count += len(event.values)
                elif isinstance(event, Deletes):
                    renderer.records(event.values, deleted=True, out=out)
                    count += len(event.values)
                elif isinstance(event, Checkpoint):
                    renderer.state(airbyte_state.serialize(event.state), count, out)
                    if not running and count:
                        running = True
                        yield stream_status_message(descriptor, AirbyteStreamStatus.RUNNING)
                    yield out
                    out = bytearray()
                    count = 0
                elif isinstance(event, CursorExpired):
                    expired = event
            if expired is None:
                return
            if restarted:
                raise AirbyteTracedException(
                    message=f"Stream {_label(stream)}: the deployment refused a fresh snapshot's cursor "
                    f"({expired.code}: {expired.message}).",
                    failure_type=FailureType.system_error,
                )
            log.warning(
                "Stream %s: the stored %s cursor has expired on the deployment (%s: %s); re-reading the "
                "table from a new snapshot. Records already synced are sent again.",
                _label(stream),
                expired.phase.value,
                expired.code,
                expired.message,
            )
            restarted = True
            sync_state = SyncState.fresh(track_tables=False)


@dataclass(frozen=True)
class _Descriptor:
    """What ``stream_status_message`` reads of a stream (its name and namespace)."""

    name: str
    namespace: str | None


def _label(stream: StreamRead) -> str:
    return repr(stream.name if stream.namespace is None else f"{stream.namespace}/{stream.name}")


def _config(config: Mapping[str, Any]) -> SourceConfig:
    try:
        return SourceConfig.from_mapping(config)
    except SourceConfigError as exc:
        raise AirbyteTracedException(
            message=str(exc), internal_message=str(exc), failure_type=FailureType.config_error
        ) from None


def _traced(message: str, exc: Exception) -> AirbyteTracedException:
    reaction = getattr(exc, "reaction", None)
    failure = FailureType.config_error if reaction is Reaction.CONFIGURATION else FailureType.system_error
    return AirbyteTracedException(message=message, internal_message=message, failure_type=failure)


def _stream_reads(
    catalog: ConfiguredAirbyteCatalog, states: Iterable[AirbyteStateMessage]
) -> list[StreamRead]:
    by_stream: dict[tuple[str, str | None], object] = {}
    for message in states:
        if message.stream is not None and message.stream.stream_descriptor is not None:
            d = message.stream.stream_descriptor
            blob = message.stream.stream_state
            by_stream[(d.name, d.namespace or None)] = None if blob is None else dict(blob.__dict__)
        elif message.data:  # legacy state: one object keyed by stream name (the app's tables)
            for name, value in dict(message.data).items():
                by_stream.setdefault((name, None), value)
    reads = []
    for configured in catalog.streams:
        reads.append(_stream_read(configured, by_stream))
    return reads


def _stream_read(
    configured: ConfiguredAirbyteStream, states: Mapping[tuple[str, str | None], object]
) -> StreamRead:
    name = configured.stream.name
    namespace = configured.stream.namespace or None
    return StreamRead(
        ref=TableRef(namespace or "", name),
        name=name,
        namespace=namespace,
        incremental=configured.sync_mode == SyncMode.incremental,
        state=states.get((name, namespace)),
    )
