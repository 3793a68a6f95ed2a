"""Sync events -> serialized ``UpdateResponse`` messages (fivetran-source.md §6.4, fivetran-sdk.md §3.2).

The hot path of the connector. Each ``Record`` is encoded by hand (``_FieldWire``: the map entry of a value
is one or two concatenations onto bytes built once per field name, the member chosen as
``connectors.typemap.fivetran.SCALAR_MEMBERS`` says; about twice as fast as filling a upb message
field by field); its schema/table/type header is serialized once per table run. ``Records`` batches are then
framed by hand from the serialized records (a ``Records`` message is the concatenation of its
length-prefixed records, and an ``UpdateResponse`` the length-prefixed ``Records`` under field 6), so the
exact size of every batch is known without serializing twice: a batch holds at most ``MAX_BATCH_RECORDS``
records and, beyond its first record, at most ``MAX_BATCH_BYTES`` bytes.

Order is the engine's: TRUNCATE before a table's first record, a checkpoint after the records of its page
(the pending batch is flushed first).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, groupby, repeat
from math import isfinite
from operator import itemgetter
from typing import Any, Final

import orjson

from connectors.constants import CREATION_TIME_FIELD, ID_FIELD
from connectors.ids import encode_varint
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
from connectors.typemap.fivetran import FivetranValueError, creation_time_parts
from connectors.typemap.jsontext import json_text_bytes
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


# Varints of every length below 16 KiB, precomputed (a record's length is almost always one of them).
_VARINTS: Final = tuple(encode_varint(n) for n in range(1 << 14))


def _varint(n: int) -> bytes:
    return _VARINTS[n] if n < 16384 else encode_varint(n)


def _length_prefixed(tag: bytes, body: bytes) -> bytes:
    n = len(body)
    return tag + (_VARINTS[n] if n < 16384 else encode_varint(n)) + body


_RECORDS_ITEM_TAG: Final = b"\x0a"  # Records.records = 1, length-delimited
_RESPONSE_RECORD_TAG: Final = b"\x0a"  # UpdateResponse.record = 1
_RESPONSE_RECORDS_TAG: Final = b"\x32"  # UpdateResponse.records = 6


def records_message(serialized_records: Iterable[bytes]) -> bytes:
    """``UpdateResponse{records: Records{records: [...]}}`` from serialized ``Record`` messages."""
    parts: list[bytes] = []
    append = parts.append
    for r in serialized_records:
        n = len(r)
        append(_RECORDS_ITEM_TAG + (_VARINTS[n] if n < 16384 else encode_varint(n)))
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
        self._fields: dict[str, _FieldWire] = {}

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
        """One serialized UPSERT ``Record`` per document (fivetran-source.md §6.5), its ``data`` entries
        encoded by hand in the document's field order (see :class:`_FieldWire`).

        A run of documents with the same fields in the same order (a page of a table, usually whole) is
        encoded column by column: a column of one scalar type is a few ``map`` calls that run in C, and each
        record is then one ``join`` of its entries. Short runs go document by document
        (:meth:`upserts_by_document`). Both give the same bytes (a property test checks it)."""
        docs = documents if isinstance(documents, list) else list(documents)
        if len(docs) < _MIN_COLUMN_RUN:
            return self.upserts_by_document(table, docs)
        out: list[bytes] = []
        start = 0
        # Runs of one field order, found in C: tuple(doc) is the field names in order.
        for names, group in groupby(map(tuple, docs)):
            end = start + sum(1 for _ in group)
            run = docs[start:end] if start or end < len(docs) else docs
            if end - start < _MIN_COLUMN_RUN:
                out += self.upserts_by_document(table, run)
            else:
                out += self._upserts_by_column(table, names, run)
            start = end
        return out

    def _upserts_by_column(self, table: TableRef, names: tuple[str, ...], docs: list[dict]) -> list[bytes]:
        header = self.header(table, UPSERT)
        fields = self._fields
        kept: list[str] = []
        wires: list[_FieldWire] = []
        for name in names:
            f = fields.get(name)
            if f is None:
                if name[:1] == "_" and name != ID_FIELD and name != CREATION_TIME_FIELD:
                    continue  # other system fields are dropped
                f = fields[name] = _FieldWire(name)
            kept.append(name)
            wires.append(f)
        if not kept:
            return [header] * len(docs)
        # The columns, in C: the values of each document (all of them when none is dropped, the usual case),
        # transposed.
        if len(kept) == len(names):
            columns: list[Any] = list(zip(*map(dict.values, docs), strict=True))
        elif len(kept) == 1:
            columns = [list(map(itemgetter(kept[0]), docs))]
        else:
            columns = list(zip(*map(itemgetter(*kept), docs), strict=True))
        entries = [_column_entries(f, column) for f, column in zip(wires, columns, strict=True)]
        return list(map(b"".join, zip(repeat(header), *entries)))

    def upserts_by_document(self, table: TableRef, documents: Iterable[dict]) -> list[bytes]:
        """:meth:`upserts` one document at a time (any mix of field orders)."""
        header = self.header(table, UPSERT)
        fields = self._fields
        # Scratch messages for the two members whose encoding is not a plain copy (a signed varint and a
        # Timestamp); scalars only, so they allocate nothing per row. One pair per call (upb arenas).
        long_value = common_pb2.ValueType()
        stamp = _Timestamp()
        out: list[bytes] = []
        append = out.append
        for doc in documents:
            parts = [header]
            add = parts.append
            for name, value in doc.items():
                f = fields.get(name)
                if f is None:
                    if name[:1] == "_" and name != ID_FIELD and name != CREATION_TIME_FIELD:
                        continue  # other system fields are dropped
                    f = fields[name] = _FieldWire(name)
                t = type(value)
                if f.is_creation_time:
                    stamp.seconds, stamp.nanos = creation_time_parts(value)
                    payload = stamp.SerializeToString()
                    add(f.head(_UTC_DATETIME, len(payload)))
                    add(payload)
                elif t is str:
                    payload = value.encode()
                    head = f.strings.get(len(payload))
                    add(head if head is not None else f.head(_STRING, len(payload)))
                    add(payload)
                elif t is float:
                    add(f.double_prefix)
                    add(_pack_double(value))
                elif t is bool:
                    add(f.true if value else f.false)
                elif value is None:
                    add(f.null)
                elif t is int:
                    add(_long_entry(f, long_value, name, value))
                elif t is bytes:
                    add(f.head(_BINARY, len(value)))
                    add(value)
                else:
                    payload = json_text_bytes(value)
                    add(f.head(_JSON, len(payload)))
                    add(payload)
            append(b"".join(parts))
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


# ``ValueType`` member tags (common.proto: field number << 3 | wire type), for the members the source sends.
_NULL_TRUE: Final = b"\x08\x01"  # null = 1, varint true
_BOOL: Final = b"\x10"  # bool = 2, varint
_DOUBLE: Final = b"\x39"  # double = 7, 64-bit
_UTC_DATETIME: Final = b"\x52"  # utc_datetime = 10, length-delimited
_BINARY: Final = b"\x62"  # binary = 12
_STRING: Final = b"\x6a"  # string = 13
_JSON: Final = b"\x72"  # json = 14
_DATA_ENTRY: Final = b"\x22"  # Record.data = 4, one length-delimited map entry
_ENTRY_KEY: Final = b"\x0a"  # map entry key = 1
_ENTRY_VALUE: Final = b"\x12"  # map entry value = 2
_pack_double: Final = struct.Struct("<d").pack
_CACHED_HEAD_BYTES: Final = 4096  # entry heads are cached for payloads shorter than this
_Timestamp: Final = type(common_pb2.ValueType().utc_datetime)


class _FieldWire:
    """The bytes of one field name's ``Record.data`` entries: ``data`` is ``map<string, ValueType>``, so
    an entry is ``4: {1: name, 2: ValueType}``; its key part, the constant entries (null, true, false)
    and the prefix of a double entry are built once per name, leaving one or two concatenations per value.
    The member chosen per value type is :data:`connectors.typemap.fivetran.SCALAR_MEMBERS`' (JSON text
    otherwise, ``utc_datetime`` for ``_creationTime``); the unit tests check the bytes parse to the record
    :func:`connectors.typemap.fivetran.fivetran_row` describes."""

    __slots__ = (
        "name",
        "key",
        "key_len",
        "null",
        "true",
        "false",
        "double_prefix",
        "is_creation_time",
        "heads",
        "strings",
        "string_head",
        "json_head",
        "values",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        encoded = name.encode()
        self.key = _ENTRY_KEY + _varint(len(encoded)) + encoded
        self.key_len = len(self.key) + 1  # and the value's tag
        self.null = self.entry(_NULL_TRUE)
        self.true = self.entry(_BOOL + b"\x01")
        self.false = self.entry(_BOOL + b"\x00")
        self.double_prefix = self.entry(_DOUBLE + bytes(8))[:-8]
        self.is_creation_time = name == CREATION_TIME_FIELD
        self.heads: dict[tuple[bytes, int], bytes] = {}
        self.strings = _Heads(self, _STRING)  # the string heads by length (the most common member)
        self.string_head = self.strings.__getitem__
        """The head of a string entry with an ``n``-byte payload: a dict lookup in C when cached."""
        self.json_head = _Heads(self, _JSON).__getitem__
        self.values: dict[int, bytes] = {}  # the heads of entries of serialized ValueTypes by length

    def entry(self, value_type: bytes) -> bytes:
        """The entry of a serialized ``ValueType``."""
        n = len(value_type)
        value_len = _VARINTS[n] if n < 16384 else encode_varint(n)
        size = self.key_len + len(value_len) + n
        return (
            _DATA_ENTRY
            + (_VARINTS[size] if size < 16384 else encode_varint(size))
            + self.key
            + _ENTRY_VALUE
            + value_len
            + value_type
        )

    def value_head(self, n: int) -> bytes:
        """The bytes of the entry of an ``n``-byte serialized ``ValueType``, up to it (cached)."""
        found = self.entry(bytes(n))[:-n]
        self.values[n] = found
        return found

    def head(self, member: bytes, n: int) -> bytes:
        """The bytes of the entry of a length-delimited member (string, json, binary, utc_datetime) with an
        ``n``-byte payload, up to the payload; cached per member and length below 4 KiB."""
        key = (member, n)
        found = self.heads.get(key)
        if found is None:
            found = self.entry(member + _varint(n) + bytes(n))[:-n] if n else self.entry(member + b"\x00")
            if n < _CACHED_HEAD_BYTES:
                self.heads[key] = found
                if member == _STRING:
                    self.strings[n] = found
        return found


class _Heads(dict[int, bytes]):
    """The entry heads of one member by payload length, looked up in C; a missing one is built by
    ``_FieldWire.head`` and kept when its payload is below 4 KiB (``head`` itself stores the string ones)."""

    __slots__ = ("_wire", "_member")

    def __init__(self, wire: _FieldWire, member: bytes) -> None:
        super().__init__()
        self._wire = wire
        self._member = member

    def __missing__(self, n: int) -> bytes:
        found = self._wire.head(self._member, n)
        if n < _CACHED_HEAD_BYTES and self._member != _STRING:
            self[n] = found
        return found


_MIN_COLUMN_RUN: Final = 8  # shorter runs of one field order are encoded document by document
_NONE_TYPE: Final = type(None)


def _long_entry(f: _FieldWire, scratch: Any, name: str, value: int) -> bytes:
    """The entry of an Int64 (``ValueType.long``: a signed varint, serialized by upb)."""
    try:
        scratch.long = value
    except ValueError:
        raise FivetranValueError(
            f"a long value of field {name!r} cannot be sent to Fivetran (out of range)"
        ) from None
    payload = scratch.SerializeToString()
    head = f.values.get(len(payload))
    return (head if head is not None else f.value_head(len(payload))) + payload


def _column_entries(f: _FieldWire, column: Sequence[Any]) -> list[bytes]:
    """The ``data`` entries of one field for a column of values: a column of one scalar type in C (``map``
    over cached heads and prefixes), anything else value by value with :meth:`RecordEncoder.upserts`'s
    rules."""
    types = set(map(type, column))
    t = types.pop() if len(types) == 1 else None
    if f.is_creation_time:
        if t is float and all(map(isfinite, column)):
            return _creation_time_entries(f, column)
        return [_creation_time_entry(f, value) for value in column]  # ints, and the errors
    if t is str:
        encoded = list(map(str.encode, column))
        return list(map(bytes.__add__, map(f.string_head, map(len, encoded)), encoded))
    if t is float:
        return list(map(f.double_prefix.__add__, map(_pack_double, column)))
    if t is bool:
        return list(map((f.false, f.true).__getitem__, column))
    if t is _NONE_TYPE:
        return [f.null] * len(column)
    if t is list and set(map(type, chain.from_iterable(column))) == {str}:
        # Lists of strings are their own clean JSON (json_text_bytes' fast path, for the whole column). Each
        # payload is consumed at once: orjson starts every result in a fresh 1 KiB buffer, and keeping a page
        # of them alive made each call ~10x slower (malloc) than reusing the freed one.
        json_head = f.json_head
        return [json_head(len(p)) + p for p in map(orjson.dumps, column)]
    long_value = common_pb2.ValueType()
    out: list[bytes] = []
    append = out.append
    for value in column:
        t = type(value)
        if t is str:
            payload = value.encode()
            append(f.string_head(len(payload)) + payload)
        elif t is float:
            append(f.double_prefix + _pack_double(value))
        elif t is bool:
            append(f.true if value else f.false)
        elif value is None:
            append(f.null)
        elif t is int:
            append(_long_entry(f, long_value, f.name, value))
        elif t is bytes:
            append(f.head(_BINARY, len(value)) + value)
        else:
            payload = json_text_bytes(value)
            append(f.head(_JSON, len(payload)) + payload)
    return out


def _creation_time_entry(f: _FieldWire, value: Any) -> bytes:
    stamp = _Timestamp()
    stamp.seconds, stamp.nanos = creation_time_parts(value)
    payload = stamp.SerializeToString()
    return f.head(_UTC_DATETIME, len(payload)) + payload


def _creation_time_entries(f: _FieldWire, column: Sequence[float]) -> list[bytes]:
    """``_creationTime`` entries of a column of finite floats: ``creation_time_parts``' arithmetic over the
    column, the ``Timestamp`` framed by hand (field 1 the seconds, built by upb once per distinct second;
    field 2 the nanos, a varint below 2^30; zero fields omitted, as proto3 serializes them)."""
    seconds_and_rest = list(map(divmod, column, repeat(1000.0)))
    seconds_fields = _SecondsFields()
    out: list[bytes] = []
    append = out.append
    head = _Heads(f, _UTC_DATETIME).__getitem__
    varints = _VARINTS
    low14 = _VARINT_LOW14
    for seconds, rest in seconds_and_rest:
        nanos = int(rest * 1e6)
        payload = seconds_fields[int(seconds)]
        if nanos:
            if nanos >= 999_999_999:
                nanos = 999_999_999
            if nanos < 16384:
                payload += b"\x10" + varints[nanos]
            elif nanos < 268435456:
                payload += b"\x10" + low14[nanos & 16383] + varints[nanos >> 14]
            else:
                payload += (
                    b"\x10" + low14[nanos & 16383] + low14[(nanos >> 14) & 16383] + varints[nanos >> 28]
                )
        append(head(len(payload)) + payload)
    return out


class _SecondsFields(dict[int, bytes]):
    """``Timestamp.seconds`` serialized (its tag and varint; empty for 0) by value, built by upb."""

    __slots__ = ()

    def __missing__(self, seconds: int) -> bytes:
        found = self[seconds] = _Timestamp(seconds=seconds).SerializeToString()
        return found


# The low 14 bits of a varint that continues: two bytes with the continuation bit set.
_VARINT_LOW14: Final = tuple(bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(1 << 14))


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
