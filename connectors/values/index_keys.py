"""Order-preserving index keys: bytes that compare like the values they encode (Convex order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from connectors.values.paths import MISSING, _Missing
from connectors.values.problems import _int_range_problem, _Problem, _type_problem
from connectors.values.scalars import _PACK_F64_BE, INT64_MAX, INT64_MIN, Value

# Each value is a type tag followed by a payload. Tags grow with Convex's type order, so bytes compare
# by type first. Fixed-width payloads (Int64, Float64) are big-endian and sign-adjusted. Variable-length
# ones (String, Bytes, object keys) escape 0x00 as 0x00 0xFF and end with 0x00 0x00, which sorts below
# any continuation; arrays and objects end with 0x00, below every element tag and the 0x01 key marker, so
# a prefix sorts first. All tags are in 0x10..0x91: never 0x00 and never 0xFF.

_T_MISSING: Final = b"\x10"
_T_NULL: Final = b"\x20"
_T_INT: Final = b"\x30"
_T_FLOAT: Final = b"\x40"
_T_FALSE: Final = b"\x50"
_T_TRUE: Final = b"\x51"
_T_STRING: Final = b"\x60"
_T_BYTES: Final = b"\x70"
_T_ARRAY: Final = b"\x80"
_T_OBJECT: Final = b"\x90"
_END: Final = b"\x00"
_KEY_MARK: Final = b"\x01"
_TERM: Final = b"\x00\x00"
_U64_MASK: Final = (1 << 64) - 1
_SIGN_BIT: Final = 1 << 63


def _float_order_bits(v: float) -> int:
    """IEEE-754 total order as an unsigned 64-bit integer (-NaN < -inf < … < -0.0 < 0.0 < … < NaN)."""
    u = int.from_bytes(_PACK_F64_BE(v), "big")
    return u ^ _U64_MASK if u & _SIGN_BIT else u ^ _SIGN_BIT


def _encode_key_value(v: Any, out: bytearray) -> None:
    t = type(v)
    if t is str:
        out += _T_STRING
        try:
            out += v.encode("utf-8").replace(b"\x00", b"\x00\xff")
        except UnicodeEncodeError:
            raise _Problem("String is not valid UTF-8 (it contains a lone surrogate)") from None
        out += _TERM
    elif t is float:
        out += _T_FLOAT
        out += _float_order_bits(v).to_bytes(8, "big")
    elif t is int:
        if not INT64_MIN <= v <= INT64_MAX:
            raise _int_range_problem()
        out += _T_INT
        out += (v - INT64_MIN).to_bytes(8, "big")
    elif v is None:
        out += _T_NULL
    elif t is bool:
        out += _T_TRUE if v else _T_FALSE
    elif v is MISSING:
        out += _T_MISSING
    elif t is bytes:
        out += _T_BYTES
        out += v.replace(b"\x00", b"\x00\xff")
        out += _TERM
    elif t is list:
        out += _T_ARRAY
        for i, x in enumerate(v):
            try:
                _encode_key_value(x, out)
            except _Problem as p:
                p.rev_path.append(i)
                raise
        out += _END
    elif t is dict:
        out += _T_OBJECT
        for k in sorted(v):  # code-point order == UTF-8 byte order
            if type(k) is not str:
                raise _Problem(f"Object keys must be strings, not {type(k).__name__}")
            out += _KEY_MARK
            try:
                out += k.encode("utf-8").replace(b"\x00", b"\x00\xff")
                out += _TERM
                _encode_key_value(v[k], out)
            except UnicodeEncodeError:
                raise _Problem("Field name is not valid UTF-8") from None
            except _Problem as p:
                p.rev_path.append(k)
                raise
        out += _END
    else:
        raise _type_problem(v)


def encode_index_key(values: Sequence[Value | _Missing]) -> bytes:
    """Order-preserving bytes for a tuple of values: ``a < b`` (Convex order) iff ``key(a) < key(b)``."""
    out = bytearray()
    try:
        for i, v in enumerate(values):
            try:
                _encode_key_value(v, out)
            except _Problem as p:
                p.rev_path.append(i)
                raise
    except _Problem as p:
        raise p.to_error() from None
    return bytes(out)


def index_key_prefix_successor(prefix: bytes) -> bytes | None:
    """Smallest bytes greater than every key that starts with ``prefix``; ``None`` if there is none."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))
