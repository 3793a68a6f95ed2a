"""Sync events -> serialized ``UpdateResponse`` messages (fivetran-source.md §6.4, fivetran-sdk.md §3.2).

The hot path of the connector. Each ``Record`` is filled into one reused protobuf message (``upb``: a
``setattr`` per value, the member chosen by ``connectors.typemap.fivetran.SCALAR_MEMBERS``) and serialized
on its own; its schema/table/type header is serialized once per table run. ``Records`` batches are then
framed by hand from the serialized records (a ``Records`` message is the concatenation of its
length-prefixed records, and an ``UpdateResponse`` the length-prefixed ``Records`` under field 6), so the
exact size of every batch is known without serializing twice: a batch holds at most ``MAX_BATCH_RECORDS``
records and, beyond its first record, at most ``MAX_BATCH_BYTES`` bytes.

Order is the engine's: TRUNCATE before a table's first record, a checkpoint after the records of its page
(the pending batch is flushed first).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

from connectors.constants import CREATION_TIME_FIELD, ID_FIELD
from connectors.sync import (
    Checkpoint,
    CursorExpired,
    Deletes,
    Rows,
    SyncEvent,
    TableRef,
    TableStarted,
    fivetran_state,
)
from connectors.sync.selection import FIVETRAN_ROOT_SCHEMA
from connectors.typemap.fivetran import SCALAR_MEMBERS, FivetranValueError, creation_time_parts
from connectors.typemap.jsontext import json_text
from protos import common_pb2, connector_sdk_pb2

MAX_BATCH_RECORDS: Final = 100  # the SDK's hard limit for `records` (fivetran-sdk.md §6.2)
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024  # far below the 128 MB message limit; one big record may exceed it

UPSERT: Final = common_pb2.UPSERT
DELETE: Final = common_pb2.DELETE
TRUNCATE: Final = common_pb2.TRUNCATE

EXPIRED_CURSOR_HINT: Final = (
    "The connector can no longer continue from its saved position. To continue syncing, trigger a "
    "historical re-sync of this connection in Fivetran (connection page, Setup tab: Re-sync all "
    "historical data)."
)


def schema_name(component: str) -> str:
    """The Fivetran schema of a component: ``app`` for the root, the component path otherwise."""
    return component or FIVETRAN_ROOT_SCHEMA


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Varints of every length below 16 KiB, precomputed (a record's length is almost always one of them).
_VARINTS: Final = tuple(_encode_varint(n) for n in range(1 << 14))


def _varint(n: int) -> bytes:
    return _VARINTS[n] if n < 16384 else _encode_varint(n)


def _length_prefixed(tag: bytes, body: bytes) -> bytes:
    n = len(body)
    return tag + (_VARINTS[n] if n < 16384 else _encode_varint(n)) + body


_RECORDS_ITEM_TAG: Final = b"\x0a"  # Records.records = 1, length-delimited
_RESPONSE_RECORD_TAG: Final = b"\x0a"  # UpdateResponse.record = 1
_RESPONSE_RECORDS_TAG: Final = b"\x32"  # UpdateResponse.records = 6


def records_message(serialized_records: Iterable[bytes]) -> bytes:
    """``UpdateResponse{records: Records{records: [...]}}`` from serialized ``Record`` messages."""
    parts: list[bytes] = []
    append = parts.append
    for r in serialized_records:
        n = len(r)
        append(_RECORDS_ITEM_TAG + (_VARINTS[n] if n < 16384 else _encode_varint(n)))
        append(r)
    return _length_prefixed(_RESPONSE_RECORDS_TAG, b"".join(parts))


def record_message(serialized_record: bytes) -> bytes:
    """``UpdateResponse{record: ...}`` (one record per message, as Convex's connector sends)."""
    return _length_prefixed(_RESPONSE_RECORD_TAG, serialized_record)


def checkpoint_message(state_json: str) -> bytes:
    return connector_sdk_pb2.UpdateResponse(
        checkpoint=connector_sdk_pb2.Checkpoint(state_json=state_json)
    ).SerializeToString()


def task_message(text: str) -> bytes:
    return connector_sdk_pb2.UpdateResponse(task=common_pb2.Task(message=text)).SerializeToString()


class RecordEncoder:
    """Serializes records of documents; one instance per Update.

    One ``Record`` message is reused for the documents of one call (one page's run of a table) and then
    dropped: upb keeps what a message allocates in its arena until the message goes away (``Clear()`` does
    not free it), so a message kept for a whole sync would grow with every row."""

    def __init__(self) -> None:
        self._headers: dict[tuple[TableRef, Any], bytes] = {}

    def header(self, table: TableRef, kind: Any) -> bytes:
        """The serialized schema_name/table_name/type fields of every record of ``table`` of ``kind``."""
        key = (table, kind)
        found = self._headers.get(key)
        if found is None:
            found = connector_sdk_pb2.Record(
                schema_name=schema_name(table.component), table_name=table.table, type=kind
            ).SerializeToString()
            self._headers[key] = found
        return found

    def truncate(self, table: TableRef) -> bytes:
        return self.header(table, TRUNCATE)

    def upserts(self, table: TableRef, documents: Iterable[dict]) -> list[bytes]:
        """One serialized UPSERT ``Record`` per document (fivetran-source.md §6.5)."""
        header = self.header(table, UPSERT)
        record = connector_sdk_pb2.Record()
        clear = record.Clear
        serialize = record.SerializeToString
        members = _MEMBERS
        out: list[bytes] = []
        append = out.append
        for doc in documents:
            clear()
            data = record.data
            for name, value in doc.items():
                member = members.get(type(value))
                if name[:1] == "_":
                    if name == CREATION_TIME_FIELD:
                        target = data[name].utc_datetime
                        target.seconds, target.nanos = creation_time_parts(value)
                        continue
                    if name != ID_FIELD:
                        continue  # other system fields are dropped
                if member is not None:
                    try:
                        setattr(data[name], member, value)
                    except ValueError:
                        raise FivetranValueError(
                            f"a {member} value of field {name!r} cannot be sent to Fivetran (out of range)"
                        ) from None
                elif value is None:
                    data[name].null = True
                else:
                    data[name].json = json_text(value)
            append(header + serialize())
        return out

    def deletes(self, table: TableRef, ids: Iterable[str]) -> list[bytes]:
        """One serialized DELETE ``Record`` per id; its data is ``{"_id": <string>}`` only."""
        header = self.header(table, DELETE)
        record = connector_sdk_pb2.Record()
        out: list[bytes] = []
        for doc_id in ids:
            record.Clear()
            record.data[ID_FIELD].string = doc_id
            out.append(header + record.SerializeToString())
        return out


_MEMBERS: Final[dict[type, str]] = dict(SCALAR_MEMBERS)  # a plain dict: the fastest lookup per value


class MessageBuilder:
    """Turns the engine's events into serialized ``UpdateResponse`` messages, in order.

    ``single_records`` sends one ``record`` per message (hosts without ``records`` support). Yields bytes;
    the gRPC handler sends them as they are. ``CursorExpired`` becomes the one Task that ends the stream.
    """

    def __init__(self, *, single_records: bool = False, max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        self.single_records = single_records
        self.max_batch_bytes = max_batch_bytes
        self.encoder = RecordEncoder()
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self.records_sent = 0
        self.checkpoints_sent = 0
        self.last_state_json: str | None = None

    def _add(self, serialized: bytes) -> Iterator[bytes]:
        self.records_sent += 1
        if self.single_records:
            yield record_message(serialized)
            return
        size = len(serialized) + 5
        if self._batch and (
            len(self._batch) >= MAX_BATCH_RECORDS or self._batch_bytes + size > self.max_batch_bytes
        ):
            yield from self.flush()
        self._batch.append(serialized)
        self._batch_bytes += size

    def _add_all(self, serialized: Iterable[bytes]) -> Iterator[bytes]:
        if self.single_records:
            for one in serialized:
                self.records_sent += 1
                yield record_message(one)
            return
        batch = self._batch
        limit = self.max_batch_bytes
        for one in serialized:
            size = len(one) + 5
            if len(batch) >= MAX_BATCH_RECORDS or (batch and self._batch_bytes + size > limit):
                yield records_message(batch)
                batch.clear()
                self._batch_bytes = 0
            batch.append(one)
            self._batch_bytes += size
            self.records_sent += 1

    def flush(self) -> Iterator[bytes]:
        if self._batch:
            yield records_message(self._batch)
            self._batch.clear()
            self._batch_bytes = 0

    def messages(self, event: SyncEvent) -> Iterator[bytes]:
        """The messages for one event (a batch is only sent when full, or before a checkpoint)."""
        if isinstance(event, Rows):
            yield from self._add_all(self.encoder.upserts(event.table, (v.document for v in event.values)))
        elif isinstance(event, Deletes):
            yield from self._add_all(self.encoder.deletes(event.table, event.ids))
        elif isinstance(event, TableStarted):
            if event.truncate:
                yield from self._add(self.encoder.truncate(event.table))
        elif isinstance(event, Checkpoint):
            yield from self.flush()
            state_json = fivetran_state.serialize(event.state)
            self.last_state_json = state_json
            self.checkpoints_sent += 1
            yield checkpoint_message(state_json)
        elif isinstance(event, CursorExpired):
            yield from self.flush()
            yield task_message(f"{event.message} {EXPIRED_CURSOR_HINT}")
        # SnapshotComplete: its checkpoint follows; nothing to send.
