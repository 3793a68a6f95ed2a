"""Airbyte ``destination-convex`` 0.2.x replayed against a live server (airbyte.md §2).

``DestinationReplay.write`` is ``DestinationConvex.write`` + ``ConvexWriter``: one ``clear_tables`` for all
overwrite streams (bare stream names), ``add_primary_key_indexes`` for the dedup streams and a one-second
``primary_key_indexes_ready`` poll (a GET with a JSON body), then records buffered and flushed at exactly
1000, on every STATE message and at the end — empty flushes included, each carrying the full ``tables`` map.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from connectors.backend.engine import DeploymentConfig
from tests.conformance.clients import AirbyteDestination, current_documents, error_body, typed, write
from tests.integration.conftest import LiveServer, ServerFactory

SyncMode = Literal["overwrite", "append", "append_dedup"]
OVERWRITE_NOT_SUPPORTED = "Overwrite sync mode is not supported. Please use a different sync mode."
FLUSH_INTERVAL = 1000


@dataclass(frozen=True)
class Stream:
    name: str
    mode: SyncMode
    primary_key: list[list[str]] | None = None
    namespace: str | None = None
    json_schema: Any = None

    @property
    def table(self) -> str:
        """``table_name_for_stream``: records go to ``<namespace>_<stream>``."""
        return f"{self.namespace}_{self.name}" if self.namespace is not None else self.name


@dataclass(frozen=True)
class Record:
    stream: Stream
    data: dict[str, Any]


@dataclass(frozen=True)
class State:
    label: str


class DestinationReplay:
    """The connector's ``write``; asserts every response is what the connector accepts."""

    def __init__(self, client: AirbyteDestination, poll_interval_s: float = 1.0) -> None:
        self.client = client
        self.poll_interval_s = poll_interval_s
        self.batches: list[int] = []
        self.polls = 0

    def write(self, streams: list[Stream], messages: Iterable[Record | State]) -> Iterator[State]:
        tables = {
            s.table: {
                "primaryKey": s.primary_key if s.mode == "append_dedup" else None,
                "jsonSchema": s.json_schema if s.json_schema is not None else {"type": "object"},
            }
            for s in streams
        }
        to_clear = [s.name for s in streams if s.mode == "overwrite"]
        indexes = {s.name: s.primary_key for s in streams if s.mode == "append_dedup" and s.primary_key}
        if to_clear:
            self._empty_ok(self.client.clear_tables(to_clear))
        if indexes:
            self._empty_ok(self.client.add_primary_key_indexes(indexes))
            deadline = time.monotonic() + 60  # the connector polls forever
            while True:
                resp = self.client.primary_key_indexes_ready(list(indexes))
                self.polls += 1
                assert resp.status_code == 200, resp.text
                body = resp.json()
                assert set(body) == {"indexesReady"} and type(body["indexesReady"]) is bool
                if body["indexesReady"]:
                    break
                assert time.monotonic() < deadline
                time.sleep(self.poll_interval_s)
        buffer: list[dict[str, Any]] = []

        def flush() -> None:
            self._empty_ok(self.client.import_airbyte_records(tables, buffer))
            self.batches.append(len(buffer))
            buffer.clear()

        for message in messages:
            if isinstance(message, State):
                flush()
                yield message
            else:
                buffer.append({"tableName": message.stream.table, "data": message.data})
                if len(buffer) == FLUSH_INTERVAL:
                    flush()
        flush()

    @staticmethod
    def _empty_ok(resp: Any) -> None:
        assert resp.status_code == 200, (resp.request.url, resp.status_code, resp.text)
        assert resp.content == b"", resp.content


def user_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}


@pytest.fixture
def live(server_factory: ServerFactory) -> LiveServer:
    return server_factory.start()


def test_check_is_get_version_with_only_authorization(live: LiveServer) -> None:
    client = AirbyteDestination(live.url, live.import_key)
    resp = client.check()
    sent = client.sent[-1]
    assert "Convex-Client" not in sent.headers and sent.headers["Authorization"].startswith("Convex ")
    assert resp.status_code == 200 and resp.text
    # No authentication at all is fine too (and a bad key does not fail the check).
    assert AirbyteDestination(live.url, "prod:x|bad").check().status_code == 200


def test_sync_overwrite_append_and_dedup(live: LiveServer) -> None:
    dep = live.deployment
    write(dep, "overwrite_stream", [{"old": True}, {"old": True}])
    write(dep, "append_stream", [{"kept": True}])
    overwrite = Stream("overwrite_stream", "overwrite")
    append = Stream("append_stream", "append")
    dedup = Stream("dedup_stream", "append_dedup", [["int_col"]])
    cdc_deleted_at = "2024-01-01T00:00:00"
    messages: list[Record | State] = [
        *(
            Record(append, {"i": i, "_ab_cdc_lsn": i, "_ab_cdc_updated_at": "t", "_ab_cdc_deleted_at": None})
            for i in range(1500)
        ),
        State("s1"),
        Record(overwrite, {"_id": "source-id", "$weird": 1, "nested": {"_inner": 2, "arr": [{"$k": 3}, 4]}}),
        Record(overwrite, {"source_id": 1, "_id": 2}),  # collision: source_source_id
        Record(overwrite, {"my field": "kept as is", "big": 2**60 + 1, "f": 1.5, "t": True, "n": None}),
        # Dedup vector (streaming-import.md §6), then a deleted record that matches nothing.
        Record(dedup, {"int_col": 1, "value": "value1"}),
        Record(dedup, {"int_col": 1, "value": "value2"}),
        Record(dedup, {"int_col": 2, "value": "value1"}),
        Record(dedup, {"int_col": 3, "value": "value1"}),
        Record(dedup, {"int_col": 3, "_ab_cdc_deleted_at": cdc_deleted_at, "_ab_cdc_lsn": 9}),
        Record(dedup, {"int_col": 4, "_ab_cdc_deleted_at": cdc_deleted_at}),
        # Append mode ignores the deleted flag but still strips the CDC fields.
        Record(append, {"i": -1, "_ab_cdc_deleted_at": cdc_deleted_at}),
        State("s2"),
        State("s3"),
    ]
    replay = DestinationReplay(AirbyteDestination(live.url, live.import_key))
    echoed = list(replay.write([overwrite, append, dedup], messages))
    assert [s.label for s in echoed] == ["s1", "s2", "s3"]
    assert replay.batches == [1000, 500, 10, 0, 0]  # empty flushes are sent too
    assert replay.polls >= 1
    sent = replay.client.sent
    assert [(p.method, p.path_url) for p in sent[:3]] == [
        ("PUT", "/api/streaming_import/clear_tables"),
        ("PUT", "/api/streaming_import/add_primary_key_indexes"),
        ("GET", "/api/streaming_import/primary_key_indexes_ready"),
    ]
    assert sent[2].body == b'{"tables": ["dedup_stream"]}'  # json.dumps default separators
    assert sent[2].headers["Content-Type"] == "application/json"
    assert all(p.headers["Convex-Client"] == "streaming-import-0.1.0" for p in sent)

    overwritten = sorted(
        (user_fields(d) for d in current_documents(dep, "overwrite_stream").values()), key=lambda d: sorted(d)
    )
    assert typed(overwritten) == typed(
        sorted(
            [
                {
                    "source_id": "source-id",
                    "source_weird": 1.0,
                    "nested": {"source_inner": 2.0, "arr": [{"source_k": 3.0}, 4.0]},
                },
                {"source_id": 1.0, "source_source_id": 2.0},
                {"my field": "kept as is", "big": float(2**60 + 1), "f": 1.5, "t": True, "n": None},
            ],
            key=lambda d: sorted(d),
        )
    )

    appended = [user_fields(d) for d in current_documents(dep, "append_stream").values()]
    assert len(appended) == 1 + 1500 + 1
    assert {"kept": True} in appended and {"i": -1.0} in appended
    numbers = [d["i"] for d in appended if "i" in d]
    assert all(type(n) is float for n in numbers) and sorted(numbers) == [-1.0, *map(float, range(1500))]
    assert not any(k.startswith("source_ab_cdc") or k.startswith("_ab") for d in appended for k in d)

    deduped = sorted(
        (user_fields(d) for d in current_documents(dep, "dedup_stream").values()), key=lambda d: d["int_col"]
    )
    assert typed(deduped) == typed([{"int_col": 1.0, "value": "value2"}, {"int_col": 2.0, "value": "value1"}])


def test_second_dedup_sync_replaces_whole_documents(live: LiveServer) -> None:
    dedup = Stream("people", "append_dedup", [["id"], ["org", "code"]])
    first = [Record(dedup, {"id": 1, "org": {"code": "a"}, "name": "ada", "extra": 1})]
    replay = DestinationReplay(AirbyteDestination(live.url, live.import_key))
    list(replay.write([dedup], first))
    assert live.deployment.index("people", "_by_airbyte_primary_key") is not None
    second = [
        Record(dedup, {"id": 1, "org": {"code": "a"}, "name": "ada lovelace"}),
        Record(dedup, {"id": 1, "org": {"code": "b"}, "name": "other org"}),
        State("s"),
    ]
    list(replay.write([dedup], second))  # add_primary_key_indexes again: a no-op
    docs = sorted((user_fields(d) for d in current_documents(live.deployment, "people").values()), key=str)
    assert typed(docs) == typed(
        sorted(
            [
                {"id": 1.0, "org": {"code": "a"}, "name": "ada lovelace"},  # `extra` is gone
                {"id": 1.0, "org": {"code": "b"}, "name": "other org"},
            ],
            key=str,
        )
    )


def test_index_poll_waits_for_a_background_backfill(server_factory: ServerFactory) -> None:
    live = server_factory.start(DeploymentConfig(background=True, backfill_batch=50))
    # Float64 keys, as Airbyte would have written them (an Int64 7 never equals a Float64 7.0).
    write(live.deployment, "big", [{"int_col": float(i)} for i in range(3000)])
    dedup = Stream("big", "append_dedup", [["int_col"]])
    replay = DestinationReplay(AirbyteDestination(live.url, live.import_key), poll_interval_s=0.2)
    list(replay.write([dedup], [Record(dedup, {"int_col": 7, "v": "new"})]))
    docs = current_documents(live.deployment, "big")
    assert len(docs) == 3000
    assert [user_fields(d) for d in docs.values() if d.get("v") == "new"] == [{"int_col": 7.0, "v": "new"}]


def test_namespaced_streams_write_where_the_connector_sends_them(live: LiveServer) -> None:
    """The connector clears ``<stream>`` but writes ``<namespace>_<stream>`` (streaming-import.md §13.7)."""
    stream = Stream("users", "overwrite", namespace="public")
    replay = DestinationReplay(AirbyteDestination(live.url, live.import_key))
    list(replay.write([stream], [Record(stream, {"name": "ada"})]))
    dep = live.deployment
    assert dep.find_table("users") is not None and current_documents(dep, "users") == {}
    assert [user_fields(d) for d in current_documents(dep, "public_users").values()] == [{"name": "ada"}]


def test_large_batch_up_to_the_body_limit(live: LiveServer) -> None:
    """~19 MiB in one request (limit 20,971,520 bytes), more than one transaction's 16 MiB of writes."""
    stream = Stream("blobs", "append")
    text = "x" * (190 * 1024)
    messages = [Record(stream, {"n": i, "text": text}) for i in range(100)]
    replay = DestinationReplay(AirbyteDestination(live.url, live.import_key))
    list(replay.write([stream], messages))
    body_size = len(replay.client.sent[0].body or b"")
    assert 18 * 2**20 < body_size < 20_971_520
    docs = current_documents(live.deployment, "blobs")
    assert sorted(d["n"] for d in docs.values()) == [float(i) for i in range(100)]
    assert all(d["text"] == text for d in docs.values())


def test_replace_tables_is_always_overwrite_not_supported(live: LiveServer) -> None:
    client = AirbyteDestination(live.url, live.import_key)
    error_body(
        client.replace_tables({"temp_1_users": "users"}),
        400,
        "OverwriteNotSupported",
        OVERWRITE_NOT_SUPPORTED,
    )
    anonymous = AirbyteDestination(live.url, "")
    anonymous.headers.pop("Authorization")
    error_body(anonymous.replace_tables({}), 400, "OverwriteNotSupported", OVERWRITE_NOT_SUPPORTED)


def test_numbers_are_float64_even_when_integral(live: LiveServer) -> None:
    stream = Stream("nums", "append")
    values = [0, 1, -1, 2**53 + 1, 1e300, 0.1]
    replay = DestinationReplay(AirbyteDestination(live.url, live.import_key))
    list(replay.write([stream], [Record(stream, {"v": v, "arr": [v]}) for v in values]))
    stored = sorted(d["v"] for d in current_documents(live.deployment, "nums").values())
    assert all(type(v) is float for v in stored)
    assert stored == sorted(float(v) for v in values)
    assert not any(math.isnan(v) for v in stored)


def test_stream_and_field_names_are_made_valid_by_the_server(live: LiveServer) -> None:
    """The connector sends names as Airbyte has them; the server applies ValidIdentifier (streaming-import.md
    §3) to table names in every call and to every key of the data."""
    weird = Stream("My Table", "overwrite")
    data = {"ok_field": 1, "my field": 2, "naïve": 3, "_system": 4, "nested": [{"$x": {"_y": 5}}]}
    replay = DestinationReplay(AirbyteDestination(live.url, live.import_key))
    list(replay.write([weird], [Record(weird, data)]))
    (doc,) = current_documents(live.deployment, "source_my_table").values()
    assert typed(user_fields(doc)) == typed(
        {
            "ok_field": 1.0,
            "my field": 2.0,
            "source_naive": 3.0,
            "source_system": 4.0,
            "nested": [{"source_x": {"source_y": 5.0}}],
        }
    )
    # A second overwrite sync clears the same (renamed) table.
    list(replay.write([weird], [Record(weird, {"second": True})]))
    assert [user_fields(d) for d in current_documents(live.deployment, "source_my_table").values()] == [
        {"second": True}
    ]


def test_dedup_stream_with_a_name_the_server_renames(live: LiveServer) -> None:
    """Index calls and records all use the raw stream name; the server maps each to the same table."""
    stream = Stream("Dedup Me", "append_dedup", [["key"]])
    replay = DestinationReplay(AirbyteDestination(live.url, live.import_key))
    list(replay.write([stream], [Record(stream, {"key": "a", "v": 1}), Record(stream, {"key": "a", "v": 2})]))
    assert live.deployment.index("source_dedup_me", "_by_airbyte_primary_key") is not None
    docs = [user_fields(d) for d in current_documents(live.deployment, "source_dedup_me").values()]
    assert docs == [{"key": "a", "v": 2.0}]


def test_primary_key_on_a_system_field_is_rejected_up_front(live: LiveServer) -> None:
    """A Convex-to-Convex dedup sync has primary key `_id` (source-convex's `primary_key`): the index call is
    a 400 before any record is written. streaming-import.md §8.1 lists both the reserved-field rule and the
    `_id` rule for it; which code `_id` gets is not pinned there, a plain reserved field's is."""
    client = AirbyteDestination(live.url, live.import_key)
    resp = client.add_primary_key_indexes({"posts": [["_id"]]})
    assert resp.status_code == 400 and resp.json()["code"] in ("IndexFieldNameReserved", "InvalidPrimaryKey")
    error_body(client.add_primary_key_indexes({"posts": [["_ab_cdc_lsn"]]}), 400, "IndexFieldNameReserved")
    error_body(client.add_primary_key_indexes({"posts": [["my field"]]}), 400, "InvalidPrimaryKey")
    assert live.deployment.find_table("posts") is None
