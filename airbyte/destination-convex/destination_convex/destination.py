"""``DestinationConvex``: the Airbyte destination (spec, check, write) on airbyte-cdk 7.

Writes through ``connectors.client.ConvexClient`` (streaming import) and ``connectors.batching``; see
``writer`` for the write path and ``../README.md`` for the behaviour.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import orjson
from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    FailureType,
    Status,
    Type,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from connectors.client import AmbiguousWriteError, ConvexApiError, ConvexClient, ConvexConnectionError
from connectors.errors import ConvexError, Reaction
from destination_convex.config import DestinationConfig
from destination_convex.writer import IndexPolling, Writer, plan_tables

__all__ = ["DestinationConvex", "user_message"]

logger = logging.getLogger("airbyte")

_FAILURE_TYPES = {
    Reaction.CONFIGURATION: FailureType.config_error,
    Reaction.TRANSIENT: FailureType.transient_error,
}


def user_message(exc: ConvexError, url: str) -> str:
    """What went wrong and what to do, for the Airbyte UI; never the key or record contents."""
    if isinstance(exc, ConvexConnectionError):
        return (
            f"Could not reach the Convex deployment at {url}: {exc.message}. Check deployment_url (e.g."
            " https://happy-animal-123.convex.cloud) and that the deployment is running and reachable."
        )
    if isinstance(exc, ConvexApiError) and exc.status in (401, 403):
        return (
            f"The deployment at {url} rejected the access key ({exc.status} {exc.code}: {exc.message}). Use a"
            " deploy key of this deployment with the deployment:backups:import permission (Settings > Deploy"
            " keys)."
        )
    if isinstance(exc, ConvexApiError) and exc.status == 404:
        return (
            f"{url} answered 404 for {exc.endpoint}: it does not look like a Convex deployment URL. Check"
            " deployment_url (the deployment's .convex.cloud URL, not the dashboard or site URL)."
        )
    if isinstance(exc, AmbiguousWriteError):
        return (
            f"A batch of append-mode records may or may not have been written ({exc.cause}). It was not"
            " retried, so no record is written twice by this sync; records after the last committed state"
            " may be missing or, if the sync is retried, present twice. Check the tables or use append_dedup."
        )
    if isinstance(exc, ConvexApiError):
        return f"The deployment at {url} refused {exc.endpoint}: {exc.status} {exc.code}: {exc.message}"
    return exc.user_message


def traced(exc: ConvexError, url: str) -> AirbyteTracedException:
    return AirbyteTracedException(
        internal_message=f"{type(exc).__name__}: {exc}",
        message=user_message(exc, url),
        failure_type=_FAILURE_TYPES.get(exc.reaction, FailureType.system_error),
        exception=exc,
    )


class DestinationConvex(Destination):
    """``index_polling`` and ``max_rows`` are for tests and benchmarks; Airbyte runs the defaults."""

    def __init__(self, *, index_polling: IndexPolling | None = None, max_rows: int | None = None) -> None:
        self._index_polling = index_polling
        self._max_rows = max_rows

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        try:
            parsed = DestinationConfig.from_mapping(config)
        except ConvexError as exc:
            return AirbyteConnectionStatus(status=Status.FAILED, message=exc.user_message)
        url = parsed.client_config().deployment_url
        try:
            with ConvexClient(parsed.client_config(max_retries=1)) as client:
                client.version()  # reachable, and a Convex server (GET /version)
                client.primary_key_indexes_ready([])  # the key is valid and may import
        except ConvexError as exc:
            return AirbyteConnectionStatus(status=Status.FAILED, message=user_message(exc, url))
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    def _run_write(
        self, config: Mapping[str, Any], configured_catalog_path: str, input_stream: io.TextIOWrapper
    ) -> Iterable[AirbyteMessage]:
        with open(configured_catalog_path, "rb") as f:
            catalog = ConfiguredAirbyteCatalogSerializer.load(orjson.loads(f.read()))
        logger.info("Begin writing to the destination...")
        yield from self._write(config, catalog, _parse_input(input_stream))
        logger.info("Writing complete.")

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        return self._write(config, configured_catalog, input_messages)

    def _write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[_Record | AirbyteMessage],
    ) -> Iterator[AirbyteMessage]:
        try:
            parsed = DestinationConfig.from_mapping(config)
        except ConvexError as exc:
            raise traced(exc, str(config.get("deployment_url", ""))) from None
        url = parsed.client_config().deployment_url
        try:
            plans = plan_tables(
                (
                    s.stream.name,
                    s.stream.namespace,
                    s.destination_sync_mode.value,
                    s.primary_key,
                    s.stream.json_schema,
                )
                for s in configured_catalog.streams
            )
        except ConvexError as exc:
            raise traced(exc, url) from None
        with ConvexClient(parsed.client_config()) as client:
            kwargs: dict[str, Any] = {}
            if self._max_rows is not None:
                kwargs["max_rows"] = self._max_rows
            writer = Writer(client, plans, polling=self._index_polling, **kwargs)
            try:
                for note in writer.setup():
                    logger.info(note)
                yield from _write_messages(writer, input_messages)
                writer.close()
                yield from writer.ready_states()  # all of them now
            except ConvexError as exc:
                raise traced(exc, url) from None
            finally:
                writer.abort()
            logger.info(f"Wrote {writer.rows_written:,} records in {writer.batches_written:,} batches")


class _Record(NamedTuple):
    """A RECORD read straight from its JSON line (no protocol-model object per record)."""

    stream: str
    namespace: str | None
    data: dict[str, Any]


def _parse_input(input_stream: io.TextIOWrapper) -> Iterator[_Record | AirbyteMessage]:
    """The CDK's input parsing, with RECORD lines taken from ``orjson.loads`` directly (the protocol model
    costs more than the parse itself); every other message goes through the CDK's serializer."""
    lines: Iterable[bytes | str] = getattr(input_stream, "buffer", None) or input_stream
    for line in lines:
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            logger.info("ignoring input which can't be deserialized as an Airbyte message")
            continue
        if type(raw) is dict and raw.get("type") == "RECORD":
            rec = raw.get("record")
            if type(rec) is dict and type(rec.get("stream")) is str and type(rec.get("data")) is dict:
                yield _Record(rec["stream"], rec.get("namespace"), rec["data"])
                continue
        yield AirbyteMessageSerializer.load(raw)


def _write_messages(
    writer: Writer, messages: Iterable[_Record | AirbyteMessage]
) -> Iterator[AirbyteMessage]:
    record_type, state_type = Type.RECORD, Type.STATE
    for message in messages:
        if type(message) is _Record:
            writer.record(message.stream, message.namespace or None, message.data)
            if writer.holds_states:
                yield from writer.ready_states()
            continue
        assert isinstance(message, AirbyteMessage)
        kind = message.type
        if kind == record_type:
            record = message.record
            assert record is not None
            writer.record(record.stream, record.namespace, record.data)
        elif kind == state_type:
            writer.state(message)  # echoed once every record before it is committed
        else:
            continue
        if writer.holds_states:
            yield from writer.ready_states()
