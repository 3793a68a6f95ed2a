"""Airbyte record conversion (``shared/spec/streaming-import.md`` §5). Pure functions, no I/O.

A record's ``data`` (parsed JSON) becomes a Convex object: every key at every depth goes through
``ValidIdentifier<FieldName>``, every JSON number becomes a Float64, and top-level CDC fields decide
whether the record is a delete and are then dropped.
"""

from __future__ import annotations

from typing import Any, Final

from connectors.errors import PlainError
from connectors.identifiers import IDENTIFIER_PREFIX, valid_identifier_field
from connectors.values import MAX_NESTING, NestingTooDeepError, Value, nesting_depth, too_deep_message

DUPLICATE_FIELD_LIMIT: Final = 3
CDC_DELETED_FIELD: Final = IDENTIFIER_PREFIX + "ab_cdc_deleted_at"
CDC_PREFIX: Final = IDENTIFIER_PREFIX + "ab_cdc"


# JSON values that convert to themselves: skipped without a call (the common case).
_AS_IS: Final = frozenset({str, float, bool, type(None)})


class _TooDeep(Exception):
    """A container deeper than MAX_NESTING: raised before recursing into it, so the stack depth never
    depends on the record."""


def _convert_value(v: Any, levels: int) -> Value:
    """``levels``: how many levels of containers ``v`` may still open (``data`` may open MAX_NESTING)."""
    t = type(v)
    if t is str or t is bool or v is None or t is float:
        return v
    if t is int:
        # Every JSON number is a Float64 (no Int64 path), so large integers lose precision like f64.
        try:
            return float(v)
        except OverflowError:
            raise PlainError("A number in the record is too large for a Float64") from None
    if t is dict:
        return _convert_object(v, levels)
    if t is list:
        if levels <= 0:
            raise _TooDeep
        if _AS_IS.issuperset(map(type, v)):  # common case: a list of strings, floats, booleans, nulls
            return list(v)
        return [_convert_value(x, levels - 1) for x in v]
    raise PlainError(f"Unsupported JSON value of type {t.__name__} in the record")


def _convert_object(d: dict[str, Any], levels: int) -> dict[str, Value]:
    if levels <= 0:
        raise _TooDeep
    below = levels - 1
    renamed: dict[str, str] | None = None
    for k in d:
        new = valid_identifier_field(k)
        if new != k:
            if renamed is None:
                renamed = {}
            renamed[k] = new
    if renamed is None:  # common case: every key is already valid
        out: dict[str, Value] = {}
        for k, v in d.items():
            out[k] = v if type(v) in _AS_IS else _convert_value(v, below)
        return out

    # Collision rule. Upstream only checks renamed keys against the original keys; we also check them
    # against keys earlier renamed keys took (streaming-import.md §13.5), in sorted order of the original
    # keys so the result does not depend on the sender's key order.
    taken: set[str] = set()
    for k in sorted(renamed):
        candidate = renamed[k]
        for _ in range(DUPLICATE_FIELD_LIMIT):
            if candidate not in d and candidate not in taken:
                break
            candidate = IDENTIFIER_PREFIX + candidate
        else:
            raise PlainError(f"Too many duplicate field names found for modified field {candidate}")
        taken.add(candidate)
        renamed[k] = candidate
    return {renamed.get(k, k): v if type(v) in _AS_IS else _convert_value(v, below) for k, v in d.items()}


# Top-level keys that convert to themselves and are not CDC fields (records of one stream repeat the same
# keys): a record whose keys are all here needs no renaming, collision or CDC handling. Bounded.
_KEPT_KEYS: set[str] = set()
_KEPT_KEYS_MAX: Final = 65536


def _remember_kept_keys(data: dict[str, Any]) -> None:
    if len(_KEPT_KEYS) >= _KEPT_KEYS_MAX:
        _KEPT_KEYS.clear()
    for k in data:
        if valid_identifier_field(k) == k and not k.startswith(CDC_PREFIX):
            _KEPT_KEYS.add(k)


def convert_airbyte_record(data: Any) -> tuple[dict[str, Value], bool]:
    """Convert one Airbyte ``data`` object; return ``(object, deleted)``.

    Deleted iff the renamed top-level ``source_ab_cdc_deleted_at`` is present and not null; every
    top-level ``source_ab_cdc*`` field is then removed."""
    if type(data) is not dict:
        raise PlainError(f"Airbyte record data must be a JSON object, not {type(data).__name__}")
    try:
        if _KEPT_KEYS.issuperset(data):
            # Fast path (same result as the general one): no key changes and no CDC field, so only the
            # values that are not JSON scalars kept as they are need converting.
            out: dict[str, Value] = dict(data)
            if not _AS_IS.issuperset(map(type, data.values())):
                below = MAX_NESTING - 1
                for k, v in data.items():
                    if type(v) not in _AS_IS:
                        out[k] = _convert_value(v, below)
            return out, False
        obj = _convert_object(data, MAX_NESTING)
    except _TooDeep:
        raise NestingTooDeepError(too_deep_message(nesting_depth(data))) from None
    _remember_kept_keys(data)
    deleted = obj.get(CDC_DELETED_FIELD) is not None
    if any(k.startswith(CDC_PREFIX) for k in obj):
        obj = {k: v for k, v in obj.items() if not k.startswith(CDC_PREFIX)}
    return obj, deleted
