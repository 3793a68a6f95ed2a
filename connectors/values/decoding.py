"""Depth-checked decoders of the wire formats: parsed ``convex_encoded_json``/``export_json`` to values,
with the path of the first bad value in the error."""

from __future__ import annotations

from typing import Any

from connectors.constants import (
    MAX_NESTING,
)
from connectors.values.problems import (
    _dollar_key_problem,
    _int_range_problem,
    _Problem,
    _run,
    _TooDeep,
    _type_problem,
)
from connectors.values.scalars import (
    INT64_MAX,
    INT64_MIN,
    Value,
    _b64decode,
    _decode_float_payload,
    _decode_integer_payload,
)


def _decode_encoded(v: Any, levels: int = MAX_NESTING) -> Value:
    """``levels``: how many levels of containers ``v`` may still open (a document may open
    :data:`MAX_NESTING`); a container beyond is refused before recursing into it. Counting down keeps the
    check a comparison with a constant on this hot path."""
    t = type(v)
    if t is str or t is bool or v is None or t is float:
        return v
    if t is int:
        # §2.4 rule 1: every JSON number is a Float64, even when spelled as an integer.
        try:
            return float(v)
        except OverflowError:
            raise _Problem("Number is too large for a Float64") from None
    if t is list:
        if levels <= 0:
            raise _TooDeep()
        out: list[Value] = []
        i = 0
        try:
            for i, x in enumerate(v):  # noqa: B007 - i is read in the except clause
                out.append(_decode_encoded(x, levels - 1))
        except _Problem as p:
            p.rev_path.append(i)
            raise
        return out
    if t is dict:
        if len(v) == 1:
            ((k, x),) = v.items()
            if k == "$integer":
                return _decode_integer_payload(x)
            if k == "$float":
                return _decode_float_payload(x)
            if k == "$bytes":
                return _b64decode(x, "$bytes")
        if levels <= 0:
            raise _TooDeep()
        res: dict[str, Value] = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            if k[:1] == "$":
                raise _dollar_key_problem(k)
            try:
                res[k] = _decode_encoded(x, levels - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
        return res
    raise _type_problem(v)


def from_encoded_json(obj: Any) -> Value:
    """Decode ``convex_encoded_json`` / Convex internal JSON (parsed) per §2.4."""
    return _run(_decode_encoded, obj)


def _decode_encoded_in_place(v: Any, levels: int = MAX_NESTING) -> Value:
    """Like :func:`_decode_encoded`, but reuses the parsed containers (they are ours to change), which
    halves the allocations of a page of documents."""
    t = type(v)
    if t is list:
        if levels <= 0:
            raise _TooDeep()
        i = 0
        try:
            for i, x in enumerate(v):  # noqa: B007 - i is read in the except clause
                tx = type(x)
                if tx is str or tx is float or tx is bool or x is None:
                    continue
                v[i] = float(x) if tx is int else _decode_encoded_in_place(x, levels - 1)
        except _Problem as p:
            p.rev_path.append(i)
            raise
        except OverflowError:
            raise _Problem("Number is too large for a Float64", [i]) from None
        return v
    if t is dict:
        if len(v) == 1:
            ((k, x),) = v.items()
            if k == "$integer":
                return _decode_integer_payload(x)
            if k == "$float":
                return _decode_float_payload(x)
            if k == "$bytes":
                return _b64decode(x, "$bytes")
        if levels <= 0:
            raise _TooDeep()
        for k, x in v.items():
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            if k[:1] == "$":
                raise _dollar_key_problem(k)
            tx = type(x)
            if tx is str or tx is float or tx is bool or x is None:
                continue
            try:
                v[k] = _decode_encoded_in_place(x, levels - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
        return v
    return _decode_encoded(v, levels)


def decode_encoded_value(v: Any) -> Value:
    """Decode one parsed ``convex_encoded_json`` value, reusing its containers (raises
    InvalidValueError with the path)."""
    try:
        return _decode_encoded_in_place(v)
    except _TooDeep as p:
        raise p.measured(v).to_error() from None
    except _Problem as p:
        raise p.to_error() from None


def decode_encoded_object_in_place(obj: dict[str, Any]) -> dict[str, Value]:
    """Decode a parsed ``convex_encoded_json`` object, reusing ``obj`` (which must be ours to change):
    scalars stay where they are and only numbers, specials and containers are replaced. This is the
    client's per-document hot path, several times faster than :func:`from_encoded_json`."""
    try:
        for k, v in obj.items():
            t = type(v)
            if t is str or t is float or t is bool or v is None:
                continue
            if type(k) is str and k[:1] == "$":
                raise _dollar_key_problem(k)
            try:
                obj[k] = _decode_encoded(v, MAX_NESTING - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
    except _TooDeep as p:
        raise p.measured(obj).to_error() from None
    except _Problem as p:
        raise p.to_error() from None
    return obj


def _decode_export(v: Any, levels: int = MAX_NESTING) -> Value:
    t = type(v)
    if t is str or t is bool or v is None or t is float:
        return v
    if t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        return v
    if t is list:
        if levels <= 0:
            raise _TooDeep()
        out: list[Value] = []
        i = 0
        try:
            for i, x in enumerate(v):  # noqa: B007 - i is read in the except clause
                out.append(_decode_export(x, levels - 1))
        except _Problem as p:
            p.rev_path.append(i)
            raise
        return out
    if t is dict:
        if len(v) == 1:
            ((k, x),) = v.items()
            if k == "$float":
                return _decode_float_payload(x)
            if k == "$bytes":
                return _b64decode(x, "$bytes")
            if k == "$integer":  # not produced by export encoders; unambiguous, so accept it
                return _decode_integer_payload(x)
        if levels <= 0:
            raise _TooDeep()
        res: dict[str, Value] = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            if k[:1] == "$":
                raise _dollar_key_problem(k)
            try:
                res[k] = _decode_export(x, levels - 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
        return res
    raise _type_problem(v)


def from_export_json(obj: Any) -> Value:
    """Decode ``export_json`` parsed by orjson (int token -> Int64, float token -> Float64)."""
    return _run(_decode_export, obj)
