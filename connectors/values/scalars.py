"""The Python representation of Convex values, their Int64 range, and the binary/base64 helpers the
encoders and decoders share (``$integer``/``$float``/``$bytes`` payloads)."""

from __future__ import annotations

import binascii
import math
import struct
from decimal import Decimal
from typing import Final, TypeAlias

import orjson

from connectors.values.problems import _Problem

Value: TypeAlias = "None | bool | int | float | str | bytes | list[Value] | dict[str, Value]"

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1

_OPT_SORT: Final = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
_loads = orjson.loads
_copysign = math.copysign
_PACK_I64 = struct.Struct("<q").pack
_UNPACK_I64 = struct.Struct("<q").unpack
_PACK_F64 = struct.Struct("<d").pack
_UNPACK_F64 = struct.Struct("<d").unpack
_PACK_F64_BE = struct.Struct(">d").pack


def _b64(b: bytes) -> str:
    return binascii.b2a_base64(b, newline=False).decode("ascii")


def _b64decode(s: object, what: str) -> bytes:
    if type(s) is not str:
        raise _Problem(f"{what} payload must be a base64 string")
    # Encoders always pad; accept unpadded input too (upstream decoders' strictness is unconfirmed).
    if len(s) % 4:
        s = s + "=" * (-len(s) % 4)
    try:
        # strict_mode: only the standard alphabet, correct padding (what b64decode(validate=True) checks,
        # without its per-call regex).
        return binascii.a2b_base64(s, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _Problem(f"{what} payload is not valid base64") from None


# Rust's `{}` writes 1e300 as 301 digits; past this length the shortest exponent form is used instead.
_F64_DISPLAY_MAX: Final = 32


def _rust_f64_display(f: float) -> str:
    """Format like Rust's ``{}`` for f64 (no exponent, no trailing ``.0``) for upstream-identical messages;
    numbers that would take more than 32 characters that way (1e300, 5e-324) keep Python's exponent form."""
    r = repr(f)
    if "e" in r:
        plain = format(Decimal(r), "f")
        if len(plain) > _F64_DISPLAY_MAX:
            return r
        r = plain
    if r.endswith(".0"):
        r = r[:-2]
    return r


def _decode_integer_payload(s: object) -> int:
    raw = _b64decode(s, "$integer")
    if len(raw) != 8:
        raise _Problem("Int64 must be exactly eight bytes")
    return _UNPACK_I64(raw)[0]


def _decode_float_payload(s: object) -> float:
    raw = _b64decode(s, "$float")
    if len(raw) != 8:
        raise _Problem("Float64 must be exactly eight bytes")
    f: float = _UNPACK_F64(raw)[0]
    if f != 0.0 and f - f == 0.0:  # finite and non-zero, i.e. normal or subnormal
        raise _Problem(f"Float64 {_rust_f64_display(f)} should be encoded as a number")
    return f


def _is_negzero(v: float) -> bool:
    return v == 0.0 and _copysign(1.0, v) < 0.0
