"""Fivetran state v2 (fivetran-source.md §6.1, §8 item 10 and 20): every parsing rule and vector."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.sync import fivetran_state
from connectors.sync.fivetran_state import OLD_VERSION_MESSAGE, FivetranStateError
from connectors.sync.state import Phase, SyncState, TableRef

SPEC_INITIAL = (
    '{"version":2,"checkpoint":{"InitialSync":{"snapshot":1718000005000000000,"cursor":"{\\"tablet\\":'
    '\\"AAECAwQFBgcICQoLDA0ODw\\",\\"id\\":\\"j57000820c20a1g7104gm2rc1m70ynr8\\"}"}},'
    '"tablesSeen":["users","waitlist/entries"]}'
)
SPEC_DELTAS = (
    '{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":1718000010000000000}},'
    '"tablesSeen":["users","waitlist/entries"]}'
)


def test_spec_vectors_parse_and_serialize_byte_identically() -> None:
    initial = fivetran_state.parse(SPEC_INITIAL)
    assert initial is not None
    assert initial.phase is Phase.SNAPSHOT
    assert initial.snapshot_ts == 1718000005000000000
    assert (
        initial.snapshot_cursor
        == '{"tablet":"AAECAwQFBgcICQoLDA0ODw","id":"j57000820c20a1g7104gm2rc1m70ynr8"}'
    )
    assert initial.tables_seen == {TableRef("", "users"), TableRef("waitlist", "entries")}
    assert fivetran_state.serialize(initial) == SPEC_INITIAL
    deltas = fivetran_state.parse(SPEC_DELTAS)
    assert deltas is not None
    assert (deltas.phase, deltas.delta_cursor) == (Phase.DELTAS, 1718000010000000000)
    assert fivetran_state.serialize(deltas) == SPEC_DELTAS


def test_absent_and_empty_object_are_a_fresh_start() -> None:
    assert fivetran_state.parse(None) is None
    assert fivetran_state.parse("{}") is None


def test_malformed_json_is_an_error() -> None:
    with pytest.raises(FivetranStateError, match="not valid JSON"):
        fivetran_state.parse('{"version":2,')


def test_delta_updates_without_tables_seen_is_legacy() -> None:
    state = fivetran_state.parse('{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":42}}}')
    assert state is not None
    assert state.tables_seen is None and not state.tracks_tables
    assert state.delta_cursor == 42
    # Legacy stays legacy: serde writes the None as null, and null parses back to legacy.
    text = fivetran_state.serialize(state)
    assert text == '{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":42}},"tablesSeen":null}'
    again = fivetran_state.parse(text)
    assert again is not None and again.tables_seen is None


@pytest.mark.parametrize(
    "text",
    [
        '{"version":1,"checkpoint":{"InitialSync":{"snapshot":42,"cursor":"abc123"}}}',
        '{"version":1,"checkpoint":{"DeltaUpdates":{"cursor":42}}}',
        '{"version":0,"checkpoint":{"DeltaUpdates":{"cursor":42}},"tablesSeen":[]}',
    ],
)
def test_versions_below_2_parse_then_are_refused_with_the_reference_text(text: str) -> None:
    with pytest.raises(FivetranStateError) as err:
        fivetran_state.parse(text)
    assert str(err.value).startswith(OLD_VERSION_MESSAGE)
    assert OLD_VERSION_MESSAGE == (
        "This Fivetran connection was created with an old version of the Convex connector. "
        "To continue syncing, a full historical resync is required."
    )


def test_a_newer_version_is_refused() -> None:
    with pytest.raises(FivetranStateError, match="newer version"):
        fivetran_state.parse('{"version":3,"checkpoint":{"DeltaUpdates":{"cursor":42}}}')


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"a":"b"}', "Unknown key 'a' in the state"),
        ('{ "version": 1, "snapshot": { "NewState": { "cursor": 42 } } }', "Unknown key 'snapshot'"),
        ('{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":42}},"extra":1}', "Unknown key 'extra'"),
        ('{"version":2,"checkpoint":{"NewState":{"cursor":42}}}', "Unknown key 'NewState' in `checkpoint`"),
        (
            '{"version":2,"checkpoint":{"InitialSync":{"snapshot":1,"cursor":"c","x":0}}}',
            "Unknown key 'x' in `InitialSync`",
        ),
        (
            '{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":42,"y":0}}}',
            "Unknown key 'y' in `DeltaUpdates`",
        ),
        ('{"version":2,"checkpoint":{}}', "exactly one"),
        (
            '{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":1},"InitialSync":{"snapshot":1,"cursor":"c"}}}',
            "exactly one",
        ),
        ('{"checkpoint":{"DeltaUpdates":{"cursor":42}}}', "Missing key 'version'"),
        ('{"version":2}', "Missing key 'checkpoint'"),
        ('{"version":2,"checkpoint":{"InitialSync":{"snapshot":1}}}', "Missing key 'cursor'"),
        ('{"version":2,"checkpoint":{"DeltaUpdates":{}}}', "Missing key 'cursor'"),
        ('{"version":"2","checkpoint":{"DeltaUpdates":{"cursor":42}}}', "`version` must be a 64-bit integer"),
        ('{"version":2.0,"checkpoint":{"DeltaUpdates":{"cursor":42}}}', "`version` must be a 64-bit integer"),
        ('{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":"42"}}}', "`DeltaUpdates.cursor` must be"),
        (
            '{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":9223372036854775808}}}',
            "out of range",
        ),
        (
            '{"version":2,"checkpoint":{"InitialSync":{"snapshot":1,"cursor":5}}}',
            "`InitialSync.cursor` must be",
        ),
        (
            '{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":1}},"tablesSeen":"users"}',
            "`tablesSeen` must",
        ),
        ('{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":1}},"tablesSeen":[1]}', "`tablesSeen` must"),
        ("[1,2]", "must be a JSON object"),
        ('{"version":2,"checkpoint":"DeltaUpdates"}', "`checkpoint` must be a JSON object"),
    ],
)
def test_strict_rejections_say_what_and_what_to_do(text: str, needle: str) -> None:
    with pytest.raises(FivetranStateError) as err:
        fivetran_state.parse(text)
    assert needle in str(err.value)
    assert "re-sync" in str(err.value)


def test_tables_seen_is_written_sorted_whatever_the_input_order() -> None:
    state = fivetran_state.parse(
        '{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":7}},"tablesSeen":["z","a/b/t","m","a/b/t"]}'
    )
    assert state is not None
    assert TableRef("a/b", "t") in (state.tables_seen or ())
    assert fivetran_state.serialize(state) == (
        '{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":7}},"tablesSeen":["a/b/t","m","z"]}'
    )


def test_fresh_snapshot_state_has_no_checkpoint_form() -> None:
    # No checkpoint is emitted before the first page (CHANGELOG 0.5.0): there is nothing to write.
    with pytest.raises(ValueError, match="first page"):
        fivetran_state.serialize(SyncState.fresh())


_names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
_refs = st.builds(TableRef, st.sampled_from(["", "waitlist", "a/b"]), _names)
_i64 = st.integers(-(2**63), 2**63 - 1)


@given(
    initial=st.booleans(),
    ts=_i64,
    cursor=st.text(max_size=40),
    seen=st.one_of(st.none(), st.frozensets(_refs, max_size=5)),
)
def test_round_trip(initial: bool, ts: int, cursor: str, seen: frozenset[TableRef] | None) -> None:
    state = SyncState.resume_snapshot(ts, cursor, seen) if initial else SyncState.deltas_from(ts, seen)
    text = fivetran_state.serialize(state)
    parsed = fivetran_state.parse(text)
    assert parsed == state
    assert fivetran_state.serialize(parsed) == text
    # Compact and in the reference's key order.
    assert list(orjson.loads(text)) == ["version", "checkpoint", "tablesSeen"]
    assert orjson.dumps(orjson.loads(text)).decode() == text  # compact, no whitespace
