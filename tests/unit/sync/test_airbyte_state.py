"""Airbyte per-stream state (airbyte.md §1.6-1.7, §4.2, §5.4): the published connector's shape, CDK 7's
``{}``, missing keys, and clear refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.sync import airbyte_state
from connectors.sync.airbyte_state import AirbyteStateError
from connectors.sync.state import Phase, SyncState


def test_sample_state_fixtures_round_trip() -> None:
    # integration_tests/sample_state.json of the published connector.
    posts = {"snapshot_cursor": "hi", "snapshot_has_more": False, "delta_cursor": 1}
    users = {"snapshot_cursor": None, "snapshot_has_more": True, "delta_cursor": None}
    p = airbyte_state.parse(posts, "posts")
    assert (p.phase, p.delta_cursor) == (Phase.DELTAS, 1)
    assert airbyte_state.serialize(p) == posts
    u = airbyte_state.parse(users, "users")
    assert u == SyncState.fresh(track_tables=False)
    assert airbyte_state.serialize(u) == users
    assert list(airbyte_state.serialize(u)) == ["snapshot_cursor", "snapshot_has_more", "delta_cursor"]


def test_abnormal_state_cursor_sizes_are_kept_exactly() -> None:
    raw = {"snapshot_cursor": None, "snapshot_has_more": False, "delta_cursor": 2652200000000000000}
    assert airbyte_state.serialize(airbyte_state.parse(raw)) == raw


@pytest.mark.parametrize("raw", [None, {}, {"snapshot_has_more": True}, {"unrelated": 1}])
def test_empty_and_missing_keys_are_a_fresh_start(raw: object) -> None:
    state = airbyte_state.parse(raw)
    assert state.phase is Phase.SNAPSHOT
    assert (state.snapshot_ts, state.snapshot_cursor, state.tables_seen) == (None, None, None)


def test_during_the_snapshot_delta_cursor_holds_the_snapshot_timestamp() -> None:
    raw = {"snapshot_cursor": "c1", "snapshot_has_more": True, "delta_cursor": 1718000005000000000}
    state = airbyte_state.parse(raw)
    assert (state.phase, state.snapshot_ts, state.snapshot_cursor) == (
        Phase.SNAPSHOT,
        1718000005000000000,
        "c1",
    )
    assert airbyte_state.serialize(state) == raw


def test_after_the_snapshot_the_change_feed_starts_from_delta_cursor() -> None:
    # What the published connector leaves after a full refresh over 2 pages (airbyte.md §5.4).
    raw = {"snapshot_cursor": "c2", "snapshot_has_more": False, "delta_cursor": 99}
    state = airbyte_state.parse(raw)
    assert (state.phase, state.delta_cursor) == (Phase.DELTAS, 99)
    assert airbyte_state.serialize(state) == raw


def test_missing_delta_cursor_after_the_snapshot_keeps_its_meaning_only_with_has_more() -> None:
    # Only snapshot_has_more given: snapshot still to do from the start.
    assert airbyte_state.parse({"snapshot_cursor": None}).phase is Phase.SNAPSHOT


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("state", "must be a JSON object"),
        ([1], "must be a JSON object"),
        ({"snapshot_cursor": 5}, "`snapshot_cursor` of stream 'users' must be a string or null"),
        ({"snapshot_has_more": "yes"}, "`snapshot_has_more` of stream 'users' must be true or false"),
        ({"snapshot_has_more": None}, "must be true or false"),
        ({"delta_cursor": "12"}, "`delta_cursor` of stream 'users' must be a non-negative integer"),
        ({"delta_cursor": -1}, "a negative integer"),
        ({"delta_cursor": 1.5}, "a number"),
        ({"delta_cursor": True}, "a boolean"),
        ({"snapshot_has_more": False}, "has no `delta_cursor`"),
        ({"snapshot_has_more": False, "delta_cursor": None}, "has no `delta_cursor`"),
        ({"snapshot_cursor": "c", "snapshot_has_more": True}, "cannot be resumed"),
    ],
)
def test_malformed_state_is_refused_with_what_and_what_to_do(raw: object, needle: str) -> None:
    with pytest.raises(AirbyteStateError) as err:
        airbyte_state.parse(raw, "users")
    assert needle in str(err.value)
    assert "Reset the stream's state" in str(err.value)


@given(
    has_more=st.booleans(),
    cursor=st.one_of(st.none(), st.text(max_size=30)),
    ts=st.integers(0, 2**63 - 1),
)
def test_round_trip(has_more: bool, cursor: str | None, ts: int) -> None:
    raw = {"snapshot_cursor": cursor, "snapshot_has_more": has_more, "delta_cursor": ts}
    assert airbyte_state.serialize(airbyte_state.parse(raw)) == raw
