"""The bounded import batcher (connectors/batching.py)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.batching import Batcher, BatchLimits, RecordTooLargeError
from connectors.constants import AIRBYTE_IMPORT_BODY_LIMIT, DEFAULT_BODY_LIMIT


def _body(batch: Sequence[dict]) -> bytes:
    """What a client would send: a JSON array of the records."""
    return orjson.dumps(list(batch))


# A stream of events: ("add", record) or ("checkpoint", n).
_records = st.dictionaries(st.text(max_size=5), st.text(max_size=60) | st.integers(-(2**63), 2**63 - 1), max_size=6)
_events = st.lists(st.one_of(_records.map(lambda r: ("add", r)), st.just(("checkpoint", None))), max_size=80)


@settings(max_examples=200, deadline=None)
@given(events=_events, max_rows=st.integers(1, 7), max_bytes=st.integers(70, 400))
def test_batches_respect_limits_keep_order_lose_nothing_and_ack_after_flush(
    events: list[tuple[str, dict | None]], max_rows: int, max_bytes: int
) -> None:
    # Envelope "[" + "]" = 2 bytes; the separator is the "," (one too many counted for the last record).
    limits = BatchLimits(max_rows=max_rows, max_bytes=max_bytes, envelope_bytes=2, separator_bytes=1)
    sent: list[dict] = []
    acks: list[int] = []  # how many records had been sent when each checkpoint was acknowledged

    def flush(batch: Sequence[dict]) -> None:
        assert 1 <= len(batch) <= max_rows
        assert len(_body(batch)) <= max_bytes
        sent.extend(batch)

    added: list[dict] = []
    batcher: Batcher[dict] = Batcher(limits, flush)
    for kind, record in events:
        if kind == "add":
            assert record is not None
            size = len(orjson.dumps(record))
            if size > limits.max_record_bytes:
                with pytest.raises(RecordTooLargeError):
                    batcher.add(record, size, table="t", label=f"Record {len(added)}")
                continue
            batcher.add(record, size, table="t")
            added.append(record)
        else:
            expected = len(added)
            batcher.checkpoint(lambda expected=expected: acks.append(len(sent)) or expected)  # type: ignore[misc]
            # Every record added before the checkpoint was sent before its acknowledgement.
            assert acks[-1] == expected
    batcher.close()
    assert sent == added
    assert batcher.rows_flushed == len(added)
    assert batcher.pending_rows == 0


def test_a_record_larger_than_a_request_names_table_and_record() -> None:
    limits = BatchLimits(max_rows=10, max_bytes=100, envelope_bytes=10)
    batcher: Batcher[str] = Batcher(limits, lambda batch: None)
    with pytest.raises(RecordTooLargeError) as info:
        batcher.add("x", 200, table="users", label="Record 7 (line 9)")
    assert "Record 7 (line 9) for table users" in info.value.message
    assert "200 bytes" in info.value.message
    assert info.value.code == "RecordTooLarge"


def test_checkpoint_returns_the_ack_result_and_exit_flushes_only_on_success() -> None:
    batches: list[list[int]] = []
    limits = BatchLimits(max_rows=100, max_bytes=10_000)
    with Batcher(limits, lambda b: batches.append(list(b))) as batcher:
        batcher.add(1, 1)
        assert batcher.checkpoint(lambda: "acked") == "acked"
        batcher.add(2, 1)
    assert batches == [[1], [2]]
    with pytest.raises(RuntimeError), Batcher(limits, lambda b: batches.append(list(b))) as failing:
        failing.add(3, 1)
        raise RuntimeError("source failed")
    assert batches == [[1], [2]]  # nothing acknowledged covers record 3, so it is not sent


def test_limits_for_the_server_routes_stay_under_the_body_limits() -> None:
    airbyte = BatchLimits.airbyte_records(envelope_bytes=300)
    assert airbyte.max_bytes < AIRBYTE_IMPORT_BODY_LIMIT
    fivetran = BatchLimits.fivetran_operations()
    assert fivetran.max_rows == 500 and fivetran.max_bytes < DEFAULT_BODY_LIMIT
    with pytest.raises(ValueError):
        BatchLimits(max_rows=0, max_bytes=100)
    with pytest.raises(ValueError):
        BatchLimits(max_rows=1, max_bytes=10, envelope_bytes=10)
