"""The wire formats (``json``, ``convex_encoded_json``, ``export_json``; spec §2) and their encoders."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final

from connectors.constants import (
    FORMAT_ALIASES,
    MAX_NESTING,
)
from connectors.errors import BadRequestError
from connectors.values.problems import _int_range_problem, _Problem, _run, _TooDeep, _type_problem
from connectors.values.scalars import (
    _OPT_SORT,
    _PACK_F64,
    _PACK_I64,
    INT64_MAX,
    INT64_MIN,
    Value,
    _b64,
    _dumps,
    _is_negzero,
)


class ValueFormat(enum.Enum):
    JSON = "json"
    ENCODED = "convex_encoded_json"
    EXPORT = "export_json"


_FORMAT_NAMES: Final = {name: ValueFormat(canonical) for name, canonical in FORMAT_ALIASES.items()}


def parse_format(s: str | None) -> ValueFormat:
    """The ``format`` query parameter (§2); ``None`` means the default, clean ``json``."""
    if s is None:
        return ValueFormat.JSON
    fmt = _FORMAT_NAMES.get(s)
    if fmt is None:
        raise BadRequestError("BadFormat", f"format param must be one of [`json`]. Got {s}")
    return fmt


# --- Generic tree mapping (wire encoders/decoders; not the storage hot path) ------------------------


def _map_value(v: Any, leaf: Callable[[Any], Any], levels: int = MAX_NESTING) -> Any:
    t = type(v)
    if t is list:
        if levels <= 0:
            raise _TooDeep()
        out = []
        i = 0
        try:
            for i, x in enumerate(v):  # noqa: B007 - i is read in the except clause
                out.append(_map_value(x, leaf, levels - 1))
        except _Problem as p:
            p.rev_path.append(i)
            raise
        return out
    if t is dict:
        if levels <= 0:
            raise _TooDeep()
        res = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            try:
                res[k] = _map_value(x, leaf, levels - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
        return res
    return leaf(v)


# --- Encoders ----------------------------------------------------------------------------------------


def _leaf_clean(v: Any) -> Any:
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is float:
        if v - v == 0.0:
            return v
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        return str(v)
    if t is bytes:
        return _b64(v)
    raise _type_problem(v)


def _leaf_encoded(v: Any) -> Any:
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is float:
        if v - v == 0.0 and not _is_negzero(v):
            return v
        return {"$float": _b64(_PACK_F64(v))}
    if t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        return {"$integer": _b64(_PACK_I64(v))}
    if t is bytes:
        return {"$bytes": _b64(v)}
    raise _type_problem(v)


def _leaf_export(v: Any) -> Any:
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is float:
        return v if v - v == 0.0 else {"$float": _b64(_PACK_F64(v))}
    if t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        return v
    if t is bytes:
        return {"$bytes": _b64(v)}
    raise _type_problem(v)


def to_clean_json(v: Value) -> Any:
    """Clean ``json`` (lossy): Int64 -> decimal string, NaN/±inf -> strings, Bytes -> base64 string."""
    return _run(lambda x: _map_value(x, _leaf_clean), v)


def to_encoded_json(v: Value) -> Any:
    """``convex_encoded_json``: ``$integer``; ``$float`` only for -0.0/NaN/±inf; ``$bytes``."""
    return _run(lambda x: _map_value(x, _leaf_encoded), v)


def to_export_json(v: Value) -> Any:
    """``export_json``: Int64 plain integer, -0.0 plain, ``$float`` for NaN/±inf, ``$bytes``."""
    return _run(lambda x: _map_value(x, _leaf_export), v)


_ENCODERS: Final = {
    ValueFormat.JSON: to_clean_json,
    ValueFormat.ENCODED: to_encoded_json,
    ValueFormat.EXPORT: to_export_json,
}


def encode_value(v: Value, fmt: ValueFormat) -> Any:
    """Encode ``v`` into a JSON-able Python object in wire format ``fmt``."""
    return _ENCODERS[fmt](v)


def wire_bytes(value: Value, fmt: ValueFormat) -> bytes:
    """Serialized JSON (sorted keys) of ``value`` in wire format ``fmt``."""
    return _dumps(encode_value(value, fmt), option=_OPT_SORT)
