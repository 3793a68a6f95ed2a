"""IdV6 document ids (``shared/spec/values-and-ids.md`` §5). Pure functions, no I/O.

Layout: ``VInt(table_number) ‖ internal_id (16 bytes) ‖ Fletcher-16 footer (LE)``, written in lower-case
Crockford base32 without padding. Bulk inserts create ~100k ids/s, so encoding leans on C helpers
(``base64.b32encode`` + ``bytes.translate``) and random bytes are drawn from the OS in large chunks.
"""

from __future__ import annotations

import base64
import binascii
import operator
import os
import re
import threading
import time

from connectors.errors import InvalidIdError

MAX_TABLE_NUMBER = 0xFFFF_FFFF
INTERNAL_ID_LEN = 16
MIN_ID_LEN = 31
MAX_ID_LEN = 37
ID_VERSION = 0

_RFC4648 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = b"0123456789abcdefghjkmnpqrstvwxyz"
_TO_RFC4648 = str.maketrans(_CROCKFORD.decode(), _RFC4648.decode())
_ALPHABET_RE = re.compile(r"[0-9a-hjkmnp-tv-z]*", re.ASCII)

_DAY_MS = 86_400_000


def encoded_len(n: int) -> int:
    """Number of base32 characters for ``n`` bytes (no padding)."""
    return (n // 5) * 8 + (0, 2, 4, 5, 7)[n % 5]


# Every pair of base32 characters (10 bits): encoding looks up 10 bits at a time from one big integer,
# which is several times faster than base64.b32encode (pure Python in 3.11) plus a translation.
_PAIRS = [a + b for a in _CROCKFORD.decode() for b in _CROCKFORD.decode()]
_PLAN: dict[int, tuple[tuple[int, ...], int, int]] = {}


def base32_encode(data: bytes) -> str:
    """Lower-case Crockford base32, no padding: 5-byte groups, big-endian, the last group zero-padded on
    the right, cut to ``encoded_len(n)`` characters."""
    n = len(data)
    plan = _PLAN.get(n)
    if plan is None:
        pad = -n % 5
        bits = (n + pad) * 8
        plan = (tuple(range(bits - 10, -1, -10)), pad * 8, encoded_len(n))
        if len(_PLAN) < 64:
            _PLAN[n] = plan
    shifts, pad_bits, keep = plan
    v = int.from_bytes(data, "big") << pad_bits
    pairs = _PAIRS
    s = "".join([pairs[(v >> k) & 1023] for k in shifts])
    return s if len(s) == keep else s[:keep]


def _base32_decode(s: str) -> bytes:
    """Decode ``floor(len * 5 / 8)`` bytes from an alphabet-checked string.

    Residues of 1, 3 or 6 characters carry bits that do not complete a byte; RFC 4648 decoders refuse
    them, so drop the last character (which only holds those leftover bits) first. Non-canonical
    strings are caught later by the re-encode check."""
    if len(s) % 8 in (1, 3, 6):
        s = s[:-1]
    padded = s.translate(_TO_RFC4648) + "=" * (-len(s) % 8)
    return base64.b32decode(padded)


def encode_varint(n: int) -> bytes:
    """An unsigned LEB128 varint (the id's table-number prefix; protobuf's varint too)."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Table numbers repeat constantly in bulk inserts; cache their varints (bounded: user tables are few).
_VARINT_CACHE: dict[int, bytes] = {}


def _fletcher16(data: bytes) -> int:
    """Fletcher-16 mod 256: c0 = Σ b, c1 = Σ (running c0) = Σ b_j·(n − j)."""
    n = len(data)
    c0 = sum(data) & 0xFF
    c1 = sum(map(operator.mul, data, range(n, 0, -1))) & 0xFF
    return (c1 << 8) | c0


def encode_id(table_number: int, internal_id: bytes) -> str:
    """Build the IdV6 string for ``(table_number, internal_id)``."""
    if type(table_number) is not int:
        raise InvalidIdError(f"Table number must be an int, not {type(table_number).__name__}")
    prefix = _VARINT_CACHE.get(table_number)
    if prefix is None:
        if not 0 < table_number <= MAX_TABLE_NUMBER:
            raise InvalidIdError(f"Table number {table_number} must be between 1 and {MAX_TABLE_NUMBER}")
        prefix = encode_varint(table_number)
        if len(_VARINT_CACHE) < 65536:
            _VARINT_CACHE[table_number] = prefix
    if type(internal_id) is not bytes or len(internal_id) != INTERNAL_ID_LEN:
        raise InvalidIdError(f"Internal id must be {INTERNAL_ID_LEN} bytes")
    body = prefix + internal_id
    check = _fletcher16(body) ^ ID_VERSION
    return base32_encode(body + check.to_bytes(2, "little"))


def decode_id(s: str) -> tuple[int, bytes]:
    """Validate an IdV6 string (§5.3, every step in order) and return ``(table_number, internal_id)``."""
    if type(s) is not str:
        raise InvalidIdError(f"Invalid ID: expected a string, got {type(s).__name__}")
    n = len(s)
    # 1. Length.
    if not MIN_ID_LEN <= n <= MAX_ID_LEN:
        raise InvalidIdError(
            f"Invalid ID: length {n} is not between {MIN_ID_LEN} and {MAX_ID_LEN} characters"
        )
    # 2. Alphabet (lower case only).
    if _ALPHABET_RE.fullmatch(s) is None:
        raise InvalidIdError(
            "Invalid ID: it contains a character outside the base32 alphabet 0123456789abcdefghjkmnpqrstvwxyz"
        )
    # 3. Base32 decode.
    try:
        data = _base32_decode(s)
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - alphabet already checked
        raise InvalidIdError("Invalid ID: it is not valid base32") from exc
    if len(data) != n * 5 // 8:  # pragma: no cover - guaranteed by _base32_decode
        raise InvalidIdError("Invalid ID: it is not valid base32")
    # 4. Varint: complete, at most 5 bytes, fits in u32.
    table_number = 0
    pos = 0
    while True:
        if pos >= len(data):
            raise InvalidIdError("Invalid ID: the table number varint is truncated")
        if pos >= 5:
            raise InvalidIdError("Invalid ID: the table number varint is longer than 5 bytes")
        b = data[pos]
        table_number |= (b & 0x7F) << (7 * pos)
        pos += 1
        if not b & 0x80:
            break
    if table_number > MAX_TABLE_NUMBER:
        raise InvalidIdError(f"Invalid ID: table number {table_number} does not fit in 32 bits")
    # 5. Table number is not 0.
    if table_number == 0:
        raise InvalidIdError("Invalid ID: table number is 0")
    # 6. 16 bytes of internal id.
    if len(data) - pos < INTERNAL_ID_LEN:
        raise InvalidIdError("Invalid ID: the internal id is shorter than 16 bytes")
    internal_id = data[pos : pos + INTERNAL_ID_LEN]
    pos += INTERNAL_ID_LEN
    # 7. Footer = Fletcher-16 of everything so far XOR version, little-endian.
    if len(data) - pos < 2:
        raise InvalidIdError("Invalid ID: the checksum footer is missing")
    expected = _fletcher16(data[:pos]) ^ ID_VERSION
    if int.from_bytes(data[pos : pos + 2], "little") != expected:
        raise InvalidIdError("Invalid ID: checksum mismatch (InvalidIdVersion)")
    pos += 2
    # 8. Nothing left over.
    if pos != len(data):
        raise InvalidIdError(f"Invalid ID: {len(data) - pos} unexpected trailing bytes")
    # 9. Canonical: re-encoding gives the input exactly.
    if base32_encode(data) != s:
        raise InvalidIdError("Invalid ID: it is not in canonical form")
    return table_number, internal_id


def is_valid_id(s: object) -> bool:
    try:
        decode_id(s)  # type: ignore[arg-type]
    except InvalidIdError:
        return False
    return True


def table_number_of(id_str: str) -> int:
    """Table number of a valid id (raises :class:`InvalidIdError` otherwise)."""
    return decode_id(id_str)[0]


# --- Random internal ids ---------------------------------------------------------------------------

_RANDOM_LEN = 14
_CHUNK = _RANDOM_LEN * 4096
_rand_lock = threading.Lock()
_rand_buf = b""
_rand_pos = 0


def _reset_after_fork() -> None:
    # A forked child must never reuse the parent's buffered bytes: both would mint the same ids.
    global _rand_lock, _rand_buf, _rand_pos
    _rand_lock = threading.Lock()
    _rand_buf = b""
    _rand_pos = 0


os.register_at_fork(after_in_child=_reset_after_fork)


def _random_bytes14() -> bytes:
    global _rand_buf, _rand_pos
    with _rand_lock:
        pos = _rand_pos
        if pos + _RANDOM_LEN > len(_rand_buf):
            _rand_buf = os.urandom(_CHUNK)
            pos = 0
        _rand_pos = pos + _RANDOM_LEN
        return _rand_buf[pos : pos + _RANDOM_LEN]


def new_internal_id(now_ms: float | None = None) -> bytes:
    """14 CSPRNG bytes followed by the 2-byte big-endian UTC day number (whole days since the epoch)."""
    day = int(time.time()) // 86_400 if now_ms is None else int(now_ms // _DAY_MS)
    # Masked like upstream's `as u16` cast (wraps in the year 2149).
    return _random_bytes14() + (day & 0xFFFF).to_bytes(2, "big")


def new_id(table_number: int, now_ms: float | None = None) -> str:
    """A fresh IdV6 string for ``table_number``."""
    return encode_id(table_number, new_internal_id(now_ms))
