"""Streaming export on top of the engine: list_snapshot, document_deltas, json_schemas and
get_table_column_names exactly as ``shared/spec/streaming-export.md`` describes them, independent of HTTP.

Pages are produced directly as wire bytes: a stored document is already convex_encoded_json with sorted keys, so
in most formats its bytes are spliced behind the metadata keys without being decoded (see
``values.storage_to_wire``).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from connectors import ids, values
from connectors.backend.engine import Deployment, TableInfo
from connectors.constants import INVALID_WINDOW, SNAPSHOT_TOO_OLD
from connectors.errors import BadRequestError, CursorExpiredError, InternalError
from connectors.selection import ColumnFilter, Selection
from connectors.values import ValueFormat

RETENTION_MESSAGE = (
    "Trying to synchronize from timestamp {ts}, which is older than the database\u2019s retention window. "
    "This may happen if you paused your Fivetran or Airbyte connector for a long period of time. "
    "Please perform a full sync of the connector. "
    "See https://fivetran.com/docs/connectors/troubleshooting/trigger-historical-re-syncs "
    "or https://docs.airbyte.com/platform/operator-guides/refreshes"
)
INVALID_CURSOR_MESSAGE = (
    "Invalid value for the `cursor` argument of list_snapshot. Use a `cursor` returned by a previous "
    "list_snapshot call, and treat it as an opaque value."
)


def snapshot_too_new(ts: int) -> BadRequestError:
    return BadRequestError("SnapshotTooNew", f"Snapshot value {ts} is in the future.")


def snapshot_too_old(ts: int) -> BadRequestError:
    return CursorExpiredError(SNAPSHOT_TOO_OLD, f"Snapshot value {ts} is too far in the past.")


def invalid_window(cursor: int) -> BadRequestError:
    return CursorExpiredError(INVALID_WINDOW, RETENTION_MESSAGE.format(ts=cursor + 1))


def cursor_too_new(ts: int) -> BadRequestError:
    # Echoing a future cursor would let later commits fall at or below it and never be delivered
    # (streaming-export.md §5.4), so it is refused like a future list_snapshot snapshot.
    return BadRequestError("DocumentDeltasCursorTooNew", f"Cursor value {ts} is in the future.")


def cursor_required() -> BadRequestError:
    return BadRequestError("DocumentDeltasCursorRequired", "/api/document_deltas requires a cursor")


def invalid_cursor() -> BadRequestError:
    return BadRequestError("InvalidListSnapshotCursor", INVALID_CURSOR_MESSAGE)


@dataclass(frozen=True, slots=True)
class SnapshotCursor:
    """Position in a list_snapshot traversal: inside ``tablet_id`` after ``doc_id`` (None = from the
    start of that table). Serialized as upstream does: ``{"tablet": <22-char TabletId>, "id": <IdV6>}``."""

    tablet_id: bytes
    doc_id: str | None

    def encode(self) -> str:
        return orjson.dumps({"tablet": _tablet_text(self.tablet_id), "id": self.doc_id}).decode()

    @classmethod
    def decode(cls, text: str) -> SnapshotCursor:
        """Strict: a JSON object whose ``tablet`` is exactly the canonical 22-character unpadded URL-safe
        base64 of 16 bytes and whose ``id`` is null or a valid IdV6. Anything else is
        ``InvalidListSnapshotCursor`` (a lenient decoder could turn garbage into a position after every
        table and tell the client the snapshot is complete)."""
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise invalid_cursor() from None
        if type(obj) is not dict:
            raise invalid_cursor()
        tablet_text = obj.get("tablet")
        doc_id = obj.get("id")
        if type(tablet_text) is not str or _TABLET_TEXT_RE.fullmatch(tablet_text) is None:
            raise invalid_cursor()
        tablet_id = base64.urlsafe_b64decode(tablet_text + "==")
        # 22 characters carry 132 bits: the 4 beyond the 16 bytes must be zero (only one spelling).
        if len(tablet_id) != _TABLET_ID_LEN or _tablet_text(tablet_id) != tablet_text:
            raise invalid_cursor()
        if doc_id is not None:
            if type(doc_id) is not str:
                raise invalid_cursor()
            try:
                ids.decode_id(doc_id)
            except BadRequestError:
                raise invalid_cursor() from None
        return cls(tablet_id, doc_id)


_TABLET_ID_LEN: Final = 16
_TABLET_TEXT_RE: Final = re.compile(r"[A-Za-z0-9_-]{22}", re.ASCII)


def _tablet_text(tablet_id: bytes) -> str:
    return base64.urlsafe_b64encode(tablet_id).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SnapshotPageResult:
    values_json: bytes  # the JSON array of exported values
    count: int
    snapshot: int
    cursor: str | None
    has_more: bool

    def to_json(self) -> bytes:
        cursor = b"null" if self.cursor is None else orjson.dumps(self.cursor)
        return b"".join(
            (
                b'{"values":',
                self.values_json,
                b',"snapshot":',
                str(self.snapshot).encode(),
                b',"cursor":',
                cursor,
                b',"hasMore":',
                b"true" if self.has_more else b"false",
                b"}",
            )
        )


@dataclass(frozen=True, slots=True)
class DeltasPageResult:
    values_json: bytes
    count: int
    cursor: int
    has_more: bool

    def to_json(self) -> bytes:
        return b"".join(
            (
                b'{"values":',
                self.values_json,
                b',"cursor":',
                str(self.cursor).encode(),
                b',"hasMore":',
                b"true" if self.has_more else b"false",
                b"}",
            )
        )


def _prefix(table: TableInfo, deltas: bool) -> bytes:
    head = b'{"_component":' + orjson.dumps(table.component) + b',"_table":' + orjson.dumps(table.name)
    return head + (b',"_deleted":false,"_ts":' if deltas else b',"_ts":')


def _document_bytes(body: bytes, flags: int, fmt: ValueFormat, columns: ColumnFilter | None) -> bytes:
    if columns is None:
        return values.storage_to_wire(body, flags, fmt)
    return values.wire_bytes(columns.apply(values.decode_document(body, flags)), fmt)


def check_snapshot(deployment: Deployment, snapshot: int, read_ts: int) -> None:
    if snapshot < 0:
        raise InternalError("negative snapshot")
    if snapshot > read_ts:
        raise snapshot_too_new(snapshot)
    if deployment.config.clock_ns() - snapshot > deployment.config.snapshot_max_age_ns:
        raise snapshot_too_old(snapshot)


@dataclass(frozen=True)
class SnapshotRowsPage:
    """One list_snapshot page before encoding: the stored rows ``(internal_id, ts, flags, body)`` of one table
    (``table`` None when nothing is left) and the page's snapshot, cursor and ``hasMore``. In-process readers
    decode the stored bodies directly (``values.decode_document``); :func:`list_snapshot` encodes them."""

    table: TableInfo | None
    rows: list[Any]
    columns: ColumnFilter | None
    snapshot: int
    cursor: str | None
    has_more: bool


def snapshot_rows_page(
    deployment: Deployment,
    *,
    snapshot: int | None,
    cursor: str | None,
    selection: Selection,
    limit: int | None = None,
) -> SnapshotRowsPage:
    """The rows of one page of a consistent snapshot (see :func:`list_snapshot`)."""
    selection.validate()
    read_ts = deployment.read_timestamp()
    if snapshot is None:
        snapshot = read_ts
    else:
        check_snapshot(deployment, snapshot, read_ts)
    position = SnapshotCursor.decode(cursor) if cursor else None
    limit = limit or deployment.config.snapshot_page_limit
    tables = [t for t in deployment.tables_at(snapshot) if selection.includes_table(t.component, t.name)]
    start = 0
    after_id = b""
    if position is not None:
        while start < len(tables) and tables[start].tablet_id < position.tablet_id:
            start += 1
        # Every cursor we hand out names a table of this snapshot and selection; any other table (or a
        # document of another table) is not a position in this traversal.
        if start >= len(tables) or tables[start].tablet_id != position.tablet_id:
            raise invalid_cursor()
        if position.doc_id is not None:
            number, after_id = ids.decode_id(position.doc_id)
            if number != tables[start].table_number:
                raise invalid_cursor()
    if start >= len(tables):
        return SnapshotRowsPage(None, [], None, snapshot, None, False)
    table = tables[start]
    rows = deployment.snapshot_rows(table, snapshot, after_id, limit)
    columns = selection.column_filter(table.component, table.name)
    if len(rows) >= limit:
        next_cursor: str | None = SnapshotCursor(
            table.tablet_id, ids.encode_id(table.table_number, rows[-1][0])
        ).encode()
        has_more = True
    elif start + 1 < len(tables):
        next_cursor = SnapshotCursor(tables[start + 1].tablet_id, None).encode()
        has_more = True
    else:
        next_cursor, has_more = None, False
    return SnapshotRowsPage(table, rows, columns, snapshot, next_cursor, has_more)


def list_snapshot(
    deployment: Deployment,
    *,
    snapshot: int | None,
    cursor: str | None,
    fmt: ValueFormat,
    selection: Selection,
    limit: int | None = None,
) -> SnapshotPageResult:
    """One page of a consistent snapshot. A page never spans two tables (streaming-export.md §4.3)."""
    page = snapshot_rows_page(deployment, snapshot=snapshot, cursor=cursor, selection=selection, limit=limit)
    if page.table is None:
        return SnapshotPageResult(b"[]", 0, page.snapshot, None, False)
    rows, columns = page.rows, page.columns
    out = bytearray(b"[")
    prefix = _prefix(page.table, deltas=False)
    for _internal_id, ts, flags, body in rows:
        out += prefix
        out += str(ts).encode()
        out += b","
        out += _document_bytes(body, flags, fmt, columns)[1:]
        out += b","
    if rows:
        out[-1:] = b"]"
    else:
        out += b"]"
    return SnapshotPageResult(bytes(out), len(rows), page.snapshot, page.cursor, page.has_more)


def document_deltas(
    deployment: Deployment,
    *,
    cursor: int | None,
    fmt: ValueFormat,
    selection: Selection,
    limit: int | None = None,
) -> DeltasPageResult:
    """Changes after ``cursor``; never splits a transaction; an exhausted log advances to now."""
    if cursor is None:
        raise cursor_required()
    selection.validate()
    if cursor < 0:
        raise InternalError("negative cursor")
    if cursor < deployment.config.clock_ns() - deployment.config.retention_ns:
        raise invalid_window(cursor)
    read_ts = deployment.read_timestamp()
    if cursor > read_ts:
        raise cursor_too_new(cursor)
    rows, next_cursor, has_more = deployment.read_change_rows(cursor, limit, up_to_ts=read_ts)
    out = bytearray(b"[")
    count = 0
    # Per table: None if skipped (deleted or not selected), else (table, prefix, column filter).
    tables: dict[int, tuple[TableInfo, bytes, ColumnFilter | None] | None] = {}
    for ts, tablet, internal_id, deleted, flags, body, _seq in rows:
        entry = tables.get(tablet, _UNSEEN)
        if entry is _UNSEEN:
            entry = tables[tablet] = _delta_table(deployment, selection, tablet)
        if entry is None:
            continue
        table, prefix, columns = entry
        if deleted or body is None:  # a live revision always has a body
            out += orjson.dumps(
                {
                    "_component": table.component,
                    "_table": table.name,
                    "_ts": ts,
                    "_deleted": True,
                    "_id": ids.encode_id(table.table_number, internal_id),
                }
            )
        else:
            out += prefix
            out += str(ts).encode()
            out += b","
            out += _document_bytes(body, flags, fmt, columns)[1:]
        out += b","
        count += 1
    if count:
        out[-1:] = b"]"
    else:
        out += b"]"
    return DeltasPageResult(bytes(out), count, next_cursor, has_more)


_UNSEEN: Any = object()


def _delta_table(
    deployment: Deployment, selection: Selection, tablet: int
) -> tuple[TableInfo, bytes, ColumnFilter | None] | None:
    table = deployment.table_by_tablet(tablet)
    # Rows of tables that no longer exist are skipped entirely (streaming-export.md §5.6).
    if table is None or table.state == "deleted" or not selection.includes_table(table.component, table.name):
        return None
    return table, _prefix(table, deltas=True), selection.column_filter(table.component, table.name)


# Schemas -------------------------------------------------------------------------------------------


def _user_tables(deployment: Deployment) -> list[TableInfo]:
    return [t for t in deployment.tables() if t.state == "active" and not t.name.startswith("_")]


def json_schemas(
    deployment: Deployment, *, delta_schema: bool, fmt: ValueFormat, by_component: bool
) -> dict[str, Any]:
    """``GET /api/json_schemas``: flat ``{table: schema}`` or grouped by component path."""
    grouped: dict[str, dict[str, Any]] = {}
    for table in _user_tables(deployment):
        shape = deployment.shape_of(table)
        grouped.setdefault(table.component, {})[table.name] = shape.json_schema(table.name, fmt, delta_schema)
    if by_component:
        return grouped
    flat: dict[str, Any] = {}
    for component in sorted(grouped):
        flat.update(grouped[component])
    return flat


def table_column_names(deployment: Deployment) -> dict[str, Any]:
    """``GET /api/get_table_column_names``."""
    by_component: dict[str, list[dict[str, Any]]] = {}
    for table in _user_tables(deployment):
        columns = deployment.shape_of(table).top_level_fields()
        by_component.setdefault(table.component, []).append({"name": table.name, "columns": columns})
    return {"byComponent": by_component}


def tables_and_columns(deployment: Deployment) -> dict[str, list[str]]:
    """The retired ``GET /api/get_tables_and_columns`` (flat, root component), for old connectors."""
    return {
        t.name: deployment.shape_of(t).top_level_fields()
        for t in _user_tables(deployment)
        if t.component == ""
    }
