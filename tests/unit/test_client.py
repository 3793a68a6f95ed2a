"""Wire behaviour of connectors.client against a scripted loopback HTTP server.

The fake server records every request (method, path, query, headers, body) and answers from a queue of
scripted responses, so these tests pin down exactly what goes over the wire. Integration tests against the
real server live elsewhere.
"""

from __future__ import annotations

import gzip
import pickle
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from connectors.client import (
    AirbyteMessage,
    AirbyteStream,
    AmbiguousWriteError,
    ClientConfig,
    ConvexApiError,
    ConvexClient,
    ConvexConnectionError,
    FivetranOperation,
    IndexWaitTimeoutError,
    InvalidClientConfigError,
    TableColumns,
    UnexpectedResponseError,
)
from connectors.errors import ConvexError, Reaction
from connectors.selection import Selection

KEY = "prod:happy-animal-123|eyJ2MiI6ImZha2Vfc2VjcmV0X2tleV9mb3JfdGVzdHMifQ=="
BIG_TS = 1718000000123456789  # > 2^53: a float would corrupt it
MAX_I64 = 2**63 - 1


# --- fake server ----------------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    client_port: int

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Scripted:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._responses: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def reply(
        self,
        status: int = 200,
        *,
        json: Any = None,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        gzipped: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        if body is None:
            raw = b"" if json is None else orjson.dumps(json)
        else:
            raw = body.encode() if isinstance(body, str) else body
        hdrs = dict(headers or {})
        if json is not None:
            hdrs.setdefault("Content-Type", "application/json")
        if gzipped:
            raw = gzip.compress(raw)
            hdrs["Content-Encoding"] = "gzip"
        with self._lock:
            self._responses.append(Scripted(status, raw, hdrs, delay_s))

    def reply_json_null(self) -> None:
        self.reply(body=b"null", headers={"Content-Type": "application/json"})

    def next_response(self) -> Scripted:
        with self._lock:
            if self._responses:
                return self._responses.popleft()
        # 418: not retried by the client, so a missing script fails fast.
        return Scripted(418, b'{"code":"NoScriptedResponse","message":"test server queue empty"}')

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so connection pooling is observable

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            server.requests.append(
                Recorded(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    client_port=self.client_address[1],
                )
            )
            scripted = server.next_response()
            if scripted.delay_s:
                time.sleep(scripted.delay_s)
            try:
                self.send_response(scripted.status)
                for name, value in scripted.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(scripted.body)))
                self.end_headers()
                self.wfile.write(scripted.body)
            except OSError:
                pass  # the client gave up (timeout test)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    srv.start()
    yield srv
    srv.stop()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(server: FakeServer, sleeps: Sleeps) -> Iterator[Callable[..., ConvexClient]]:
    clients: list[ConvexClient] = []

    def make(**overrides: Any) -> ConvexClient:
        config = ClientConfig(
            **{"deployment_url": server.url, "deploy_key": KEY, "max_retries": 3, **overrides}
        )
        # rand=1.0 makes the jittered backoff deterministic: its upper bound.
        client = ConvexClient(config, sleep=sleeps, rand=lambda: 1.0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., ConvexClient]) -> ConvexClient:
    return make_client()


def snapshot_page(values: list[dict], snapshot: int, cursor: str | None, has_more: bool) -> dict:
    return {"values": values, "snapshot": snapshot, "cursor": cursor, "hasMore": has_more}


def delta_page(values: list[dict], cursor: int, has_more: bool) -> dict:
    return {"values": values, "cursor": cursor, "hasMore": has_more}


def row(table: str, doc_id: str, ts: int = BIG_TS, component: str = "", **fields: Any) -> dict:
    return {"_component": component, "_table": table, "_ts": ts, "_id": doc_id, **fields}


# --- headers and config ---------------------------------------------------------------------------------


def test_every_request_sends_auth_and_client_headers(server: FakeServer, client: ConvexClient) -> None:
    server.reply_json_null()
    server.reply(body="1.2.3")
    client.test_streaming_export_connection()
    assert client.version() == "1.2.3"
    for req in server.requests:
        assert req.headers["authorization"] == f"Convex {KEY}"
        assert req.headers["convex-client"] == "convex-connectors-0.1.0"
        # The fake server is on loopback, where gzip is not asked for by default.
        assert req.headers["accept-encoding"] == "identity"
    # One pooled keep-alive connection serves both calls.
    assert len({req.client_port for req in server.requests}) == 1


def test_gzip_is_requested_except_on_loopback(
    server: FakeServer, make_client: Callable[..., ConvexClient]
) -> None:
    assert ClientConfig(deployment_url="https://happy-animal-123.convex.cloud", deploy_key="k").gzip
    assert not ClientConfig(deployment_url="http://localhost:3210", deploy_key="k").gzip
    assert not ClientConfig(deployment_url="http://[::1]:3210", deploy_key="k").gzip
    forced = make_client(accept_gzip=True)
    server.reply_json_null()
    forced.test_streaming_export_connection()
    assert "gzip" in server.requests[-1].headers["accept-encoding"]


def test_custom_client_name(server: FakeServer, make_client: Callable[..., ConvexClient]) -> None:
    server.reply_json_null()
    make_client(client_name="fivetran-export", client_version="2.1.0").test_streaming_export_connection()
    assert server.requests[0].headers["convex-client"] == "fivetran-export-2.1.0"


def test_config_normalizes_url_and_key() -> None:
    cfg = ClientConfig("  HTTPS://aware-llama-900.convex.cloud  ", f"  {KEY}\n")
    assert cfg.deployment_url == "https://aware-llama-900.convex.cloud/"
    assert cfg.deploy_key == KEY
    assert ClientConfig("http://127.0.0.1:3210///", "k").deployment_url == "http://127.0.0.1:3210/"
    assert (
        ClientConfig("https://proxy.example/convex/", "k").deployment_url == "https://proxy.example/convex/"
    )


@pytest.mark.parametrize(
    "url",
    ["", "aware-llama-900.convex.cloud", "ftp://host/", "https://", "https://u:p@host/", "https://h/?a=1",
     "https://h:99999/", "https://h/#x"],
)  # fmt: skip
def test_config_rejects_bad_urls(url: str) -> None:
    with pytest.raises(InvalidClientConfigError):
        ClientConfig(url, KEY)


@pytest.mark.parametrize(
    "overrides",
    [
        {"deploy_key": ""},
        {"deploy_key": "   "},
        {"deploy_key": "abc\r\ndef"},
        {"client_name": ""},
        {"client_version": "1 2"},
        {"timeout_s": 0},
        {"max_retries": -1},
        {"backoff_base_s": -1.0},
        {"backoff_max_s": 0.1},
    ],
)
def test_config_rejects_bad_values(overrides: dict) -> None:
    with pytest.raises(InvalidClientConfigError) as info:
        ClientConfig(**{"deployment_url": "https://x.convex.cloud", "deploy_key": KEY, **overrides})
    assert KEY not in str(info.value)


def test_key_never_in_reprs() -> None:
    cfg = ClientConfig("https://x.convex.cloud", KEY)
    assert KEY not in repr(cfg)
    assert "***" in repr(cfg)
    assert "|" not in repr(cfg)
    client = ConvexClient(cfg)
    try:
        assert KEY not in repr(client)
        assert KEY not in repr(client._session.auth)
    finally:
        client.close()
    assert cfg == ClientConfig("https://x.convex.cloud/", KEY)  # equality still compares the key


# --- test_streaming_export_connection ------------------------------------------------------------------


def test_test_connection_requires_json_null(server: FakeServer, client: ConvexClient) -> None:
    server.reply_json_null()
    assert client.test_streaming_export_connection() is None
    req = server.requests[0]
    assert (req.method, req.path, req.body) == ("GET", "/api/test_streaming_export_connection", b"")

    server.reply(json={})
    with pytest.raises(UnexpectedResponseError) as info:
        client.test_streaming_export_connection()
    assert "`null`" in str(info.value)

    server.reply(body=b"")
    with pytest.raises(UnexpectedResponseError) as info:
        client.test_streaming_export_connection()
    assert "Failed to deserialize query result" in str(info.value)
    assert not info.value.retriable


# --- list_snapshot ----------------------------------------------------------------------------------------


def test_list_snapshot_request_body_is_complete(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=snapshot_page([], BIG_TS, None, False))
    client.list_snapshot(fmt="json")
    req = server.requests[0]
    assert (req.method, req.path) == ("POST", "/api/list_snapshot")
    assert req.headers["content-type"] == "application/json"
    # Exactly the Rust source's shape: every key present, nulls included, in this order.
    assert req.body == (b'{"snapshot":null,"cursor":null,"selection":{"_other":"incl"},"format":"json"}')


def test_list_snapshot_default_format_and_long_spelling(
    server: FakeServer, make_client: Callable[..., ConvexClient]
) -> None:
    server.reply(json=snapshot_page([], 5, None, False))
    sel = Selection.parse(
        {"": {"users": {"password": "excl", "_other": "incl"}, "_other": "excl"}, "_other": "excl"}
    )
    make_client(short_selection_spelling=False).list_snapshot(snapshot=BIG_TS, cursor="c1", selection=sel)
    assert server.requests[0].json() == {
        "snapshot": BIG_TS,
        "cursor": "c1",
        "selection": {"": {"users": {"password": "excluded", "_other": "included"}, "_other": "excluded"},
                      "_other": "excluded"},
        "format": "convex_encoded_json",
    }  # fmt: skip
    assert str(BIG_TS).encode() in server.requests[0].body


def test_list_snapshot_parses_values_and_big_integers(server: FakeServer, client: ConvexClient) -> None:
    values = [
        row("users", "id1", ts=BIG_TS, _creationTime=1718000000000.5, name="Ada", age="42", _future="x"),
        row("jobs", "id2", ts=MAX_I64, component="cron", _creationTime=1.0),
    ]
    server.reply(json=snapshot_page(values, MAX_I64, None, False))
    page = client.list_snapshot(fmt="json")
    assert page.snapshot == MAX_I64
    assert page.cursor is None and page.has_more is False
    first, second = page.values
    assert (first.component, first.table, first.ts, first.deleted) == ("", "users", BIG_TS, False)
    assert type(first.ts) is int
    # Metadata removed, unknown "_" keys dropped, _id/_creationTime and user fields kept as JSON.
    assert first.document == {"_id": "id1", "_creationTime": 1718000000000.5, "name": "Ada", "age": "42"}
    assert (second.component, second.table, second.ts) == ("cron", "jobs", MAX_I64)


def test_list_snapshot_gzip_response(server: FakeServer, client: ConvexClient) -> None:
    server.reply(
        json=snapshot_page([row("users", "id1", name="x" * 5000)], BIG_TS, None, False), gzipped=True
    )
    page = client.list_snapshot(fmt="json")
    assert page.values[0].document["name"] == "x" * 5000
    assert page.snapshot == BIG_TS


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"values": [], "cursor": None, "hasMore": False}, "`snapshot`"),
        ({"values": [], "snapshot": 1.5e18, "cursor": None, "hasMore": False}, "`snapshot`"),
        ({"values": [], "snapshot": 1, "cursor": 3, "hasMore": False}, "`cursor`"),
        ({"values": [], "snapshot": 1, "cursor": None}, "`hasMore`"),
        ({"snapshot": 1, "cursor": None, "hasMore": False}, "`values`"),
        ({"values": [{"_table": "t", "_ts": 1, "_id": "i"}], "snapshot": 1, "cursor": None, "hasMore": False},
         "_component"),
        ({"values": [], "snapshot": 1, "cursor": None, "hasMore": True}, "Missing cursor when has_more was set"),
        ([], "expected an object"),
    ],
)  # fmt: skip
def test_list_snapshot_rejects_malformed_pages(
    server: FakeServer, client: ConvexClient, payload: Any, fragment: str
) -> None:
    server.reply(json=payload)
    with pytest.raises(UnexpectedResponseError) as info:
        client.list_snapshot(fmt="json")
    assert fragment in str(info.value)
    assert info.value.endpoint == "list_snapshot"


def test_iter_snapshot_pages_follows_cursor_through_empty_pages(
    server: FakeServer, client: ConvexClient
) -> None:
    server.reply(json=snapshot_page([row("a", "1"), row("a", "2")], BIG_TS, "c1", True))
    server.reply(json=snapshot_page([], BIG_TS, "c2", True))  # table boundary: empty page, more to come
    server.reply(json=snapshot_page([row("b", "3")], BIG_TS, "c3", True))
    server.reply(json=snapshot_page([], BIG_TS, None, False))
    sel = Selection.single_component("")
    pages = list(client.iter_snapshot_pages(selection=sel, fmt="json"))
    assert [len(p.values) for p in pages] == [2, 0, 1, 0]
    assert [p.has_more for p in pages] == [True, True, True, False]
    sent = [req.json() for req in server.requests]
    assert [(b["snapshot"], b["cursor"]) for b in sent] == [
        (None, None),
        (BIG_TS, "c1"),
        (BIG_TS, "c2"),
        (BIG_TS, "c3"),
    ]
    assert all(b["selection"] == sel.to_json(short=True) and b["format"] == "json" for b in sent)


def test_iter_snapshot_pages_resumes_from_state(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=snapshot_page([row("a", "9")], 77, None, False))
    pages = list(client.iter_snapshot_pages(snapshot=77, cursor="resume", fmt="json"))
    assert len(pages) == 1
    assert (server.requests[0].json()["snapshot"], server.requests[0].json()["cursor"]) == (77, "resume")


def test_iter_snapshot_pages_rejects_changed_snapshot(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=snapshot_page([], 100, "c1", True))
    server.reply(json=snapshot_page([], 101, None, False))
    with pytest.raises(UnexpectedResponseError) as info:
        list(client.iter_snapshot_pages(fmt="json"))
    assert "snapshot changed" in str(info.value)

    server.reply(json=snapshot_page([], 5, None, False))
    with pytest.raises(UnexpectedResponseError):
        list(client.iter_snapshot_pages(snapshot=4, fmt="json"))


def test_iter_snapshot_pages_missing_cursor(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=snapshot_page([], 100, "c1", True))
    server.reply(json=snapshot_page([], 100, None, True))
    it = client.iter_snapshot_pages(fmt="json")
    assert next(it).cursor == "c1"
    with pytest.raises(UnexpectedResponseError) as info:
        next(it)
    assert "Missing cursor when has_more was set" in str(info.value)


def test_iter_snapshot_pages_rejects_stuck_cursor(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=snapshot_page([], 100, "c1", True))
    server.reply(json=snapshot_page([], 100, "c1", True))
    with pytest.raises(UnexpectedResponseError) as info:
        list(client.iter_snapshot_pages(fmt="json"))
    assert "did not advance" in str(info.value)
    assert len(server.requests) == 2


# --- document_deltas --------------------------------------------------------------------------------------


def test_document_deltas_request_and_parse(server: FakeServer, client: ConvexClient) -> None:
    values = [
        {**row("users", "id1", ts=BIG_TS + 1, name="Ada L."), "_deleted": False, "_creationTime": 2.5},
        {**row("users", "id2", ts=BIG_TS + 1), "_deleted": True},
    ]
    server.reply(json=delta_page(values, BIG_TS + 1, False))
    page = client.document_deltas(cursor=BIG_TS, fmt="json")
    req = server.requests[0]
    assert (req.method, req.path) == ("POST", "/api/document_deltas")
    assert req.body == b'{"cursor":1718000000123456789,"selection":{"_other":"incl"},"format":"json"}'
    assert page.cursor == BIG_TS + 1 and page.has_more is False
    live, gone = page.values
    assert (live.deleted, live.document) == (False, {"_id": "id1", "name": "Ada L.", "_creationTime": 2.5})
    assert (gone.deleted, gone.document, gone.ts) == (True, {"_id": "id2"}, BIG_TS + 1)


def test_document_deltas_default_format(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=delta_page([], 10, False))
    client.document_deltas(cursor=9, selection=Selection.single_table("cron", "jobs"))
    assert server.requests[0].json() == {
        "cursor": 9,
        "selection": {"cron": {"jobs": {"_other": "incl"}, "_other": "excl"}, "_other": "excl"},
        "format": "convex_encoded_json",
    }


@pytest.mark.parametrize(
    "payload",
    [
        delta_page([row("t", "1")], 5, False),  # _deleted is required on deltas
        delta_page([{**row("t", "1"), "_deleted": "no"}], 5, False),
        {"values": [], "cursor": "5", "hasMore": False},
        {"values": [], "cursor": 5},
    ],
)
def test_document_deltas_rejects_malformed_pages(
    server: FakeServer, client: ConvexClient, payload: dict
) -> None:
    server.reply(json=payload)
    with pytest.raises(UnexpectedResponseError):
        client.document_deltas(cursor=1, fmt="json")


def test_iter_delta_pages(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=delta_page([{**row("t", "1", ts=BIG_TS + 5), "_deleted": False}], BIG_TS + 5, True))
    server.reply(json=delta_page([], BIG_TS + 9, True))  # only skipped rows
    server.reply(json=delta_page([], BIG_TS + 20, False))  # exhausted: cursor advanced to "now"
    pages = list(client.iter_delta_pages(BIG_TS, fmt="json"))
    assert [p.cursor for p in pages] == [BIG_TS + 5, BIG_TS + 9, BIG_TS + 20]
    assert [req.json()["cursor"] for req in server.requests] == [BIG_TS, BIG_TS + 5, BIG_TS + 9]


def test_iter_delta_pages_rejects_stuck_or_backwards_cursor(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=delta_page([], 10, True))
    with pytest.raises(UnexpectedResponseError):
        list(client.iter_delta_pages(10, fmt="json"))
    server.reply(json=delta_page([], 9, False))
    with pytest.raises(UnexpectedResponseError):
        list(client.iter_delta_pages(10, fmt="json"))
    # An unchanged cursor on the final page is fine (quiet deployment, cursor >= request cursor).
    server.reply(json=delta_page([], 10, False))
    assert [p.cursor for p in client.iter_delta_pages(10, fmt="json")] == [10]


# --- decoding (needs connectors.values, written concurrently) ----------------------------------------------


def test_encoded_json_values_are_decoded(server: FakeServer, client: ConvexClient) -> None:
    pytest.importorskip("connectors.values")
    doc = {
        "_creationTime": 1718000000000.5,
        "age": {"$integer": "KgAAAAAAAAA="},
        "nan": {"$float": "AAAAAAAA+H8="},
        "negzero": {"$float": "AAAAAAAAAIA="},
        "blob": {"$bytes": "ABCD"},
        "n": 42,
        "car": {"make": "Honda", "year": {"$integer": "3gcAAAAAAAA="}},
    }
    server.reply(json=snapshot_page([row("users", "id1", **doc)], BIG_TS, None, False))
    (value,) = client.list_snapshot().values
    d = value.document
    assert d["age"] == 42 and type(d["age"]) is int
    assert d["nan"] != d["nan"]
    assert d["negzero"] == 0.0 and str(d["negzero"]) == "-0.0"
    assert d["blob"] == b"\x00\x10\x83"
    assert d["n"] == 42.0 and type(d["n"]) is float
    assert d["car"] == {"make": "Honda", "year": 2014}
    assert d["_id"] == "id1" and d["_creationTime"] == 1718000000000.5


def test_export_json_values_are_decoded(server: FakeServer, client: ConvexClient) -> None:
    pytest.importorskip("connectors.values")
    body = (
        b'{"values":[{"_component":"","_table":"t","_ts":1718000000123456789,"_id":"i",'
        b'"n":5,"f":5.0,"b":{"$bytes":"ABCD"}}],"snapshot":1718000000123456789,"cursor":null,"hasMore":false}'
    )
    server.reply(body=body, headers={"Content-Type": "application/json"})
    (value,) = client.list_snapshot(fmt="export_json").values
    assert server.requests[0].json()["format"] == "export_json"
    assert value.document == {"_id": "i", "n": 5, "f": 5.0, "b": b"\x00\x10\x83"}
    assert type(value.document["n"]) is int and type(value.document["f"]) is float


def test_invalid_encoded_value_is_unexpected_response(server: FakeServer, client: ConvexClient) -> None:
    pytest.importorskip("connectors.values")
    server.reply(json=snapshot_page([row("users", "id1", bad={"$integer": "AQ=="})], BIG_TS, None, False))
    with pytest.raises(UnexpectedResponseError) as info:
        client.list_snapshot()
    assert "'bad'" in str(info.value)


def test_empty_encoded_page_needs_no_decoder(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=snapshot_page([], 1, None, False))
    assert client.list_snapshot().values == []


# --- schemas ----------------------------------------------------------------------------------------------


def test_json_schemas_query(server: FakeServer, client: ConvexClient) -> None:
    schema = {"users": {"type": "object", "properties": {"_id": {"type": "string"}}}}
    server.reply(json=schema)
    assert client.json_schemas(delta_schema=True) == schema
    req = server.requests[0]
    assert (req.method, req.path, req.body) == ("GET", "/api/json_schemas", b"")
    assert req.query == {"deltaSchema": ["true"], "format": ["json"]}

    server.reply(json={"": schema})
    client.json_schemas(fmt="convex_encoded_json", by_component=True)
    assert server.requests[1].query == {
        "deltaSchema": ["false"],
        "format": ["convex_encoded_json"],
        "byComponent": ["true"],
    }


def test_get_table_column_names(server: FakeServer, client: ConvexClient) -> None:
    server.reply(
        json={
            "byComponent": {
                "": [{"name": "users", "columns": ["_creationTime", "_id", "name"]}],
                "parent/child": [{"name": "empty", "columns": ["_creationTime", "_id"]}],
            }
        }
    )
    assert client.get_table_column_names() == {
        "": [TableColumns("users", ("_creationTime", "_id", "name"))],
        "parent/child": [TableColumns("empty", ("_creationTime", "_id"))],
    }
    assert (server.requests[0].method, server.requests[0].path) == ("GET", "/api/get_table_column_names")

    server.reply(json={"byComponent": {"": [{"name": "users"}]}})
    with pytest.raises(UnexpectedResponseError):
        client.get_table_column_names()


# --- streaming import -------------------------------------------------------------------------------------


def test_import_airbyte_records(server: FakeServer, client: ConvexClient) -> None:
    server.reply()
    server.reply()
    tables = {
        "ns_orders": AirbyteStream(primary_key=[["id"], ["meta", "region"]], json_schema={"type": "object"}),
        "events": AirbyteStream(primary_key=None, json_schema={}),
    }
    messages = [
        AirbyteMessage("ns_orders", {"id": 1, "meta": {"region": "eu"}, "big": BIG_TS}),
        AirbyteMessage("events", {"kind": "click"}),
    ]
    client.import_airbyte_records(tables, messages)
    client.import_airbyte_records(tables, [])  # empty batches are valid and sent
    first, second = server.requests
    assert (first.method, first.path) == ("POST", "/api/streaming_import/import_airbyte_records")
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {
        "tables": {
            "ns_orders": {"primaryKey": [["id"], ["meta", "region"]], "jsonSchema": {"type": "object"}},
            "events": {"primaryKey": None, "jsonSchema": {}},
        },
        "messages": [
            {"tableName": "ns_orders", "data": {"id": 1, "meta": {"region": "eu"}, "big": BIG_TS}},
            {"tableName": "events", "data": {"kind": "click"}},
        ],
    }
    assert second.json()["messages"] == []


def test_table_management_calls(server: FakeServer, client: ConvexClient) -> None:
    for _ in range(2):
        server.reply()
    client.clear_tables(["a", "b"])
    client.add_primary_key_indexes({"orders": [["id"], ["meta", "region"]]})
    calls = [(r.method, r.path, r.json()) for r in server.requests]
    assert calls == [
        ("PUT", "/api/streaming_import/clear_tables", {"tableNames": ["a", "b"]}),
        ("PUT", "/api/streaming_import/add_primary_key_indexes", {"indexes": {"orders": [["id"], ["meta", "region"]]}}),
    ]  # fmt: skip


def test_replace_tables_surfaces_overwrite_not_supported(server: FakeServer, client: ConvexClient) -> None:
    message = "Overwrite sync mode is not supported. Please use a different sync mode."
    server.reply(400, json={"code": "OverwriteNotSupported", "message": message})
    with pytest.raises(ConvexApiError) as info:
        client.replace_tables({"tmp_t": "t"})
    req = server.requests[0]
    assert (req.method, req.path, req.json()) == (
        "POST",
        "/api/streaming_import/replace_tables",
        {"tableNames": {"tmp_t": "t"}},
    )
    err = info.value
    assert (err.status, err.code, err.message) == (400, "OverwriteNotSupported", message)
    assert err.endpoint == "streaming_import/replace_tables"
    assert not err.retriable
    assert len(server.requests) == 1


def test_primary_key_indexes_ready_is_get_with_body(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json={"indexesReady": False})
    server.reply(json={"indexesReady": True})
    assert client.primary_key_indexes_ready(["orders", "users"]) is False
    assert client.primary_key_indexes_ready([]) is True
    req = server.requests[0]
    assert (req.method, req.path) == ("GET", "/api/streaming_import/primary_key_indexes_ready")
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {"tables": ["orders", "users"]}
    assert server.requests[1].json() == {"tables": []}

    server.reply(json={"indexesReady": "yes"})
    with pytest.raises(UnexpectedResponseError):
        client.primary_key_indexes_ready(["orders"])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_for_primary_key_indexes(server: FakeServer) -> None:
    clock = FakeClock()
    with ConvexClient(ClientConfig(server.url, KEY), sleep=clock.sleep, clock=clock) as client:
        for ready in (False, False, True):
            server.reply(json={"indexesReady": ready})
        client.wait_for_primary_key_indexes(["orders"], timeout_s=10)
        assert clock.sleeps == [1.0, 1.0]
        assert len(server.requests) == 3

        for _ in range(10):
            server.reply(json={"indexesReady": False})
        with pytest.raises(IndexWaitTimeoutError) as info:
            client.wait_for_primary_key_indexes(["orders"], timeout_s=2.5, poll_interval_s=1.0)
        assert "orders" in str(info.value)
        assert clock.sleeps[2:] == [1.0, 1.0, 0.5]  # the last sleep is cut to the deadline
        assert len(server.requests) == 3 + 4


def test_apply_fivetran_operations_sends_bare_array(server: FakeServer, client: ConvexClient) -> None:
    server.reply()
    server.reply()
    row_json = {
        "id": {"$integer": "AQAAAAAAAAA="},
        "title": "Dune",
        "fivetran": {"synced": 1704773419156.0576},
    }
    client.apply_fivetran_operations(
        [
            FivetranOperation("public_books", "Upsert", row_json),
            FivetranOperation("public_books", "HardDelete", {"id": {"$integer": "AQAAAAAAAAA="}}),
        ]
    )
    client.apply_fivetran_operations([])
    req = server.requests[0]
    assert (req.method, req.path) == ("POST", "/api/streaming_import/apply_fivetran_operations")
    assert req.json() == [
        {"table": "public_books", "operation": "Upsert", "row": row_json},
        {"table": "public_books", "operation": "HardDelete", "row": {"id": {"$integer": "AQAAAAAAAAA="}}},
    ]
    assert server.requests[1].body == b"[]"


def test_encode_row() -> None:
    pytest.importorskip("connectors.values")
    from connectors.client import encode_row

    encoded = encode_row({"id": 1, "price": 1.5, "raw": b"\x00\x10\x83", "fivetran": {"synced": 2.0}})
    assert encoded == {
        "id": {"$integer": "AQAAAAAAAAA="},
        "price": 1.5,
        "raw": {"$bytes": "ABCD"},
        "fivetran": {"synced": 2.0},
    }


def test_fivetran_create_and_truncate(server: FakeServer, client: ConvexClient) -> None:
    for _ in range(4):
        server.reply()
    definition = {"tableName": "public_books", "indexes": [{"indexDescriptor": "_fivetran_by_synced", "fields": ["fivetran.synced"]}]}  # fmt: skip
    client.fivetran_create_table(definition)
    client.fivetran_truncate_table("public_books", None, "HardDelete")
    client.fivetran_truncate_table("public_books", datetime(2024, 2, 9, tzinfo=UTC), "SoftDelete")
    plus_two = timezone(timedelta(hours=2))
    client.fivetran_truncate_table("t", datetime(2024, 2, 9, 2, 0, 0, 250000, tzinfo=plus_two), "HardDelete")
    bodies = [(r.method, r.path, r.json()) for r in server.requests]
    assert bodies == [
        ("POST", "/api/streaming_import/fivetran_create_table", {"tableDefinition": definition}),
        ("POST", "/api/streaming_import/fivetran_truncate_table",
         {"tableName": "public_books", "deleteBefore": None, "deleteType": "HardDelete"}),
        ("POST", "/api/streaming_import/fivetran_truncate_table",
         {"tableName": "public_books", "deleteBefore": "2024-02-09T00:00:00Z", "deleteType": "SoftDelete"}),
        ("POST", "/api/streaming_import/fivetran_truncate_table",
         {"tableName": "t", "deleteBefore": "2024-02-09T00:00:00.250000Z", "deleteType": "HardDelete"}),
    ]  # fmt: skip
    with pytest.raises(ValueError):
        client.fivetran_truncate_table("t", datetime(2024, 2, 9), "HardDelete")  # naive: ambiguous


def test_get_schema(server: FakeServer, client: ConvexClient) -> None:
    server.reply_json_null()
    schema = {"tables": [], "schemaValidation": True}
    server.reply(json=schema)
    assert client.get_schema() is None
    assert client.get_schema() == schema
    assert [(r.method, r.path, r.body) for r in server.requests] == [
        ("GET", "/api/streaming_import/get_schema", b""),
        ("GET", "/api/streaming_import/get_schema", b""),
    ]


def test_version_path(server: FakeServer, client: ConvexClient) -> None:
    server.reply(body="convex-local-backend 1.0.0\n", headers={"Content-Type": "text/plain"})
    assert client.version() == "convex-local-backend 1.0.0"
    assert (server.requests[0].method, server.requests[0].path) == ("GET", "/version")


def test_deployment_url_with_path_prefix(server: FakeServer, sleeps: Sleeps) -> None:
    server.reply_json_null()
    with ConvexClient(ClientConfig(server.url + "/proxy", KEY), sleep=sleeps) as client:
        client.test_streaming_export_connection()
    assert server.requests[0].path == "/proxy/api/test_streaming_export_connection"


# --- retries and errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_retries_transient_statuses(
    server: FakeServer, client: ConvexClient, sleeps: Sleeps, status: int
) -> None:
    server.reply(status, json={"code": "Overloaded", "message": "try later"})
    server.reply(json={"indexesReady": True})
    assert client.primary_key_indexes_ready(["t"]) is True
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body
    assert sleeps == [0.5]


def test_retry_backoff_grows_until_success(server: FakeServer, client: ConvexClient, sleeps: Sleeps) -> None:
    server.reply(429, json={"code": "RateLimited", "message": "slow down"})
    server.reply(500, json={"code": "InternalServerError", "message": "x"})
    server.reply(503, body="upstream unavailable")
    server.reply(json=snapshot_page([], 1, None, False))
    page = client.list_snapshot(fmt="json")
    assert page.snapshot == 1
    assert len(server.requests) == 4
    assert sleeps == [0.5, 1.0, 2.0]  # base 0.5 doubling; rand pinned at the jitter's upper bound


def test_backoff_is_capped_and_jittered(server: FakeServer, sleeps: Sleeps) -> None:
    config = ClientConfig(server.url, KEY, max_retries=5, backoff_base_s=1.0, backoff_max_s=3.0)
    for _ in range(5):
        server.reply(503)
    server.reply_json_null()
    with ConvexClient(config, sleep=sleeps, rand=lambda: 0.5) as client:
        client.test_streaming_export_connection()
    assert sleeps == [0.5, 1.0, 1.5, 1.5, 1.5]


def test_retry_after_is_honoured(server: FakeServer, client: ConvexClient, sleeps: Sleeps) -> None:
    server.reply(429, json={"code": "RateLimited", "message": "slow down"}, headers={"Retry-After": "7"})
    server.reply(429, headers={"Retry-After": "100000"})  # absurd values are capped
    server.reply_json_null()
    client.test_streaming_export_connection()
    assert sleeps == [7.0, 300.0]


def test_gives_up_after_max_retries(
    server: FakeServer, make_client: Callable[..., ConvexClient], sleeps: Sleeps
) -> None:
    client = make_client(max_retries=2)
    for _ in range(3):
        server.reply(503, json={"code": "Overloaded", "message": "busy"})
    with pytest.raises(ConvexApiError) as info:
        client.clear_tables(["t"])
    assert len(server.requests) == 3
    assert len(sleeps) == 2
    err = info.value
    assert (err.status, err.code, err.message, err.retriable) == (503, "Overloaded", "busy", True)
    assert str(err) == "streaming_import/clear_tables: 503: Overloaded: busy"


def test_max_retries_zero_means_one_attempt(
    server: FakeServer, make_client: Callable[..., ConvexClient]
) -> None:
    server.reply(500, json={"code": "InternalServerError", "message": "boom"})
    with pytest.raises(ConvexApiError):
        make_client(max_retries=0).test_streaming_export_connection()
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413])
def test_no_retry_on_client_errors(
    server: FakeServer, client: ConvexClient, sleeps: Sleeps, status: int
) -> None:
    server.reply(status, json={"code": "SomeCode", "message": "explained"})
    with pytest.raises(ConvexApiError) as info:
        client.list_snapshot()
    assert len(server.requests) == 1
    assert sleeps == []
    assert (info.value.status, info.value.code, info.value.message) == (status, "SomeCode", "explained")
    assert not info.value.retriable
    assert isinstance(info.value, ConvexError)


def test_error_codes_from_spec(server: FakeServer, client: ConvexClient) -> None:
    message = (
        "Trying to synchronize from timestamp 6, which is older than the database’s retention window. "
        "This may happen if you paused your Fivetran or Airbyte connector for a long period of time."
    )
    server.reply(400, json={"code": "InvalidWindowToReadDocuments", "message": message})
    with pytest.raises(ConvexApiError) as info:
        client.document_deltas(cursor=5)
    assert info.value.code == "InvalidWindowToReadDocuments"
    assert info.value.message == message  # non-ASCII survives
    assert info.value.endpoint == "document_deltas"
    assert info.value.method == "POST"


def test_non_json_and_empty_error_bodies(server: FakeServer, client: ConvexClient) -> None:
    server.reply(404, body="<html>Not Found</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(ConvexApiError) as info:
        client.get_schema()
    assert (info.value.code, info.value.message) == ("", "<html>Not Found</html>")
    assert info.value.body_text == "<html>Not Found</html>"

    server.reply(403)
    with pytest.raises(ConvexApiError) as info:
        client.get_schema()
    assert (info.value.status, info.value.code, info.value.message) == (403, "", "")
    assert "no content" in str(info.value)

    server.reply(400, json={"code": 5, "message": None})  # not the {code, message} shape
    with pytest.raises(ConvexApiError) as info:
        client.get_schema()
    assert info.value.code == ""
    assert info.value.message == '{"code":5,"message":null}'


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_retried_then_raised(sleeps: Sleeps) -> None:
    port = unused_port()
    # Nothing listens on the port any more: every attempt is refused.
    config = ClientConfig(f"http://127.0.0.1:{port}", KEY, max_retries=3)
    with ConvexClient(config, sleep=sleeps) as client, pytest.raises(ConvexConnectionError) as info:
        client.list_snapshot()
    err = info.value
    assert err.attempts == 4
    assert len(sleeps) == 3
    assert err.endpoint == "list_snapshot"
    assert err.status == 0 and err.retriable
    assert isinstance(err, ConvexApiError)
    assert KEY not in str(err) and KEY not in repr(err)
    assert err.__cause__ is None and err.__suppress_context__


def test_read_timeout_is_retried(
    server: FakeServer, make_client: Callable[..., ConvexClient], sleeps: Sleeps
) -> None:
    client = make_client(timeout_s=0.2)
    server.reply(delay_s=1.0, body=b"null")
    server.reply_json_null()
    client.test_streaming_export_connection()
    assert len(server.requests) == 2
    assert len(sleeps) == 1


def test_key_never_in_errors(server: FakeServer, client: ConvexClient) -> None:
    secret_tail = KEY.split("|", 1)[1]
    server.reply(401, json={"code": "BadAdminKey", "message": f"The key {KEY} or {secret_tail} was invalid"})
    with pytest.raises(ConvexApiError) as info:
        client.test_streaming_export_connection()
    err = info.value
    for text in (str(err), repr(err), err.message, err.body_text, str(err.args)):
        assert KEY not in text
        assert secret_tail not in text
    assert err.code == "BadAdminKey"
    assert "<redacted>" in err.message


def test_api_error_pickles() -> None:
    err = ConvexApiError(endpoint="list_snapshot", method="POST", status=400, code="BadFormat", message="m")
    clone = pickle.loads(pickle.dumps(err))
    assert (type(clone), clone.status, clone.code, clone.message, clone.endpoint) == (
        ConvexApiError,
        400,
        "BadFormat",
        "m",
        "list_snapshot",
    )
    assert str(clone) == str(err)


# --- retries that never write twice -----------------------------------------------------------------------

APPEND = {"events": AirbyteStream(primary_key=None, json_schema={})}
DEDUP = {"events": AirbyteStream(primary_key=[["key"]], json_schema={})}
ONE_RECORD = [AirbyteMessage("events", {"key": "a"})]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_append_import_is_not_retried_after_a_5xx(
    server: FakeServer, client: ConvexClient, sleeps: Sleeps, status: int
) -> None:
    server.reply(status, json={"code": "InternalServerError", "message": "boom"})
    with pytest.raises(AmbiguousWriteError) as info:
        client.import_airbyte_records(APPEND, ONE_RECORD)
    assert len(server.requests) == 1 and sleeps == []
    err = info.value
    assert err.status == status and err.code == "InternalServerError" and not err.retriable
    assert err.endpoint == "streaming_import/import_airbyte_records"
    assert "may have committed some of these records" in str(err) and f"answered {status}" in str(err)
    assert isinstance(err, ConvexApiError) and err.reaction is Reaction.FATAL


def test_append_import_is_not_retried_after_a_read_timeout(
    server: FakeServer, make_client: Callable[..., ConvexClient], sleeps: Sleeps
) -> None:
    client = make_client(timeout_s=0.2)
    server.reply(delay_s=1.0)
    with pytest.raises(AmbiguousWriteError) as info:
        client.import_airbyte_records(APPEND, ONE_RECORD)
    assert len(server.requests) == 1 and sleeps == []
    assert info.value.status == 0 and "after the request was sent" in str(info.value)


def test_append_import_is_retried_after_429(server: FakeServer, client: ConvexClient, sleeps: Sleeps) -> None:
    server.reply(429, json={"code": "RateLimited", "message": "slow down"}, headers={"Retry-After": "2"})
    server.reply()
    client.import_airbyte_records(APPEND, ONE_RECORD)
    assert len(server.requests) == 2 and sleeps == [2.0]


def test_append_import_is_retried_when_refused_before_sending(sleeps: Sleeps) -> None:
    port = unused_port()
    config = ClientConfig(f"http://127.0.0.1:{port}", KEY, max_retries=2)
    with ConvexClient(config, sleep=sleeps) as client, pytest.raises(ConvexConnectionError) as info:
        client.import_airbyte_records(APPEND, ONE_RECORD)
    assert info.value.attempts == 3 and len(sleeps) == 2  # every attempt provably unsent: retried


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.import_airbyte_records(DEDUP, ONE_RECORD),
        lambda c: c.import_airbyte_records(APPEND, []),  # no records: nothing to write twice
        lambda c: c.import_airbyte_records({**DEDUP, "other": APPEND["events"]}, ONE_RECORD),
        lambda c: c.apply_fivetran_operations([FivetranOperation("t", "Upsert", {"id": 1.0})]),
        lambda c: c.clear_tables(["t"]),
        lambda c: c.add_primary_key_indexes({"t": [["id"]]}),
        lambda c: c.fivetran_create_table({"tableName": "t", "indexes": []}),
        lambda c: c.fivetran_truncate_table("t", None, "HardDelete"),
    ],
)
def test_idempotent_writes_are_retried_after_a_5xx(
    server: FakeServer, client: ConvexClient, sleeps: Sleeps, call: Callable[[ConvexClient], None]
) -> None:
    server.reply(502)
    server.reply()
    call(client)
    assert len(server.requests) == 2 and len(sleeps) == 1
    assert server.requests[0].body == server.requests[1].body


# --- page pipelining --------------------------------------------------------------------------------------


def test_pipelined_pages_send_the_same_requests_with_auth(server: FakeServer, client: ConvexClient) -> None:
    server.reply(json=snapshot_page([row("a", "1")], BIG_TS, "c1", True))
    server.reply(json=snapshot_page([row("a", "2")], BIG_TS, "c2", True))
    server.reply(json=snapshot_page([row("a", "3")], BIG_TS, None, False))
    pages = list(client.iter_snapshot_pages(fmt="json"))
    assert [v.document["_id"] for p in pages for v in p.values] == ["1", "2", "3"]
    assert [(r.json()["snapshot"], r.json()["cursor"]) for r in server.requests] == [
        (None, None),
        (BIG_TS, "c1"),
        (BIG_TS, "c2"),
    ]
    for req in server.requests:
        assert req.method == "POST" and req.path == "/api/list_snapshot"
        assert req.headers["authorization"] == f"Convex {KEY}"
        assert req.headers["convex-client"] == "convex-connectors-0.1.0"
        assert req.headers["content-type"] == "application/json"


def test_a_failed_pipelined_page_is_retried_through_the_regular_path(
    server: FakeServer, client: ConvexClient, sleeps: Sleeps
) -> None:
    server.reply(json=snapshot_page([row("a", "1")], BIG_TS, "c1", True))
    server.reply(503, json={"code": "Overloaded", "message": "busy"})  # the pipelined request
    server.reply(json=snapshot_page([row("a", "2")], BIG_TS, None, False))  # the same page, again
    pages = list(client.iter_snapshot_pages(fmt="json"))
    assert [v.document["_id"] for p in pages for v in p.values] == ["1", "2"]
    assert [r.json()["cursor"] for r in server.requests] == [None, "c1", "c1"]


def test_a_pipelined_client_error_surfaces_with_code_and_message(
    server: FakeServer, client: ConvexClient
) -> None:
    server.reply(json=delta_page([row("a", "1", _deleted=False)], BIG_TS, True))
    server.reply(400, json={"code": "InvalidWindowToReadDocuments", "message": "too old"})  # pipelined
    server.reply(400, json={"code": "InvalidWindowToReadDocuments", "message": "too old"})  # regular
    with pytest.raises(ConvexApiError) as info:
        list(client.iter_delta_pages(BIG_TS - 1, fmt="json"))
    assert info.value.code == "InvalidWindowToReadDocuments" and info.value.status == 400


def test_no_pipeline_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., ConvexClient]
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_client()
    assert client._open_pipeline("list_snapshot") is None


def test_the_environment_is_read_once_and_no_proxy_is_respected(
    monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., ConvexClient]
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    client = make_client()
    # The deployment is on loopback and listed in NO_PROXY: no proxy, so pages are pipelined.
    assert client._open_pipeline("list_snapshot") is not None
    # Settings were resolved at construction; a later change of the environment does not reach the session.
    monkeypatch.delenv("NO_PROXY")
    assert client._open_pipeline("list_snapshot") is not None
    assert client._session.trust_env is False


def test_a_short_mistyped_key_is_masked_as_a_token_without_garbling_the_message() -> None:
    from connectors.client.transport import Transport

    transport = Transport(ClientConfig("http://127.0.0.1:1", "x"), sleep=lambda _s: None, rand=lambda: 0.0)
    try:
        assert transport.redact("Max retries exceeded with key x") == "Max retries exceeded with key <redacted>"
        long_key = "prod:name|" + "ab12" * 8
        transport = Transport(
            ClientConfig("http://127.0.0.1:1", long_key), sleep=lambda _s: None, rand=lambda: 0.0
        )
        assert long_key not in transport.redact(f"bad key:{long_key}!")
        assert "ab12" * 8 not in transport.redact(f"echo{'ab12' * 8}echo")
    finally:
        transport.close()
