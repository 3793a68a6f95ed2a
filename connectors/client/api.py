"""``ConvexClient``: the one typed client every connector and the CLI use to talk to a Convex deployment.

Covers streaming export (``shared/spec/streaming-export.md``) and streaming import
(``shared/spec/streaming-import.md``). Wire behaviour follows the real clients: the export calls send what
Convex's Rust Fivetran source sends (POST JSON bodies with every key present, ``format:
"convex_encoded_json"``), the import calls what Airbyte's ``destination-convex`` sends (including the GET
with a JSON body on ``primary_key_indexes_ready``). Bodies are serialized and parsed with ``orjson``
(timestamps are integers above 2^53 and must never pass through a float). Retries: ``transport``;
page pipelining: ``pipeline``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, NoReturn, TypeGuard

import orjson
import requests

from connectors.client.config import ClientConfig
from connectors.client.errors import IndexWaitTimeoutError, UnexpectedResponseError
from connectors.client.pipeline import PagePipeline, Pager, PipelinedResponse
from connectors.client.transport import Transport
from connectors.client.wire import (
    AirbyteMessage,
    AirbyteStream,
    DeltaPage,
    ExportedValue,
    FivetranOperation,
    SnapshotPage,
    TableColumns,
    bool_param,
    rfc3339_utc,
)
from connectors.constants import (
    AUTH_SCHEME,
    CLEAN_FORMATS,
    CLIENT_HEADER,
    COMPONENT_KEY,
    DELETED_KEY,
    ENCODED_FORMATS,
    EXPORT_FORMATS,
    FORMAT_ENCODED_JSON,
    FORMAT_JSON,
    JSON_MEDIA_TYPE,
    SYSTEM_FIELDS,
    TABLE_KEY,
    TS_KEY,
    ExportFormat,
    TruncateDeleteType,
)
from connectors.errors import ConvexError
from connectors.perf import gc_paused
from connectors.selection import Selection

__all__ = ["ConvexClient"]

_EVERYTHING: Final = Selection.everything()


class ConvexClient:
    """Typed client for one deployment. Thread-safe for concurrent calls (pooled connections).

    ``sleep``, ``rand`` and ``clock`` are injectable so tests neither wait nor depend on randomness.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._sleep = sleep
        self._clock = clock
        self._transport = Transport(config, sleep=sleep, rand=rand)
        self._request = self._transport.request
        # The pooled session (tests and the pipeline's proxy check read it).
        self._session = self._transport.session

    @property
    def config(self) -> ClientConfig:
        return self._config

    def __repr__(self) -> str:
        return f"ConvexClient({self._config.deployment_url!r})"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> ConvexClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- streaming export ------------------------------------------------------------------------------

    def test_streaming_export_connection(self) -> None:
        """Checks plan and credentials; the contract's success body is exactly JSON ``null`` (§9)."""
        endpoint = "test_streaming_export_connection"
        resp = self._request("GET", endpoint, f"api/{endpoint}")
        body = self._parse_json(endpoint, resp)
        if body is not None:
            self._unexpected(endpoint, resp, f"expected the JSON body `null`, got {_describe(body)}")

    def list_snapshot(
        self,
        *,
        snapshot: int | None = None,
        cursor: str | None = None,
        selection: Selection = _EVERYTHING,
        fmt: ExportFormat = FORMAT_ENCODED_JSON,
    ) -> SnapshotPage:
        """One page of a consistent snapshot. First call: snapshot and cursor None."""
        resp, raw = self._fetch_snapshot(snapshot, cursor, selection, fmt)
        return self._snapshot_page(resp, raw, fmt)

    def _fetch_snapshot(
        self, snapshot: int | None, cursor: str | None, selection: Selection, fmt: ExportFormat
    ) -> tuple[requests.Response, dict[str, Any]]:
        endpoint = "list_snapshot"
        body = {
            "snapshot": snapshot,
            "cursor": cursor,
            "selection": selection.to_json(short=self._config.short_selection_spelling),
            "format": fmt,
        }
        resp = self._request("POST", endpoint, f"api/{endpoint}", json_body=body)
        return resp, self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))

    def _snapshot_body(
        self, snapshot: int | None, cursor: str | None, selection: Selection, fmt: ExportFormat
    ) -> bytes:
        return orjson.dumps(
            {
                "snapshot": snapshot,
                "cursor": cursor,
                "selection": selection.to_json(short=self._config.short_selection_spelling),
                "format": fmt,
            }
        )

    def _deltas_body(self, cursor: int, selection: Selection, fmt: ExportFormat) -> bytes:
        return orjson.dumps(
            {
                "cursor": cursor,
                "selection": selection.to_json(short=self._config.short_selection_spelling),
                "format": fmt,
            }
        )

    # -- page pipelining ---------------------------------------------------------------------------------

    def _open_pipeline(self, endpoint: str) -> PagePipeline | None:
        url = self._config.deployment_url + f"api/{endpoint}"
        # http.client knows no proxies: use the pipeline only where requests would connect directly.
        if requests.utils.select_proxy(url, self._session.proxies):
            return None
        headers = {
            "Authorization": f"{AUTH_SCHEME} {self._config.deploy_key}",
            CLIENT_HEADER: self._config.client_header,
            "Content-Type": JSON_MEDIA_TYPE,
        }
        return PagePipeline(self._config, f"api/{endpoint}", headers)

    def _pipelined_result(self, endpoint: str, status: int, data: bytes) -> tuple[Any, dict[str, Any]]:
        resp: Any = PipelinedResponse(status)
        try:
            with gc_paused():
                body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._unexpected(endpoint, resp, f"Failed to deserialize query result: {exc}")
        return resp, self._expect_object(endpoint, resp, body)

    def _snapshot_header(
        self, resp: requests.Response, raw: Mapping[str, Any]
    ) -> tuple[int, str | None, bool]:
        endpoint = "list_snapshot"
        snap = raw.get("snapshot")
        if not _is_int(snap):
            self._unexpected(endpoint, resp, f"`snapshot` must be an integer, got {_describe(snap)}")
        next_cursor = raw.get("cursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            self._unexpected(
                endpoint, resp, f"`cursor` must be a string or null, got {_describe(next_cursor)}"
            )
        has_more = self._expect_bool(endpoint, resp, raw, "hasMore")
        if has_more and next_cursor is None:
            self._unexpected(endpoint, resp, "Missing cursor when has_more was set")
        return snap, next_cursor, has_more

    def _snapshot_page(self, resp: requests.Response, raw: dict[str, Any], fmt: ExportFormat) -> SnapshotPage:
        snap, next_cursor, has_more = self._snapshot_header(resp, raw)
        values = self._parse_values("list_snapshot", resp, raw, fmt, is_delta=False)
        return SnapshotPage(values=values, snapshot=snap, cursor=next_cursor, has_more=has_more)

    def iter_snapshot_pages(
        self,
        *,
        selection: Selection = _EVERYTHING,
        snapshot: int | None = None,
        cursor: str | None = None,
        fmt: ExportFormat = FORMAT_ENCODED_JSON,
    ) -> Iterator[SnapshotPage]:
        """Every page until ``hasMore`` is false. Empty pages with ``hasMore`` true are normal (a page
        never spans two tables) and are yielded so callers can checkpoint their cursor. After the first
        page the snapshot is pinned, and every page must report that same snapshot.

        The next page is requested before this one is decoded and consumed (see ``PagePipeline``)."""
        pinned = snapshot
        endpoint = "list_snapshot"
        pager = Pager(self, endpoint)
        try:
            while True:
                resp, raw = pager.current(self._fetch_snapshot, pinned, cursor, selection, fmt)
                snap, next_cursor, has_more = self._snapshot_header(resp, raw)
                if pinned is not None and snap != pinned:
                    raise UnexpectedResponseError(
                        endpoint=endpoint,
                        method="POST",
                        status=200,
                        message=f"snapshot changed between pages: requested {pinned}, got {snap}",
                    )
                pinned = snap
                if has_more:
                    if next_cursor == cursor:
                        # A server that does not advance would make us loop forever.
                        raise UnexpectedResponseError(
                            endpoint=endpoint, method="POST", status=200, message="cursor did not advance"
                        )
                    pager.request_next(self._snapshot_body(pinned, next_cursor, selection, fmt))
                page = self._snapshot_page(resp, raw, fmt)
                del resp, raw  # let the parsed page go before the next one is built
                yield page
                del page
                if not has_more:
                    return
                cursor = next_cursor
        finally:
            pager.close()

    def document_deltas(
        self,
        *,
        cursor: int,
        selection: Selection = _EVERYTHING,
        fmt: ExportFormat = FORMAT_ENCODED_JSON,
    ) -> DeltaPage:
        """One page of the change log after ``cursor`` (exclusive, ns)."""
        resp, raw = self._fetch_deltas(cursor, selection, fmt)
        return self._delta_page(resp, raw, fmt)

    def _fetch_deltas(
        self, cursor: int, selection: Selection, fmt: ExportFormat
    ) -> tuple[requests.Response, dict[str, Any]]:
        endpoint = "document_deltas"
        body = {
            "cursor": cursor,
            "selection": selection.to_json(short=self._config.short_selection_spelling),
            "format": fmt,
        }
        resp = self._request("POST", endpoint, f"api/{endpoint}", json_body=body)
        return resp, self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))

    def _delta_header(self, resp: requests.Response, raw: Mapping[str, Any]) -> tuple[int, bool]:
        next_cursor = raw.get("cursor")
        if not _is_int(next_cursor):
            self._unexpected(
                "document_deltas", resp, f"`cursor` must be an integer, got {_describe(next_cursor)}"
            )
        return next_cursor, self._expect_bool("document_deltas", resp, raw, "hasMore")

    def _delta_page(self, resp: requests.Response, raw: dict[str, Any], fmt: ExportFormat) -> DeltaPage:
        next_cursor, has_more = self._delta_header(resp, raw)
        values = self._parse_values("document_deltas", resp, raw, fmt, is_delta=True)
        return DeltaPage(values=values, cursor=next_cursor, has_more=has_more)

    def iter_delta_pages(
        self,
        cursor: int,
        *,
        selection: Selection = _EVERYTHING,
        fmt: ExportFormat = FORMAT_ENCODED_JSON,
    ) -> Iterator[DeltaPage]:
        """Every page until ``hasMore`` is false; the last page's cursor is where the next sync starts.
        The next page is requested before this one is decoded and consumed (see ``PagePipeline``)."""
        endpoint = "document_deltas"
        pager = Pager(self, endpoint)
        try:
            while True:
                resp, raw = pager.current(self._fetch_deltas, cursor, selection, fmt)
                next_cursor, has_more = self._delta_header(resp, raw)
                if next_cursor < cursor or (has_more and next_cursor == cursor):
                    raise UnexpectedResponseError(
                        endpoint=endpoint,
                        method="POST",
                        status=200,
                        message=f"cursor did not advance: requested {cursor}, got {next_cursor}",
                    )
                if has_more:
                    pager.request_next(self._deltas_body(next_cursor, selection, fmt))
                page = self._delta_page(resp, raw, fmt)
                del resp, raw  # let the parsed page go before the next one is built
                yield page
                del page
                if not has_more:
                    return
                cursor = next_cursor
        finally:
            pager.close()

    def json_schemas(
        self, *, delta_schema: bool = False, fmt: ExportFormat = FORMAT_JSON, by_component: bool = False
    ) -> dict[str, Any]:
        """JSON Schemas per table (flat), or per component then table with ``by_component``."""
        endpoint = "json_schemas"
        params = {"deltaSchema": bool_param(delta_schema), "format": fmt}
        if by_component:
            # Only sent when asked, so the request matches Airbyte's on servers without the flag.
            params["byComponent"] = "true"
        resp = self._request("GET", endpoint, f"api/{endpoint}", params=params)
        return self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))

    def get_table_column_names(self) -> dict[str, list[TableColumns]]:
        """Tables and top-level columns per component path (root = ``""``)."""
        endpoint = "get_table_column_names"
        resp = self._request("GET", endpoint, f"api/{endpoint}")
        raw = self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))
        by_component = raw.get("byComponent")
        if not isinstance(by_component, dict):
            self._unexpected(endpoint, resp, "`byComponent` must be an object")
        out: dict[str, list[TableColumns]] = {}
        for component, tables in by_component.items():
            if not isinstance(tables, list):
                self._unexpected(endpoint, resp, f"tables of component {component!r} must be a list")
            parsed: list[TableColumns] = []
            for entry in tables:
                name = entry.get("name") if isinstance(entry, dict) else None
                columns = entry.get("columns") if isinstance(entry, dict) else None
                if (
                    not isinstance(name, str)
                    or not isinstance(columns, list)
                    or not all(isinstance(c, str) for c in columns)
                ):
                    self._unexpected(endpoint, resp, f"invalid table entry in component {component!r}")
                parsed.append(TableColumns(name=name, columns=tuple(columns)))
            out[component] = parsed
        return out

    # --- streaming import ------------------------------------------------------------------------------

    def import_airbyte_records(
        self, tables: Mapping[str, AirbyteStream], messages: Sequence[AirbyteMessage]
    ) -> None:
        """One batch. An empty ``messages`` list is valid (Airbyte flushes on every state message).

        A batch with records for an append-mode table (``primary_key`` None) is not retried after a failure
        that may have reached the server: ``AmbiguousWriteError`` says the records may have been written."""
        body = {
            "tables": {name: stream.to_json() for name, stream in tables.items()},
            "messages": [message.to_json() for message in messages],
        }
        # Dedup tables converge when a batch is repeated; append tables would get the records twice.
        append_tables = {name for name, stream in tables.items() if stream.appends}
        appends = bool(append_tables) and any(m.table_name in append_tables for m in messages)
        self._import_call("POST", "import_airbyte_records", body, idempotent=not appends)

    def clear_tables(self, names: Sequence[str]) -> None:
        """Atomically replace the tables by empty ones (created when missing), keeping their indexes."""
        self._import_call("PUT", "clear_tables", {"tableNames": list(names)})

    def replace_tables(self, mapping: Mapping[str, str]) -> None:
        """Legacy overwrite call; current servers always answer 400 ``OverwriteNotSupported``."""
        self._import_call("POST", "replace_tables", {"tableNames": dict(mapping)})

    def add_primary_key_indexes(self, indexes: Mapping[str, Sequence[Sequence[str]]]) -> None:
        """Create ``_by_airbyte_primary_key`` on each table; each inner list is one field path."""
        body = {"indexes": {table: [list(path) for path in paths] for table, paths in indexes.items()}}
        self._import_call("PUT", "add_primary_key_indexes", body)

    def primary_key_indexes_ready(self, tables: Sequence[str]) -> bool:
        # GET with a JSON body, exactly like Airbyte's destination (streaming-import.md §1).
        endpoint = "streaming_import/primary_key_indexes_ready"
        resp = self._request("GET", endpoint, f"api/{endpoint}", json_body={"tables": list(tables)})
        raw = self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))
        return self._expect_bool(endpoint, resp, raw, "indexesReady")

    def wait_for_primary_key_indexes(
        self, tables: Sequence[str], timeout_s: float, poll_interval_s: float = 1.0
    ) -> None:
        """Poll until the indexes are backfilled; unlike Airbyte's destination this gives up after
        ``timeout_s`` with ``IndexWaitTimeoutError``."""
        deadline = self._clock() + timeout_s
        while True:
            if self.primary_key_indexes_ready(tables):
                return
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise IndexWaitTimeoutError(tables, timeout_s)
            self._sleep(min(poll_interval_s, remaining))

    def apply_fivetran_operations(self, rows: Sequence[FivetranOperation]) -> None:
        """Apply a batch of Upsert/Update/HardDelete rows in order (the body is a bare JSON array)."""
        self._import_call("POST", "apply_fivetran_operations", [row.to_json() for row in rows])

    def fivetran_create_table(self, table_definition: Mapping[str, Any]) -> None:
        """Create the table's system indexes; blocks server-side until the primary-key index is ready."""
        self._import_call("POST", "fivetran_create_table", {"tableDefinition": table_definition})

    def fivetran_truncate_table(
        self, table_name: str, delete_before: datetime | None, delete_type: TruncateDeleteType
    ) -> None:
        body = {
            "tableName": table_name,
            "deleteBefore": None if delete_before is None else rfc3339_utc(delete_before),
            "deleteType": delete_type,
        }
        self._import_call("POST", "fivetran_truncate_table", body)

    def get_schema(self) -> dict[str, Any] | None:
        """The active ``DatabaseSchemaJson``, or None when the deployment has no schema."""
        endpoint = "streaming_import/get_schema"
        resp = self._request("GET", endpoint, f"api/{endpoint}")
        body = self._parse_json(endpoint, resp)
        if body is None:
            return None
        return self._expect_object(endpoint, resp, body)

    def version(self) -> str:
        """``GET /version`` (outside ``/api``): the server version as plain text."""
        resp = self._request("GET", "version", "version")
        return resp.content.decode("utf-8", errors="replace").strip()

    # --- transport -------------------------------------------------------------------------------------

    def _import_call(self, method: str, name: str, body: Any, *, idempotent: bool = True) -> None:
        # Import endpoints answer 200 with an empty body; any body content is ignored.
        endpoint = f"streaming_import/{name}"
        self._request(method, endpoint, f"api/{endpoint}", json_body=body, idempotent=idempotent)

    # --- response parsing ------------------------------------------------------------------------------

    def _unexpected(self, endpoint: str, resp: requests.Response, message: str) -> NoReturn:
        raise UnexpectedResponseError(
            endpoint=endpoint, method=resp.request.method or "", status=resp.status_code, message=message
        )

    def _parse_json(self, endpoint: str, resp: requests.Response) -> Any:
        try:
            with gc_paused():
                return orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            self._unexpected(endpoint, resp, f"Failed to deserialize query result: {exc}")

    def _expect_object(self, endpoint: str, resp: requests.Response, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            self._unexpected(
                endpoint,
                resp,
                f"Failed to deserialize query result: expected an object, got {_describe(body)}",
            )
        return body

    def _expect_bool(self, endpoint: str, resp: requests.Response, raw: Mapping[str, Any], key: str) -> bool:
        value = raw.get(key)
        if not isinstance(value, bool):
            self._unexpected(endpoint, resp, f"`{key}` must be a boolean, got {_describe(value)}")
        return value

    def _parse_values(
        self,
        endpoint: str,
        resp: requests.Response,
        raw: Mapping[str, Any],
        fmt: ExportFormat,
        *,
        is_delta: bool,
    ) -> list[ExportedValue]:
        items = raw.get("values")
        if not isinstance(items, list):
            self._unexpected(endpoint, resp, f"`values` must be a list, got {_describe(items)}")
        if not items:
            return []
        with gc_paused():
            return self._decode_values(endpoint, resp, items, fmt, is_delta=is_delta)

    def _decode_values(
        self, endpoint: str, resp: requests.Response, items: list[Any], fmt: ExportFormat, *, is_delta: bool
    ) -> list[ExportedValue]:
        decode = _decoder(fmt)
        out: list[ExportedValue] = []
        append = out.append
        system = SYSTEM_FIELDS
        for item in items:
            if type(item) is not dict:
                self._unexpected(endpoint, resp, f"each value must be an object, got {_describe(item)}")
            # The parsed page is ours: metadata is popped and fields are decoded in place (the hot loop
            # of every export; scalars, the common case, are left where they are).
            component = item.pop(COMPONENT_KEY, None)
            table = item.pop(TABLE_KEY, None)
            ts = item.pop(TS_KEY, None)
            if type(component) is not str or type(table) is not str or not _is_int(ts):
                self._unexpected(
                    endpoint, resp, "each value needs string `_component`, `_table` and integer `_ts`"
                )
            deleted = item.pop(DELETED_KEY, None if is_delta else False)
            if type(deleted) is not bool:
                # Required on deltas (the Rust client has no default); absent on snapshots.
                self._unexpected(endpoint, resp, f"`_deleted` must be a boolean in {table!r}")
            reserved: list[str] | None = None
            key = ""
            try:
                for key, value in item.items():
                    if key[:1] == "_" and key not in system:
                        # Reserved for future metadata (spec §8): ignored.
                        reserved = [*(reserved or ()), key]
                        continue
                    t = type(value)
                    if decode is not None and (t is dict or t is list or t is int):
                        item[key] = decode(value)
            except (ConvexError, ValueError, TypeError) as exc:
                self._unexpected(
                    endpoint, resp, f"Invalid Convex value in field {key!r} of table {table!r}: {exc}"
                )
            if reserved:
                for key in reserved:
                    del item[key]
            append(ExportedValue(component, table, ts, deleted, item))
        return out


# --- helpers -------------------------------------------------------------------------------------------


def _decoder(fmt: str) -> Callable[[Any], Any] | None:
    """The decoder of one exported field value, or None for the clean format (kept as JSON)."""
    if fmt in CLEAN_FORMATS:
        return None
    from connectors import values

    if fmt in ENCODED_FORMATS:
        return values.decode_encoded_value
    if fmt in EXPORT_FORMATS:
        return values.from_export_json
    raise ValueError(f"unknown export format {fmt!r}")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return type(value).__name__
