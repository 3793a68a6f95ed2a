"""Replays of the real clients' HTTP requests, and value helpers shared by the conformance tests.

Each client class sends what the real connector sends, byte for byte where it matters:

* ``RustSource`` — Convex's Rust Fivetran source 2.0.2 (reqwest: compact serde JSON bodies, lower-case
  header names, ``accept: */*``, ``accept-encoding: gzip``; fivetran-source.md §3, streaming-export.md §4.1);
* ``RustDestination`` — Convex's Rust Fivetran destination 0.0.1 (fivetran-destination.md §3; its GET goes
  through ``Url::query_pairs_mut`` and so ends in a bare ``?``);
* ``AirbyteSource`` — Airbyte ``source-convex`` 0.4.x / 0.2.0 (``requests`` with its default headers,
  ``TokenAuthenticator(key, "Convex")``; airbyte.md §1.3);
* ``AirbyteDestination`` — Airbyte ``destination-convex`` 0.2.x (``requests.request(..., json=...)``, i.e.
  ``json.dumps`` with default separators; airbyte.md §2.3).

Requests are prepared on a session whose default headers are removed, so the headers on the wire are exactly
the ones listed here (plus ``Host`` and ``Content-Length``, which every client sends).
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson
import requests

from connectors.backend.engine import Deployment

RUST_SOURCE_CLIENT: Final = "fivetran-export-2.0.2"
RUST_DESTINATION_CLIENT: Final = "fivetran-import-0.0.1"
AIRBYTE_SOURCE_CLIENT: Final = "airbyte-export-0.4.0"
AIRBYTE_SOURCE_CLIENT_OLD: Final = "airbyte-export-0.2.0"
AIRBYTE_DESTINATION_CLIENT: Final = "streaming-import-0.1.0"

# reqwest's defaults with the `gzip` feature (the Rust connectors enable it).
_REQWEST_DEFAULTS: Final = {"accept": "*/*", "accept-encoding": "gzip"}


def _requests_defaults() -> dict[str, str]:
    return dict(requests.utils.default_headers())


class WireClient:
    """Sends requests with exactly ``headers`` (no session defaults) and records what was sent."""

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.session = requests.Session()
        self.session.headers.clear()
        self.sent: list[requests.PreparedRequest] = []

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        headers: Mapping[str, str | None] | None = None,
        url_suffix: str = "",
    ) -> requests.Response:
        request = requests.Request(
            method,
            self.base_url + path,
            params=list(params or []),
            data=body,
            json=json_body,
            headers={**self.headers, **(headers or {})},
        )
        prepared = self.session.prepare_request(request)
        prepared.url = (prepared.url or "") + url_suffix
        self.sent.append(prepared)
        return self.session.send(prepared, timeout=30)

    def close(self) -> None:
        self.session.close()


def compact(value: Any) -> bytes:
    """serde_json's compact serialization (insertion order kept, no spaces)."""
    return orjson.dumps(value)


def loads(resp: requests.Response) -> Any:
    """Parse a body without passing integers through a float (timestamps exceed 2^53)."""
    return orjson.loads(resp.content)


def ok_json(resp: requests.Response) -> Any:
    assert resp.status_code == 200, (resp.request.method, resp.request.url, resp.status_code, resp.text)
    assert resp.headers.get("content-type", "").split(";")[0] == "application/json", resp.headers
    # The Rust clients only decode gzip; a server must not pick another coding.
    assert resp.headers.get("content-encoding") in (None, "gzip"), resp.headers
    return loads(resp)


def error_body(resp: requests.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    err = loads(resp)
    assert isinstance(err, dict) and set(err) == {"code", "message"}, err
    assert err["code"] == code, err
    if message is not None:
        assert err["message"] == message, err
    return err


# --- the four clients -----------------------------------------------------------------------------------


class RustSource(WireClient):
    """Convex's Rust Fivetran source (crate 2.0.2)."""

    def __init__(self, url: str, key: str, client: str = RUST_SOURCE_CLIENT) -> None:
        super().__init__(
            url, {**_REQWEST_DEFAULTS, "convex-client": client, "authorization": f"Convex {key}"}
        )

    def _post(self, endpoint: str, args: Mapping[str, Any]) -> requests.Response:
        return self.send(
            "POST", f"/api/{endpoint}", body=compact(args), headers={"content-type": "application/json"}
        )

    def test_connection(self) -> requests.Response:
        return self.send("GET", "/api/test_streaming_export_connection")

    def get_table_column_names(self) -> requests.Response:
        return self.send("GET", "/api/get_table_column_names")

    def list_snapshot(
        self, snapshot: int | None, cursor: str | None, selection: Mapping[str, Any]
    ) -> requests.Response:
        # ListSnapshotArgs field order; `None` is serialized as null (no skip_serializing_if).
        args = {
            "snapshot": snapshot,
            "cursor": cursor,
            "selection": selection,
            "format": "convex_encoded_json",
        }
        return self._post("list_snapshot", args)

    def document_deltas(self, cursor: int, selection: Mapping[str, Any]) -> requests.Response:
        args = {"cursor": cursor, "selection": selection, "format": "convex_encoded_json"}
        return self._post("document_deltas", args)


class RustDestination(WireClient):
    """Convex's Rust Fivetran destination (crate 0.0.1)."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(
            url,
            {**_REQWEST_DEFAULTS, "convex-client": RUST_DESTINATION_CLIENT, "authorization": f"Convex {key}"},
        )

    def _post(self, endpoint: str, args: Any) -> requests.Response:
        return self.send(
            "POST",
            f"/api/streaming_import/{endpoint}",
            body=compact(args),
            headers={"content-type": "application/json"},
        )

    def get_schema(self) -> requests.Response:
        # `url.query_pairs_mut().extend_pairs(<empty>)` leaves an empty query: the URL ends in `?`.
        return self.send("GET", "/api/streaming_import/get_schema", url_suffix="?")

    def create_table(self, table_definition: Mapping[str, Any]) -> requests.Response:
        return self._post("fivetran_create_table", {"tableDefinition": table_definition})

    def truncate_table(self, table: str, delete_before: str | None, delete_type: str) -> requests.Response:
        # TruncateTableArgs field order; chrono serializes DateTime<Utc> as RFC 3339 with `Z`.
        args = {"tableName": table, "deleteBefore": delete_before, "deleteType": delete_type}
        return self._post("fivetran_truncate_table", args)

    def apply_operations(self, rows: Sequence[Mapping[str, Any]]) -> requests.Response:
        return self._post("apply_fivetran_operations", list(rows))


class AirbyteSource(WireClient):
    """Airbyte ``source-convex``: 0.4.x sends ``format=json``, 0.2.0 ``format=convex_json``."""

    def __init__(self, url: str, key: str, version: str = "0.4.0") -> None:
        super().__init__(
            url,
            {
                **_requests_defaults(),
                "Authorization": f"Convex {key}",
                "Convex-Client": f"airbyte-export-{version}",
            },
        )
        self.format = "json" if version >= "0.3.0" else "convex_json"

    def json_schemas(self) -> requests.Response:
        # `requests.get(f"{url}/api/json_schemas?deltaSchema=true&format=...", headers=...)`.
        return self.send(
            "GET", "/api/json_schemas", params=[("deltaSchema", "true"), ("format", self.format)]
        )

    def list_snapshot(self, table: str, cursor: str | None, snapshot: int | None) -> requests.Response:
        # `request_params`: cursor and snapshot only when truthy.
        params = [("tableName", table), ("format", self.format)]
        if cursor:
            params.append(("cursor", cursor))
        if snapshot:
            params.append(("snapshot", str(snapshot)))
        return self.send("GET", "/api/list_snapshot", params=params)

    def document_deltas(self, table: str, cursor: int | None) -> requests.Response:
        params = [("tableName", table), ("format", self.format)]
        if cursor:
            params.append(("cursor", str(cursor)))
        return self.send("GET", "/api/document_deltas", params=params)


class AirbyteDestination(WireClient):
    """Airbyte ``destination-convex`` 0.2.x."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(
            url,
            {
                **_requests_defaults(),
                "Accept": "application/json",
                "Convex-Client": AIRBYTE_DESTINATION_CLIENT,
                "Authorization": f"Convex {key}",
            },
        )
        self.key = key

    def _call(self, method: str, endpoint: str, body: Any) -> requests.Response:
        # `requests.request(method, url, headers=..., json=body)`.
        return self.send(method, f"/api/streaming_import/{endpoint}", json_body=body)

    def check(self) -> requests.Response:
        # `requests.get(f"{url}/version", headers={"Authorization": ...})`: only that header.
        return self.send(
            "GET",
            "/version",
            headers={"Accept": "*/*", "Convex-Client": None},  # None: header not sent
        )

    def clear_tables(self, names: Sequence[str]) -> requests.Response:
        return self._call("PUT", "clear_tables", {"tableNames": list(names)})

    def add_primary_key_indexes(self, indexes: Mapping[str, Any]) -> requests.Response:
        return self._call("PUT", "add_primary_key_indexes", {"indexes": dict(indexes)})

    def primary_key_indexes_ready(self, tables: Sequence[str]) -> requests.Response:
        return self._call("GET", "primary_key_indexes_ready", {"tables": list(tables)})

    def import_airbyte_records(
        self, tables: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]
    ) -> requests.Response:
        return self._call(
            "POST", "import_airbyte_records", {"tables": dict(tables), "messages": list(messages)}
        )

    def replace_tables(self, mapping: Mapping[str, str]) -> requests.Response:
        return self._call("POST", "replace_tables", {"tableNames": dict(mapping)})


# --- values ---------------------------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def enc_int(value: int) -> dict[str, str]:
    """convex_encoded_json Int64: 8 bytes little-endian two's complement, padded base64."""
    return {"$integer": b64(struct.pack("<q", value))}


def enc_bytes(value: bytes) -> dict[str, str]:
    return {"$bytes": b64(value)}


def float_bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def is_special_float(value: float) -> bool:
    return math.isnan(value) or math.isinf(value) or (value == 0.0 and math.copysign(1.0, value) < 0)


def decode_encoded(value: Any) -> Any:
    """Independent decoder for convex_encoded_json (values-and-ids.md §2.4): every JSON number is a
    Float64; ``$integer``/``$float``/``$bytes`` single-key objects are the special values. Asserts that
    ``$float`` only carries the special values it is reserved for."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [decode_encoded(v) for v in value]
    assert isinstance(value, dict), value
    if len(value) == 1:
        ((key, payload),) = value.items()
        if key == "$integer":
            raw = base64.b64decode(payload, validate=True)
            assert len(raw) == 8, value
            return struct.unpack("<q", raw)[0]
        if key == "$float":
            raw = base64.b64decode(payload, validate=True)
            assert len(raw) == 8, value
            decoded = struct.unpack("<d", raw)[0]
            assert is_special_float(decoded), f"$float used for the ordinary float {decoded!r}"
            return decoded
        if key == "$bytes":
            return base64.b64decode(payload, validate=True)
    assert not any(k.startswith("$") for k in value), value
    return {k: decode_encoded(v) for k, v in value.items()}


def typed(value: Any) -> Any:
    """A canonical, hashable form that tells every Convex type apart and compares floats by bits
    (so NaN equals itself, -0.0 differs from 0.0 and Int64 1 differs from Float64 1.0)."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int64", value)
    if isinstance(value, float):
        return ("float64", float_bits(value))
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, list):
        return ("array", tuple(typed(v) for v in value))
    assert isinstance(value, dict), value
    return ("object", tuple(sorted((k, typed(v)) for k, v in value.items())))


# One document with every value type (values-and-ids.md §2.3 vectors).
THING: dict[str, Any] = {
    "i64": 123,
    "neg": -1,
    "big": 2**63 - 1,
    "f": 1.5,
    "whole": 5.0,
    "nan": math.nan,
    "inf": math.inf,
    "ninf": -math.inf,
    "negzero": -0.0,
    "b": b"\x00\x10\x83",
    "s": "text",
    "t": True,
    "n": None,
    "arr": [1, 2.5, b"\x01"],
    "obj": {"year": 2014, "make": "Honda"},
}
THING_CLEAN: dict[str, Any] = {
    "i64": "123",
    "neg": "-1",
    "big": "9223372036854775807",
    "f": 1.5,
    "whole": 5.0,
    "nan": "NaN",
    "inf": "Infinity",
    "ninf": "-Infinity",
    "negzero": -0.0,
    "b": "ABCD",
    "s": "text",
    "t": True,
    "n": None,
    "arr": ["1", 2.5, "AQ=="],
    "obj": {"make": "Honda", "year": "2014"},
}
THING_ENCODED: dict[str, Any] = {
    "i64": enc_int(123),
    "neg": {"$integer": "//////////8="},
    "big": {"$integer": "/////////38="},
    "f": 1.5,
    "whole": 5.0,
    "nan": {"$float": "AAAAAAAA+H8="},
    "inf": {"$float": "AAAAAAAA8H8="},
    "ninf": {"$float": "AAAAAAAA8P8="},
    "negzero": {"$float": "AAAAAAAAAIA="},
    "b": {"$bytes": "ABCD"},
    "s": "text",
    "t": True,
    "n": None,
    "arr": [enc_int(1), 2.5, enc_bytes(b"\x01")],
    "obj": {"make": "Honda", "year": {"$integer": "3gcAAAAAAAA="}},
}


# --- writing test data through the engine --------------------------------------------------------------


def write(
    dep: Deployment, table: str, docs: Sequence[Mapping[str, Any]], component: str = ""
) -> tuple[int, list[str]]:
    """Insert ``docs`` into ``table`` (created if needed) in one transaction: ``(commit ts, ids)``."""
    with dep.transaction() as tx:
        tx.create_table(table, component, exist_ok=True)
        ids = [tx.insert(table, doc, component) for doc in docs]
        ts = tx.ts
    return ts, ids


def current_documents(dep: Deployment, table: str, component: str = "") -> dict[str, dict[str, Any]]:
    """Every live document of a table, decoded, by ``_id``."""
    info = dep.find_table(table, component)
    if info is None:
        return {}
    return {doc.id: doc.value() for doc in dep.iter_snapshot(info)}
