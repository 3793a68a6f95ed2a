"""Airbyte per-stream state, exactly as the published ``source-convex`` keeps it (``airbyte.md`` §1.6-1.7),
so existing connections keep syncing when they switch to our source::

    {"snapshot_cursor": <list_snapshot cursor | null>, "snapshot_has_more": <bool>, "delta_cursor": <int ns | null>}

During the snapshot, ``delta_cursor`` holds the snapshot timestamp (the published connector stores the
response's ``snapshot`` there), which is the cursor the change feed starts from once ``snapshot_has_more``
is false. One stream is one table; tables are never truncated (Airbyte has its own sync modes), so the state
does not track tables.

Parsing is tolerant where Airbyte is: ``{}`` (CDK 7 passes it when there is no state) and missing keys take
the published connector's initial values (no cursor, snapshot still to do). Anything else that is not this
shape is refused with what was wrong and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from connectors.sync.state import Phase, SyncState

SNAPSHOT_CURSOR: Final = "snapshot_cursor"
SNAPSHOT_HAS_MORE: Final = "snapshot_has_more"
DELTA_CURSOR: Final = "delta_cursor"
_KEYS: Final = (SNAPSHOT_CURSOR, SNAPSHOT_HAS_MORE, DELTA_CURSOR)
_HINT: Final = "Reset the stream's state in Airbyte (or clear it) to sync the stream from a fresh snapshot."


class AirbyteStateError(ValueError):
    """A stream state that cannot be used; the text names the stream, the key and what to do."""


def parse(raw: object, stream: str = "") -> SyncState:
    """The sync state of one stream from its stored state object (``None`` or ``{}`` = fresh start).

    Keys other than the three are ignored (the CDK and older connector versions may add their own)."""
    where = f" of stream {stream!r}" if stream else ""
    if raw is None:
        return SyncState.fresh(track_tables=False)
    if not isinstance(raw, Mapping):
        raise AirbyteStateError(f"The state{where} must be a JSON object, got {_describe(raw)}. {_HINT}")
    snapshot_cursor = raw.get(SNAPSHOT_CURSOR)
    has_more = raw.get(SNAPSHOT_HAS_MORE, True)
    delta_cursor = raw.get(DELTA_CURSOR)
    if snapshot_cursor is not None and not isinstance(snapshot_cursor, str):
        raise AirbyteStateError(
            f"`{SNAPSHOT_CURSOR}`{where} must be a string or null, got {_describe(snapshot_cursor)}. {_HINT}"
        )
    if not isinstance(has_more, bool):
        raise AirbyteStateError(
            f"`{SNAPSHOT_HAS_MORE}`{where} must be true or false, got {_describe(has_more)}. {_HINT}"
        )
    if delta_cursor is not None and (type(delta_cursor) is not int or delta_cursor < 0):
        raise AirbyteStateError(
            f"`{DELTA_CURSOR}`{where} must be a non-negative integer (ns) or null, got "
            f"{_describe(delta_cursor)}. {_HINT}"
        )
    if has_more:
        if snapshot_cursor is not None and delta_cursor is None:
            raise AirbyteStateError(
                f"The state{where} has a `{SNAPSHOT_CURSOR}` but no `{DELTA_CURSOR}` (the snapshot timestamp "
                f"the cursor belongs to), so the snapshot cannot be resumed. {_HINT}"
            )
        # Like the published connector: a stored snapshot timestamp pins the snapshot even without a cursor.
        return SyncState(
            Phase.SNAPSHOT,
            snapshot_ts=delta_cursor,
            snapshot_cursor=snapshot_cursor,
            tables_seen=None,
        )
    if delta_cursor is None:
        raise AirbyteStateError(
            f"The state{where} says the snapshot is done (`{SNAPSHOT_HAS_MORE}` false) but has no "
            f"`{DELTA_CURSOR}` to read changes from. {_HINT}"
        )
    return SyncState(
        Phase.DELTAS,
        snapshot_cursor=snapshot_cursor,
        delta_cursor=delta_cursor,
        tables_seen=None,
    )


def serialize(state: SyncState) -> dict[str, Any]:
    """The stream state object for ``state`` (keys in the published connector's order)."""
    if state.phase is Phase.SNAPSHOT:
        return {
            SNAPSHOT_CURSOR: state.snapshot_cursor,
            SNAPSHOT_HAS_MORE: True,
            DELTA_CURSOR: state.snapshot_ts,
        }
    return {
        SNAPSHOT_CURSOR: state.snapshot_cursor,
        SNAPSHOT_HAS_MORE: False,
        DELTA_CURSOR: state.delta_cursor,
    }


def _describe(raw: object) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, int):
        return "a negative integer" if raw < 0 else "an integer"
    return {str: "a string", float: "a number", list: "an array", dict: "an object"}.get(
        type(raw), type(raw).__name__
    )
