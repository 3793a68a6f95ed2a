"""Stored document bytes to a wire format, re-serialized only when a flag says a special value needs it."""

from __future__ import annotations

import binascii
from typing import Any, Final

from connectors.values.formats import ValueFormat
from connectors.values.scalars import _UNPACK_F64, _UNPACK_I64, _dumps, _loads
from connectors.values.storage import FLAG_INT, FLAG_NEGZERO


def _encoded_to_export_value(v: Any) -> Any:
    """The export-json form of a storage (encoded) sub-value; containers are updated in place."""
    t = type(v)
    if t is dict:
        if len(v) == 1:
            if "$integer" in v:
                return _UNPACK_I64(binascii.a2b_base64(v["$integer"]))[0]
            if "$float" in v:
                f = _UNPACK_F64(binascii.a2b_base64(v["$float"]))[0]
                return f if f == 0.0 else v  # -0.0 is a plain number in export; NaN/±inf stay $float
            if "$bytes" in v:
                return v
        for k, x in v.items():
            tx = type(x)
            if tx is dict or tx is list:
                v[k] = _encoded_to_export_value(x)
        return v
    if t is list:
        for i, x in enumerate(v):
            tx = type(x)
            if tx is dict or tx is list:
                v[i] = _encoded_to_export_value(x)
        return v
    return v


_INF: Final = float("inf")


def _float_name(f: float) -> Any:
    if f != f:
        return "NaN"
    if f in (_INF, -_INF):
        return "Infinity" if f > 0 else "-Infinity"
    return f  # -0.0 is the number -0.0 in clean json


def _encoded_to_clean_value(v: Any) -> Any:
    """The clean-json form of a storage (encoded) sub-value; containers are updated in place."""
    t = type(v)
    if t is dict:
        if len(v) == 1:
            if "$integer" in v:
                return str(_UNPACK_I64(binascii.a2b_base64(v["$integer"]))[0])
            if "$float" in v:
                return _float_name(_UNPACK_F64(binascii.a2b_base64(v["$float"]))[0])
            if "$bytes" in v:
                return v["$bytes"]  # same standard padded base64
        for k, x in v.items():
            tx = type(x)
            if tx is dict or tx is list:
                v[k] = _encoded_to_clean_value(x)
        return v
    if t is list:
        for i, x in enumerate(v):
            tx = type(x)
            if tx is dict or tx is list:
                v[i] = _encoded_to_clean_value(x)
        return v
    return v


def storage_to_wire(body: bytes, flags: int, fmt: ValueFormat) -> bytes:
    """The stored document's JSON bytes in wire format ``fmt``, re-serialized only when needed.

    Storage is ``convex_encoded_json`` with sorted keys, so the format real clients ask for most is the
    stored bytes themselves."""
    if fmt is ValueFormat.ENCODED or not flags:
        return body
    if fmt is ValueFormat.EXPORT:
        if not flags & (FLAG_INT | FLAG_NEGZERO):
            return body
        # In-place edits keep the parsed (already sorted) key order, so no re-sort is needed.
        return _dumps(_encoded_to_export_value(_loads(body)))
    return _dumps(_encoded_to_clean_value(_loads(body)))
