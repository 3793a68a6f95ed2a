"""``WriteSession.index_ranges`` (the one-statement primary-key lookup of an import) answers exactly what
``index_range`` answers for each range on its own, on SQLite and PostgreSQL: per-range limits, key order,
ranges in any order, repeated and open ranges, more ranges than one statement takes."""

from __future__ import annotations

from connectors import values
from connectors.backend import sql
from connectors.backend.engine import Deployment

INDEX_ID = 999_001  # no catalog index uses it: entries written straight to the table


def _entries() -> list[tuple[int, bytes, bytes]]:
    rows: list[tuple[int, bytes, bytes]] = []
    for k in range(600):
        key = values.encode_index_key([False, f"pk{k:04d}"])
        copies = k % 4  # 0 (no match), 1, 2 or 3 entries with this key
        rows += [(INDEX_ID, key, bytes([c]) * 16 + k.to_bytes(2, "big")) for c in range(copies)]
    # Another index with the same keys, which a lookup must not see.
    rows.append((INDEX_ID + 1, values.encode_index_key([False, "pk0001"]), b"\x09" * 18))
    return rows


def test_index_ranges_equal_one_range_at_a_time(deployment: Deployment) -> None:
    keys = [values.encode_index_key([False, f"pk{k:04d}"]) for k in range(599, -1, -1)]
    keys += keys[:7]  # the same key twice in one lookup
    keys.append(values.encode_index_key([False]))  # a prefix of every key: a range of many entries
    ranges: list[tuple[bytes, bytes | None]] = [(k, values.index_key_prefix_successor(k)) for k in keys]
    ranges.append((b"", None))  # an empty key: the open range
    assert len(ranges) > sql._RANGES_CHUNK  # more than one statement on SQLite
    with deployment.persistence.write_transaction() as session:
        session.add_index_entries(sorted(_entries()))
        for limit in (1, 2, 5):
            expected = [session.index_range(INDEX_ID, lower, upper, limit) for lower, upper in ranges]
            got = session.index_ranges(INDEX_ID, ranges, limit)
            assert got == expected
            assert [len(e) for e in got[:4]] == [min(limit, n) for n in (3, 2, 1, 0)]  # pk0599, 0598, ...
            assert len(got[-2]) == limit and len(got[-1]) == limit
        assert session.index_ranges(INDEX_ID, [], 2) == []
        session.execute("DELETE FROM index_entries WHERE index_id IN (?, ?)", (INDEX_ID, INDEX_ID + 1))


def test_index_ranges_of_distinct_keys_equal_one_range_at_a_time(deployment: Deployment) -> None:
    """Distinct keys (an import batch's lookups) take one scan of the span they cover when it holds few other
    entries, and per-range seeks when it holds many: the same answers either way."""
    every = [values.encode_index_key([False, f"pk{k:04d}"]) for k in range(600)]
    batches = [
        every[596:] + every[:3],  # a few keys, the span between them full of others: per-range seeks
        every[100:140],  # contiguous keys with 0 to 3 entries each: one scan
        every[::2][:200],  # every other key: one scan (the others in between are within the slack)
        [*every[10:12], values.encode_index_key([False, "pk0010x"]), values.encode_index_key([True])],
    ]
    with deployment.persistence.write_transaction() as session:
        session.add_index_entries(sorted(_entries()))
        for keys in batches:
            ranges: list[tuple[bytes, bytes | None]] = [(k, values.index_key_prefix_successor(k)) for k in keys]
            for limit in (1, 2, 5):
                expected = [session.index_range(INDEX_ID, lower, upper, limit) for lower, upper in ranges]
                assert session.index_ranges(INDEX_ID, list(reversed(ranges)), limit) == expected[::-1]
        session.execute("DELETE FROM index_entries WHERE index_id IN (?, ?)", (INDEX_ID, INDEX_ID + 1))
