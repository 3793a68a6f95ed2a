"""IdV6 ids: spec vectors (values-and-ids.md §5.4), validation order and properties."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import ids
from connectors.errors import InvalidIdError
from connectors.ids import (
    base32_encode,
    decode_id,
    encode_id,
    encoded_len,
    is_valid_id,
    new_id,
    new_internal_id,
    table_number_of,
)

SEQ16 = bytes(range(16))

VALID_VECTORS = [
    ("z43zp6c3e75gkmz1kfwj6mbbx5sw281h", 1017, "fb198371cb09d3e19bf923516be973c1"),
    ("2rsfck4e88mvyb011h9k7znq9h1mb00", 22, "32f64c8e4229bf2c010c5333feb74c43"),
    ("0400000000000000000000000000248", 1, "00" * 16),
    ("fzzzzzzzzzzzzzzzzzzzzzzzzzzpzsr", 127, "ff" * 16),
    ("g00g00820c20a1g7104gm2rc1m70zyds", 128, SEQ16.hex()),
    ("j57000820c20a1g7104gm2rc1m70ynr8", 10001, SEQ16.hex()),
    ("g2002001081g81860w40j2gb1g6gw3vs74", 16384, SEQ16.hex()),
    ("g2080080041061050r3gg28a1c60t3gfz4wg", 2097152, SEQ16.hex()),
    ("g2081001000g40r40m30e209185gr38e1xwvj", 268435456, SEQ16.hex()),
    ("zzzzzzrf000g40r40m30e209185gr38e1y1nj", 4294967295, SEQ16.hex()),
]


@pytest.mark.parametrize(("s", "table", "internal_hex"), VALID_VECTORS)
def test_valid_vectors_decode(s: str, table: int, internal_hex: str) -> None:
    assert decode_id(s) == (table, bytes.fromhex(internal_hex))
    assert is_valid_id(s)
    assert table_number_of(s) == table


@pytest.mark.parametrize(("s", "table", "internal_hex"), VALID_VECTORS)
def test_valid_vectors_encode(s: str, table: int, internal_hex: str) -> None:
    assert encode_id(table, bytes.fromhex(internal_hex)) == s


def test_upstream_vector_internal_id_formula() -> None:
    # byte i = 251^(i+1) mod 256
    assert bytes(pow(251, i + 1, 256) for i in range(16)).hex() == VALID_VECTORS[0][2]


@pytest.mark.parametrize(
    ("s", "reason"),
    [
        ("mz1xn7tymdnktmmzqy5xxhn7tjs2nkkfmtjjr", "does not fit in 32 bits"),
        ("J57000820C20A1G7104GM2RC1M70YNR8", "alphabet"),
        ("j57000820c20a1g7104gm2rc1m70ynr0", "checksum"),
        ("0" * 30, "length"),
        ("0" * 38, "length"),
        ("", "length"),
        ("j57000820c20a1g7104gm2rc1m70ynri", "alphabet"),
        ("j57000820c20a1g7104gm2rc1m70ynrl", "alphabet"),
        ("j57000820c20a1g7104gm2rc1m70ynro", "alphabet"),
        ("j57000820c20a1g7104gm2rc1m70ynru", "alphabet"),
        ("j57000820c20a1g7104gm2rc1m70ynr-", "alphabet"),
        ("j57000820c20a1g7104gm2rc1m70ynré", "alphabet"),
        # 31 zeros: the varint is 0.
        ("0" * 31, "table number is 0"),
    ],
)
def test_invalid_vectors(s: str, reason: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        decode_id(s)
    assert reason in info.value.message
    assert info.value.code == "InvalidId"
    assert not is_valid_id(s)


@pytest.mark.parametrize("n", [33, 35])
def test_impossible_lengths_are_rejected(n: int) -> None:
    # A valid id with characters appended never survives: the extra bits are either bytes left over
    # or a non-canonical tail.
    base = encode_id(10001, SEQ16) if n == 33 else encode_id(16384, SEQ16)
    s = base + "0" * (n - len(base))
    assert len(s) == n
    with pytest.raises(InvalidIdError):
        decode_id(s)


def test_non_zero_padding_bits_rejected() -> None:
    s = encode_id(1, bytes(16))  # 31 chars: the last char carries 3 padding bits
    assert s[-1] == "8"
    tweaked = s[:-1] + "9"  # same data bits, one padding bit set
    with pytest.raises(InvalidIdError, match="canonical"):
        decode_id(tweaked)


def _raw_to_str(raw: bytes) -> str:
    return base32_encode(raw)


def test_validation_order_truncated_varint() -> None:
    # 19 bytes all with the continuation bit: varint runs past 5 bytes.
    with pytest.raises(InvalidIdError, match="longer than 5 bytes"):
        decode_id(_raw_to_str(b"\xff" * 19))


def test_validation_order_trailing_bytes() -> None:
    body = b"\x01" + bytes(16)
    check = ids._fletcher16(body)
    raw = body + check.to_bytes(2, "little") + b"\x00"  # 20 bytes -> 32 chars, one extra byte
    with pytest.raises(InvalidIdError, match="trailing"):
        decode_id(_raw_to_str(raw))


def test_validation_missing_footer() -> None:
    # 5-byte varint + 16 bytes = 21 bytes -> 34 chars, no room for the footer.
    raw = b"\x81\x80\x80\x80\x01" + bytes(16)
    with pytest.raises(InvalidIdError, match="footer"):
        decode_id(_raw_to_str(raw))


def test_encode_rejects_bad_arguments() -> None:
    for bad in (0, -1, 2**32, True):
        with pytest.raises(InvalidIdError):
            encode_id(bad, SEQ16)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdError):
        encode_id(1, b"short")
    assert not is_valid_id(12345)


@pytest.mark.parametrize("n", range(0, 30))
def test_base32_matches_spec_algorithm(n: int) -> None:
    data = os.urandom(n)
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    bits = "".join(f"{b:08b}" for b in data)
    bits += "0" * (-len(bits) % 5)
    reference = "".join(alphabet[int(bits[i : i + 5], 2)] for i in range(0, len(bits), 5))
    reference = reference[: encoded_len(n)]
    assert base32_encode(data) == reference


def test_encoded_lengths_by_table_number() -> None:
    for table, length in [(1, 31), (127, 31), (128, 32), (16383, 32), (16384, 34), (2**21 - 1, 34)]:
        assert len(encode_id(table, SEQ16)) == length
    for table, length in [(2**21, 36), (2**28 - 1, 36), (2**28, 37), (2**32 - 1, 37)]:
        assert len(encode_id(table, SEQ16)) == length


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 2**32 - 1), st.binary(min_size=16, max_size=16))
def test_round_trip(table: int, internal: bytes) -> None:
    s = encode_id(table, internal)
    assert decode_id(s) == (table, internal)
    assert 31 <= len(s) <= 37


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 2**32 - 1),
    st.binary(min_size=16, max_size=16),
    st.integers(1, 2**32 - 1),
    st.binary(min_size=16, max_size=16),
)
def test_string_order_equals_byte_order(t1: int, i1: bytes, t2: int, i2: bytes) -> None:
    s1, s2 = encode_id(t1, i1), encode_id(t2, i2)
    r1 = ids.encode_varint(t1) + i1
    r2 = ids.encode_varint(t2) + i2
    raw1 = r1 + ids._fletcher16(r1).to_bytes(2, "little")
    raw2 = r2 + ids._fletcher16(r2).to_bytes(2, "little")
    assert (s1 < s2) == (raw1 < raw2)
    assert (s1 == s2) == (raw1 == raw2)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789abcdefghjkmnpqrstvwxyz", min_size=31, max_size=37))
def test_random_strings_never_crash(s: str) -> None:
    # Either valid (and then canonical) or an InvalidIdError: never another exception.
    try:
        table, internal = decode_id(s)
    except InvalidIdError:
        return
    assert encode_id(table, internal) == s


def test_fletcher16_matches_definition() -> None:
    data = os.urandom(23)
    c0 = c1 = 0
    for b in data:
        c0 = (c0 + b) % 256
        c1 = (c1 + c0) % 256
    assert ids._fletcher16(data) == (c1 << 8) | c0


def test_new_internal_id_day_number() -> None:
    now_ms = 1_700_000_000_000.0  # 2023-11-14
    internal = new_internal_id(now_ms)
    assert len(internal) == 16
    assert int.from_bytes(internal[14:], "big") == 1_700_000_000_000 // 86_400_000 == 19675
    assert len(new_internal_id()) == 16


def test_new_internal_ids_are_unique() -> None:
    seen = {new_internal_id(0)[:14] for _ in range(20000)}
    assert len(seen) == 20000
    s = new_id(10001)
    assert table_number_of(s) == 10001


def test_new_internal_ids_unique_across_threads() -> None:
    results: list[list[bytes]] = [[] for _ in range(4)]

    def work(slot: list[bytes]) -> None:
        for _ in range(5000):
            slot.append(new_internal_id(0))

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [x for r in results for x in r]
    assert len(set(flat)) == len(flat)


def _child_ids(q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q.put([new_internal_id(0) for _ in range(10)])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_does_not_reuse_random_buffer() -> None:
    new_internal_id(0)  # make sure the parent has a buffer filled
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_ids, args=(q,))
    p.start()
    child = q.get(timeout=30)
    p.join(timeout=30)
    parent = [new_internal_id(0) for _ in range(10)]
    assert not set(child) & set(parent)
