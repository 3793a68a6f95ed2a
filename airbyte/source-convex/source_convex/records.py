"""Airbyte RECORD and STATE messages of one stream, rendered straight to JSON lines with orjson.

This is the per-record hot path of the source, so it does only what the protocol needs: each document
(decoded from ``convex_encoded_json``, so Int64 and Bytes are exact) gets the export metadata and the three
``_ab_cdc_*`` columns, values JSON cannot hold as they are go through the type map
(``connectors.typemap.airbyte.to_airbyte_value``: Bytes as base64, NaN/±inf as text), and the record is
spliced between a prefix and suffix rendered once per page. Rendering ourselves also keeps top-level
``null`` fields, which CDK 7's message serializer drops (``shared/spec/airbyte.md`` §5.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from connectors.client import ExportedValue
from connectors.constants import AB_CDC_DELETED_AT, AB_CDC_LSN, AB_CDC_UPDATED_AT
from connectors.typemap.airbyte import to_airbyte_value

TS: Final = "_ts"
DELETED: Final = "_deleted"
TABLE: Final = "_table"
COMPONENT: Final = "_component"
_STAMP_CACHE: Final = 4096


def cdc_timestamp(ts: int) -> str:
    """``_ab_cdc_updated_at``: ``_ts`` (ns) as a naive UTC ISO string, as the published connector writes it
    (``datetime.utcfromtimestamp(_ts / 1e9).isoformat()``)."""
    return datetime.fromtimestamp(ts / 1e9, UTC).replace(tzinfo=None).isoformat()


def _plain(value: Any) -> bool:
    """Whether orjson writes ``value`` exactly as Airbyte JSON as it is: no Bytes and no NaN/±inf at any
    depth (orjson would refuse the one and write the other as null). A loop without calls for the common
    leaves, since this runs for every array and object of every record."""
    t = type(value)
    if t is list:
        for x in value:
            tx = type(x)
            if tx is str or tx is int or tx is bool or x is None or (tx is float and x - x == 0.0):
                continue
            if not _plain(x):
                return False
        return True
    if t is dict:
        for x in value.values():
            tx = type(x)
            if tx is str or tx is int or tx is bool or x is None or (tx is float and x - x == 0.0):
                continue
            if not _plain(x):
                return False
        return True
    if t is str or t is int or t is bool or value is None:
        return True
    return t is float and value - value == 0.0


def _convert_in_place(doc: dict[str, Any]) -> None:
    for key, value in doc.items():
        t = type(value)
        if t is str or t is int or t is bool or value is None:
            continue
        if t is float:
            if value - value == 0.0:
                continue
        elif (t is list or t is dict) and _plain(value):
            continue
        doc[key] = to_airbyte_value(value)


class StreamRenderer:
    """Renders the messages of one stream (``namespace`` None for the root component)."""

    def __init__(self, name: str, namespace: str | None) -> None:
        self.name = name
        self.namespace = namespace
        descriptor: dict[str, str] = {"name": name}
        head = b'{"type":"RECORD","record":{"stream":' + orjson.dumps(name)
        if namespace is not None:
            descriptor["namespace"] = namespace
            head += b',"namespace":' + orjson.dumps(namespace)
        self._head = head + b',"data":'
        self._descriptor = descriptor
        self._component = namespace or ""
        self._tails: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})

    def _tail(self, ts: int, deleted: bool) -> bytes:
        """The record's metadata columns as the end of its ``data`` object: ``,"_table":…,"_ab_cdc_deleted_at":…}``.
        Documents written in one transaction share their timestamp and a page holds few transactions, so
        this is rendered once per timestamp (the cache is bounded)."""
        tails = self._tails[deleted]
        try:
            return tails[ts]
        except KeyError:
            if len(tails) >= _STAMP_CACHE:
                tails.clear()
            stamp = cdc_timestamp(ts)
            meta = {
                TABLE: self.name,
                COMPONENT: self._component,
                TS: ts,
                DELETED: deleted,
                AB_CDC_LSN: ts,
                AB_CDC_UPDATED_AT: stamp,
                AB_CDC_DELETED_AT: stamp if deleted else None,
            }
            tail = tails[ts] = b"," + orjson.dumps(meta)[1:]
            return tail

    def records(self, values: list[ExportedValue], *, deleted: bool, out: bytearray) -> None:
        """Append one RECORD line per value to ``out``: the document (values converted in place: the sync
        engine hands each page on once, and copying every document would double the hot path's work) with
        the metadata columns spliced in before its closing brace. A document always has ``_id``, so its
        JSON is never the empty object."""
        if not values:
            return
        suffix = b',"emitted_at":%d}}\n' % int(datetime.now(UTC).timestamp() * 1000)
        head = self._head
        dumps = orjson.dumps
        tail = self._tail
        for v in values:
            doc = v.document
            _convert_in_place(doc)
            out += head
            out += dumps(doc)
            out[-1:] = tail(v.ts, deleted)
            out += suffix

    def state(self, stream_state: Mapping[str, Any], record_count: int, out: bytearray) -> None:
        """Append the per-stream STATE line; ``record_count`` is what was emitted since the previous one
        (``sourceStats.recordCount``, which the platform checks against the records it received)."""
        message = {
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": self._descriptor, "stream_state": dict(stream_state)},
                "sourceStats": {"recordCount": float(record_count)},
            },
        }
        out += orjson.dumps(message)
        out += b"\n"
