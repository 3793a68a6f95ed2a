"""The reader protocol the sync engine pages through, and its two implementations.

* ``HttpReader``: any deployment (ours or Convex's) through ``ConvexClient``'s pipelined page iterators, so
  page k+1 is fetched while the engine hands on page k.
* ``LocalReader``: a ``Deployment`` opened in this process (``--data-dir``/``--db``), through the very
  functions the HTTP server answers with (``connectors.backend.export``), so paging, cursors, selection,
  validation and error codes are the server's, and values decode to the same Python values as over HTTP
  (``convex_encoded_json``: Int64 as int, Bytes as bytes, exact).

Both raise ``ConvexError`` subclasses whose ``code`` is the wire code (``SnapshotTooOld``,
``InvalidWindowToReadDocuments``, ``InvalidListSnapshotCursor``, …), which is what the engine reacts to.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from connectors import values
from connectors.client import (
    ConvexClient,
    DeltaPage,
    ExportedValue,
    SnapshotPage,
    TableColumns,
)
from connectors.constants import (
    COMPONENT_KEY,
    DELETED_KEY,
    FORMAT_ENCODED_JSON,
    SYSTEM_FIELDS,
    TABLE_KEY,
    TS_KEY,
)
from connectors.errors import ConvexError, InternalError
from connectors.perf import gc_paused
from connectors.selection import ColumnFilter, Selection

if TYPE_CHECKING:
    from connectors.backend.engine import Deployment, TableInfo

__all__ = ["ExportReader", "HttpReader", "LocalReader"]


class ExportReader(Protocol):
    """Pages of a deployment's streaming export, values decoded from ``convex_encoded_json``."""

    def snapshot_pages(
        self, selection: Selection, snapshot: int | None, cursor: str | None
    ) -> Iterator[SnapshotPage]:
        """list_snapshot pages from ``cursor`` (None = start) at ``snapshot`` (None = now) until
        ``hasMore`` is false; every page reports the same snapshot."""
        ...

    def delta_pages(self, selection: Selection, cursor: int) -> Iterator[DeltaPage]:
        """document_deltas pages after ``cursor`` until ``hasMore`` is false."""
        ...

    def table_columns(self) -> dict[str, list[TableColumns]]:
        """Tables and their top-level columns per component path (``get_table_column_names``)."""
        ...

    def json_schemas(self, *, delta_schema: bool) -> dict[str, dict[str, Any]]:
        """JSON Schemas of the tables, per component path then table (``json_schemas?byComponent=true``)."""
        ...


class HttpReader:
    """Reads over HTTP with the project's client (POST, ``convex_encoded_json``, pipelined pages)."""

    def __init__(self, client: ConvexClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"HttpReader({self.client!r})"

    def snapshot_pages(
        self, selection: Selection, snapshot: int | None, cursor: str | None
    ) -> Iterator[SnapshotPage]:
        return self.client.iter_snapshot_pages(
            selection=selection, snapshot=snapshot, cursor=cursor, fmt=FORMAT_ENCODED_JSON
        )

    def delta_pages(self, selection: Selection, cursor: int) -> Iterator[DeltaPage]:
        return self.client.iter_delta_pages(cursor, selection=selection, fmt=FORMAT_ENCODED_JSON)

    def table_columns(self) -> dict[str, list[TableColumns]]:
        return self.client.get_table_column_names()

    def json_schemas(self, *, delta_schema: bool) -> dict[str, dict[str, Any]]:
        return self.client.json_schemas(delta_schema=delta_schema, by_component=True)


class LocalReader:
    """Reads a ``Deployment`` in this process with the server's own export functions (no HTTP).

    ``snapshot_page_limit``/``deltas_page_limit`` default to the deployment's configured page sizes.
    """

    def __init__(
        self,
        deployment: Deployment,
        *,
        snapshot_page_limit: int | None = None,
        deltas_page_limit: int | None = None,
    ) -> None:
        # Imported here so that HTTP-only users never load the storage engine.
        from connectors.backend import export
        from connectors.backend.engine import Deployment

        if not isinstance(deployment, Deployment):
            raise TypeError(f"LocalReader needs a connectors.backend.engine.Deployment, got {deployment!r}")
        self.deployment = deployment
        self._export = export
        self._snapshot_limit = snapshot_page_limit
        self._deltas_limit = deltas_page_limit

    def __repr__(self) -> str:
        return f"LocalReader({self.deployment.persistence!r})"

    def snapshot_pages(
        self, selection: Selection, snapshot: int | None, cursor: str | None
    ) -> Iterator[SnapshotPage]:
        # The server's page (same table order, cursors, checks and errors), but its stored bodies are decoded
        # here directly: no wire encoding and re-parsing of what is already convex_encoded_json.
        while True:
            page = self._export.snapshot_rows_page(
                self.deployment,
                snapshot=snapshot,
                cursor=cursor,
                selection=selection,
                limit=self._snapshot_limit,
            )
            page_values = _stored_values(page.table, page.rows, page.columns)
            yield SnapshotPage(page_values, page.snapshot, page.cursor, page.has_more)
            if not page.has_more:
                return
            snapshot, cursor = page.snapshot, page.cursor

    def delta_pages(self, selection: Selection, cursor: int) -> Iterator[DeltaPage]:
        fmt = values.ValueFormat.ENCODED
        while True:
            result = self._export.document_deltas(
                self.deployment, cursor=cursor, fmt=fmt, selection=selection, limit=self._deltas_limit
            )
            page_values = decode_exported_values(result.values_json, is_delta=True)
            yield DeltaPage(page_values, result.cursor, result.has_more)
            if not result.has_more:
                return
            cursor = result.cursor

    def table_columns(self) -> dict[str, list[TableColumns]]:
        raw = self._export.table_column_names(self.deployment)["byComponent"]
        return {
            component: [TableColumns(t["name"], tuple(t["columns"])) for t in tables]
            for component, tables in raw.items()
        }

    def json_schemas(self, *, delta_schema: bool) -> dict[str, dict[str, Any]]:
        return self._export.json_schemas(
            self.deployment, delta_schema=delta_schema, fmt=values.ValueFormat.JSON, by_component=True
        )


_SYSTEM_FIELDS: Final = SYSTEM_FIELDS


def _stored_values(
    table: TableInfo | None, rows: list[Any], columns: ColumnFilter | None
) -> list[ExportedValue]:
    """A snapshot page's stored rows ``(internal_id, ts, flags, body)`` -> exported values, decoded as
    ``decode_exported_values`` decodes the server's page of the same rows (a stored body holds the system
    fields and the user's fields only, in ``convex_encoded_json``)."""
    if table is None or not rows:
        return []
    with gc_paused():
        _ids, timestamps, flags, bodies = zip(*rows, strict=True)  # the page's columns, in one C-level pass
        try:
            docs = values.decode_documents(bodies, flags)
        except (ConvexError, ValueError, TypeError) as exc:
            raise InternalError(f"stored value of table {table.name!r} does not decode: {exc}") from exc
        if columns is not None:
            docs = [columns.apply(d) for d in docs]
        return list(
            map(ExportedValue, repeat(table.component), repeat(table.name), timestamps, repeat(False), docs)
        )


def decode_exported_values(values_json: bytes, *, is_delta: bool) -> list[ExportedValue]:
    """Decode a ``convex_encoded_json`` array of exported values the way ``ConvexClient`` decodes a page:
    metadata popped into the tuple, other ``_`` keys dropped (reserved, spec §8), fields decoded in place."""
    with gc_paused():
        items = orjson.loads(values_json)
        out: list[ExportedValue] = []
        append = out.append
        decode = values.decode_encoded_value
        for item in items:
            component = item.pop(COMPONENT_KEY)
            table = item.pop(TABLE_KEY)
            ts = item.pop(TS_KEY)
            deleted = item.pop(DELETED_KEY, False)
            reserved = [key for key in item if key[:1] == "_" and key not in _SYSTEM_FIELDS]
            for key in reserved:
                del item[key]
            try:
                for key, value in item.items():
                    t = type(value)
                    if t is dict or t is list or t is int:
                        item[key] = decode(value)
            except (ConvexError, ValueError, TypeError) as exc:
                # Our own storage produced it: a fault on our side, not the caller's.
                raise InternalError(f"stored value of table {table!r} does not decode: {exc}") from exc
            append(ExportedValue(component, table, ts, deleted, item))
        return out
