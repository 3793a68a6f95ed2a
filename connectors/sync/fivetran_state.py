"""Fivetran source state v2 (``Checkpoint.state_json``), exactly as Convex's Rust connector 2.0.2 writes and
reads it (``fivetran-source.md`` §6.1), so a connection can move between the two implementations::

    {"version":2,"checkpoint":{"InitialSync":{"snapshot":<i64>,"cursor":"<list_snapshot cursor>"}},"tablesSeen":[…]}
    {"version":2,"checkpoint":{"DeltaUpdates":{"cursor":<i64>}},"tablesSeen":[…]}

Compact, keys in this order, ``tablesSeen`` sorted (``null`` for a legacy state that never tracked tables,
which then never truncates). Parsing rejects unknown keys at every level, like serde's
``deny_unknown_fields``; ``{}`` or no state is a fresh start; a version below 2 still parses and is then
refused with the reference's text.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from connectors.sync.state import Phase, SyncState, TableRef

CURSOR_VERSION: Final = 2
OLD_VERSION_MESSAGE: Final = (
    "This Fivetran connection was created with an old version of the Convex connector. "
    "To continue syncing, a full historical resync is required."
)
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_HINT: Final = (
    "The state was not written by this connector or was edited; trigger a historical re-sync of the "
    "connection in Fivetran to start from a fresh state."
)

# What a state error says to do in Fivetran; a local runner replaces it with its own advice.
RESYNC_HINT: Final = _HINT


class FivetranStateError(ValueError):
    """The stored Fivetran state cannot be used; the text says what was wrong and what to do."""


def parse(state_json: str | None) -> SyncState | None:
    """The sync state stored in ``state_json``, or None for a fresh start (absent, or ``{}``)."""
    if state_json is None:
        return None
    try:
        raw = orjson.loads(state_json)
    except orjson.JSONDecodeError as exc:
        raise FivetranStateError(f"The connector state is not valid JSON ({exc}). {_HINT}") from None
    if raw == {}:
        return None
    obj = _object(
        raw, "the state", {"version", "checkpoint", "tablesSeen"}, required={"version", "checkpoint"}
    )
    version = _i64(obj["version"], "`version`")
    tables_seen = _tables_seen(obj.get("tablesSeen"))
    checkpoint = _object(obj["checkpoint"], "`checkpoint`", {"InitialSync", "DeltaUpdates"}, required=set())
    if len(checkpoint) != 1:
        raise FivetranStateError(
            "`checkpoint` must hold exactly one of `InitialSync` or `DeltaUpdates`, "
            f"found {len(checkpoint)} keys. {_HINT}"
        )
    if "InitialSync" in checkpoint:
        inner = _object(checkpoint["InitialSync"], "`InitialSync`", {"snapshot", "cursor"})
        snapshot = _i64(inner["snapshot"], "`InitialSync.snapshot`")
        cursor = inner["cursor"]
        if not isinstance(cursor, str):
            raise FivetranStateError(
                f"`InitialSync.cursor` must be a string, got {_describe(cursor)}. {_HINT}"
            )
        state = SyncState.resume_snapshot(snapshot, cursor, tables_seen)
    else:
        inner = _object(checkpoint["DeltaUpdates"], "`DeltaUpdates`", {"cursor"})
        state = SyncState.deltas_from(_i64(inner["cursor"], "`DeltaUpdates.cursor`"), tables_seen)
    if version < CURSOR_VERSION:
        raise FivetranStateError(
            f"{OLD_VERSION_MESSAGE} The stored state has version {version}; trigger a historical re-sync of "
            "the connection in Fivetran."
        )
    if version > CURSOR_VERSION:
        raise FivetranStateError(
            f"The connector state has version {version}, written by a newer version of the Convex connector "
            f"than this one (which understands version {CURSOR_VERSION}). Upgrade the connector, or trigger a "
            "historical re-sync of the connection in Fivetran."
        )
    return state


def serialize(state: SyncState) -> str:
    """The state JSON for ``state``, byte-identical to the reference connector's for the same situation."""
    if state.phase is Phase.SNAPSHOT:
        if state.snapshot_ts is None or state.snapshot_cursor is None:
            raise ValueError(
                "a snapshot-phase state is only checkpointed after a page with a cursor (no checkpoint is "
                "emitted before the first page)"
            )
        checkpoint: dict[str, Any] = {
            "InitialSync": {"snapshot": state.snapshot_ts, "cursor": state.snapshot_cursor}
        }
    else:
        checkpoint = {"DeltaUpdates": {"cursor": state.delta_cursor}}
    seen = None if state.tables_seen is None else sorted(ref.key for ref in state.tables_seen)
    return orjson.dumps({"version": CURSOR_VERSION, "checkpoint": checkpoint, "tablesSeen": seen}).decode()


def _object(raw: object, where: str, allowed: set[str], required: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise FivetranStateError(f"{where} must be a JSON object, got {_describe(raw)}. {_HINT}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise FivetranStateError(
            f"Unknown key {unknown[0]!r} in {where} (expected only {', '.join(sorted(allowed))}). {_HINT}"
        )
    missing = sorted((allowed if required is None else required) - set(raw))
    if missing:
        raise FivetranStateError(f"Missing key {missing[0]!r} in {where}. {_HINT}")
    return raw


def _i64(raw: object, where: str) -> int:
    if type(raw) is not int or not _I64_MIN <= raw <= _I64_MAX:
        raise FivetranStateError(f"{where} must be a 64-bit integer, got {_describe(raw)}. {_HINT}")
    return raw


def _tables_seen(raw: object) -> frozenset[TableRef] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(key, str) for key in raw):
        raise FivetranStateError(
            f"`tablesSeen` must be an array of strings or null, got {_describe(raw)}. {_HINT}"
        )
    return frozenset(TableRef.from_key(key) for key in raw)


def _describe(raw: object) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, int):
        return "an integer out of range" if not _I64_MIN <= raw <= _I64_MAX else "an integer"
    return {str: "a string", float: "a number", list: "an array", dict: "an object"}.get(
        type(raw), type(raw).__name__
    )
