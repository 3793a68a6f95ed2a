"""The one sync state: where a sync stands in the snapshot and the change feed, and which tables it has seen.

Both connector state formats (Fivetran's state v2 JSON, Airbyte's per-stream state) are serializers of this
record (``fivetran_state``, ``airbyte_state``); the engine (``engine.run_sync``) only reads and emits it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import NamedTuple

ROOT_COMPONENT = ""


class TableRef(NamedTuple):
    """One table of one component (``""`` = root). A tuple: compared and hashed on every page."""

    component: str
    table: str

    @property
    def key(self) -> str:
        """The Fivetran ``tablesSeen`` key: ``<table>`` for the root, ``<componentPath>/<table>`` otherwise."""
        return self.table if not self.component else f"{self.component}/{self.table}"

    @classmethod
    def from_key(cls, key: str) -> TableRef:
        """Inverse of ``key``: the table is the last ``/``-separated segment (table names have no ``/``)."""
        component, _, table = key.rpartition("/")
        return cls(component, table)

    def __str__(self) -> str:
        return self.key


class Phase(enum.Enum):
    SNAPSHOT = "snapshot"  # paging list_snapshot at a pinned timestamp
    DELTAS = "deltas"  # following document_deltas from a cursor


@dataclass(frozen=True)
class SyncState:
    """Where a sync stands. Immutable: every checkpoint carries its own value.

    * ``phase`` SNAPSHOT: ``snapshot_ts`` is the pinned snapshot (None before the first page) and
      ``snapshot_cursor`` the list_snapshot cursor to continue after (None = from the start).
    * ``phase`` DELTAS: ``delta_cursor`` is the exclusive document_deltas cursor; ``snapshot_ts`` and
      ``snapshot_cursor`` keep what the finished snapshot left (informational; Airbyte state keeps them).
    * ``tables_seen``: tables whose rows were already handed on, or None for a legacy Fivetran state that
      never tracked them (then no table is ever truncated).
    * ``rows_synced``: rows and deletes handed on per table since this state's sync began (progress only;
      neither connector format stores it, so it restarts from zero after a resume).
    """

    phase: Phase = Phase.SNAPSHOT
    snapshot_ts: int | None = None
    snapshot_cursor: str | None = None
    delta_cursor: int | None = None
    tables_seen: frozenset[TableRef] | None = frozenset()
    rows_synced: Mapping[TableRef, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows_synced", MappingProxyType(dict(self.rows_synced)))
        if self.phase is Phase.DELTAS and self.delta_cursor is None:
            raise ValueError("a SyncState in the DELTAS phase needs a delta_cursor")
        if self.phase is Phase.SNAPSHOT and self.snapshot_cursor is not None and self.snapshot_ts is None:
            raise ValueError("a list_snapshot cursor is only valid with the snapshot it was issued for")

    # --- constructors -----------------------------------------------------------------------------------

    @classmethod
    def fresh(cls, *, track_tables: bool = True) -> SyncState:
        """A sync that has not started: a new snapshot, then the change feed."""
        return cls(tables_seen=frozenset() if track_tables else None)

    @classmethod
    def resume_snapshot(
        cls, snapshot_ts: int, cursor: str | None, tables_seen: Iterable[TableRef] | None = ()
    ) -> SyncState:
        return cls(
            Phase.SNAPSHOT, snapshot_ts, cursor, None, None if tables_seen is None else frozenset(tables_seen)
        )

    @classmethod
    def deltas_from(cls, cursor: int, tables_seen: Iterable[TableRef] | None = ()) -> SyncState:
        """Follow the change feed after ``cursor`` (e.g. ``export --since``, a Fivetran DeltaUpdates state)."""
        return cls(Phase.DELTAS, None, None, cursor, None if tables_seen is None else frozenset(tables_seen))

    # --- queries ----------------------------------------------------------------------------------------

    @property
    def snapshot_done(self) -> bool:
        return self.phase is Phase.DELTAS

    @property
    def tracks_tables(self) -> bool:
        return self.tables_seen is not None

    def restarted(self) -> SyncState:
        """A fresh snapshot with the same table tracking (after an expired cursor, or a new full refresh).
        Tracked tables are forgotten so each is truncated again before its first row."""
        return SyncState.fresh(track_tables=self.tracks_tables)

    def with_progress(self, rows_synced: Mapping[TableRef, int]) -> SyncState:
        return replace(self, rows_synced=rows_synced)
