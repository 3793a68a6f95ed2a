"""The sync engine against a live deployment, over HTTP (our server on loopback) and over the local engine,
on SQLite and PostgreSQL: a replica built only from the events equals the deployment after the snapshot,
inserts, patches and deletes; resuming from every checkpoint (through the Fivetran and Airbyte state
serializers) converges to the same replica; an expired cursor is one ``CursorExpired`` event and nothing
after it."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.client import ClientConfig, ConvexClient
from connectors.constants import INVALID_WINDOW, SNAPSHOT_TOO_OLD
from connectors.sync import (
    Checkpoint,
    CursorExpired,
    Deletes,
    ExportReader,
    HttpReader,
    LocalReader,
    Phase,
    Rows,
    SnapshotComplete,
    SyncEvent,
    SyncMode,
    SyncSelection,
    SyncState,
    TableRef,
    TableStarted,
    airbyte_state,
    fivetran_state,
    run_sync,
)
from tests.conftest import DeploymentFactory, FakeClock
from tests.integration.conftest import ServerFactory

PAGE = 10
SECOND = 1_000_000_000
RETENTION = 3600 * SECOND
MAX_AGE = 600 * SECOND
USERS = TableRef("", "users")
POSTS = TableRef("", "posts")
ENTRIES = TableRef("waitlist", "entries")
JOBS = TableRef("cron/inner", "jobs")
# Same name as a root table, created right after it: the two are neighbours in a delta page.
WAITING_USERS = TableRef("waitlist", "users")


# --- the source under test: one deployment, read over HTTP or locally ---------------------------------------


@dataclass
class Source:
    deployment: Deployment
    reader: ExportReader
    kind: str
    _closers: list[Callable[[], None]] = field(default_factory=list)


SourceFactory = Callable[..., Source]


@pytest.fixture(params=["http", "local"])
def open_source(
    request: pytest.FixtureRequest, deployment_factory: DeploymentFactory, server_factory: ServerFactory
) -> Iterator[SourceFactory]:
    opened: list[Source] = []

    def factory(config: DeploymentConfig | None = None) -> Source:
        config = config or DeploymentConfig(
            background=False, snapshot_page_limit=PAGE, deltas_page_limit=PAGE
        )
        if request.param == "http":
            live = server_factory.start(config)
            client = ConvexClient(
                ClientConfig(deployment_url=live.url, deploy_key=live.export_key, max_retries=1)
            )
            source = Source(live.deployment, HttpReader(client), "http", [client.close])
        else:
            deployment_factory.new_location()
            dep = deployment_factory.open(config)
            source = Source(dep, LocalReader(dep), "local")
        opened.append(source)
        return source

    yield factory
    for source in opened:
        for close in source._closers:
            close()


# --- data ----------------------------------------------------------------------------------------------------


def seed(dep: Deployment, counts: dict[TableRef, int]) -> dict[TableRef, list[str]]:
    """Documents with every value type (Int64 and Bytes included) in each table."""
    ids: dict[TableRef, list[str]] = {}
    with dep.transaction() as tx:
        for ref, n in counts.items():
            tx.create_table(ref.table, ref.component)
            ids[ref] = [
                tx.insert(
                    ref.table,
                    {
                        "n": i,
                        "big": 2**62 + i,
                        "f": i / 3,
                        "s": f"{ref.key}-{i}",
                        "b": bytes([i % 256, 0, 255]),
                        "ok": i % 2 == 0,
                        "none": None,
                        "nested": {"list": [i, "x", {"deep": b"\x01"}], "o": {"k": -i}},
                    },
                    ref.component,
                )
                for i in range(n)
            ]
    return ids


def mutate(dep: Deployment, ids: dict[TableRef, list[str]], rnd: random.Random, rounds: int = 1) -> None:
    """Inserts, patches and deletes in every table, several transactions."""
    for _ in range(rounds):
        for ref, table_ids in ids.items():
            with dep.transaction() as tx:
                for _ in range(3):
                    table_ids.append(
                        tx.insert(ref.table, {"n": rnd.randrange(10**6), "new": True}, ref.component)
                    )
                if table_ids:
                    tx.patch(rnd.choice(table_ids), {"patched": rnd.randrange(100), "s": None}, ref.component)
                if len(table_ids) > 2:
                    victim = table_ids.pop(rnd.randrange(len(table_ids)))
                    tx.delete(victim, ref.component)
                    patched = rnd.choice(table_ids)
            with dep.transaction() as tx:
                tx.patch(patched, {"again": b"\x00\xff"}, ref.component)
        # One transaction across every table: its rows of different tables share one page.
        with dep.transaction() as tx:
            for ref, table_ids in ids.items():
                table_ids.append(tx.insert(ref.table, {"n": -1, "together": True}, ref.component))


def truth(dep: Deployment, selection: SyncSelection | None = None) -> dict[TableRef, dict[str, Any]]:
    """The deployment's live documents per selected, non-empty table, read straight from storage."""
    out: dict[TableRef, dict[str, Any]] = {}
    for info in dep.tables():
        ref = TableRef(info.component, info.name)
        if selection is not None and not selection.accepts(ref):
            continue
        docs = {d.id: d.value() for d in dep.iter_snapshot(info)}
        if selection is not None and (columns := selection.column_filter(ref)) is not None:
            docs = {k: columns.apply(v) for k, v in docs.items()}
        if docs:
            out[ref] = docs
    return out


# --- a replica built only from events ---------------------------------------------------------------------------


@dataclass
class Replica:
    tables: dict[TableRef, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[tuple[SyncState, dict[TableRef, dict[str, Any]]]] = field(default_factory=list)
    events: list[SyncEvent] = field(default_factory=list)
    started: set[TableRef] = field(default_factory=set)  # tables started in this run

    def apply(self, events: Iterable[SyncEvent], *, keep_checkpoints: bool = True) -> Replica:
        started = self.started
        for event in events:
            self.events.append(event)
            if isinstance(event, TableStarted):
                assert event.table not in started
                started.add(event.table)
                if event.truncate:
                    self.tables[event.table] = {}
            elif isinstance(event, Rows):
                assert event.table in started and event.values
                table = self.tables.setdefault(event.table, {})
                for value in event.values:
                    assert (value.component, value.table, value.deleted) == (*event.table, False)
                    table[value.document["_id"]] = value.document
            elif isinstance(event, Deletes):
                assert event.table in started and event.values
                table = self.tables.setdefault(event.table, {})
                for doc_id in event.ids:
                    table.pop(doc_id, None)
                assert all(set(v.document) == {"_id"} for v in event.values)
            elif isinstance(event, Checkpoint) and keep_checkpoints:
                self.checkpoints.append((event.state, copy.deepcopy(self.tables)))
        return self

    def contents(self) -> dict[TableRef, dict[str, Any]]:
        return {ref: docs for ref, docs in self.tables.items() if docs}


COUNTS = {USERS: 29, WAITING_USERS: 4, POSTS: 30, ENTRIES: 31, JOBS: 10}


# --- tests -----------------------------------------------------------------------------------------------------


def test_snapshot_then_changes_replica_equals_deployment(open_source: SourceFactory) -> None:
    source = open_source()
    dep = source.deployment
    ids = seed(dep, COUNTS)
    selection = SyncSelection.everything()
    replica = Replica().apply(run_sync(source.reader, selection, SyncState.fresh()))
    assert replica.contents() == truth(dep)
    # Snapshot shape: TRUNCATE-style start before each table's first row; a checkpoint after every page
    # with more to come; the final checkpoint in the deltas phase at the snapshot timestamp.
    events = replica.events
    snapshot_done = next(i for i, e in enumerate(events) if isinstance(e, SnapshotComplete))
    starts = [e for e in events[:snapshot_done] if isinstance(e, TableStarted)]
    assert {e.table for e in starts} == set(COUNTS) and all(e.truncate for e in starts)
    snapshot_checkpoints = [e for e in events[:snapshot_done] if isinstance(e, Checkpoint)]
    # 29/30/31/10 documents at 10 a page (+ the empty page that ends a full table, + table changes).
    assert len(snapshot_checkpoints) >= 3 + 1 + 3 + 4 + 1
    assert all(c.state.phase is Phase.SNAPSHOT for c in snapshot_checkpoints)
    assert all(len(e.values) <= PAGE for e in events if isinstance(e, Rows))
    final = events[snapshot_done + 1]
    assert isinstance(final, Checkpoint) and final.state.phase is Phase.DELTAS
    done = events[snapshot_done]
    assert isinstance(done, SnapshotComplete) and final.state.delta_cursor == done.snapshot_ts
    assert final.state.tables_seen == frozenset(COUNTS)
    assert dict(final.state.rows_synced) == COUNTS
    # The change feed after the snapshot runs once (quiet: one empty page and its checkpoint).
    assert isinstance(events[-1], Checkpoint) and events[-1].state.phase is Phase.DELTAS

    mutate(dep, ids, random.Random(1), rounds=3)
    state = replica.checkpoints[-1][0]
    more = Replica(tables=replica.tables).apply(run_sync(source.reader, selection, state))
    assert more.contents() == truth(dep)
    # Deltas: a checkpoint after every page; no truncates for tables already seen.
    assert not any(isinstance(e, TableStarted) and e.truncate for e in more.events)
    assert any(isinstance(e, Deletes) for e in more.events)
    assert all(isinstance(e, Checkpoint) for e in more.events[-1:])
    pages = [e for e in more.events if isinstance(e, Checkpoint)]
    assert len(pages) >= 2


def test_resume_from_every_checkpoint_through_both_state_formats(open_source: SourceFactory) -> None:
    source = open_source()
    dep = source.deployment
    ids = seed(dep, COUNTS)
    selection = SyncSelection.everything()
    first = Replica().apply(run_sync(source.reader, selection, SyncState.fresh()))
    mutate(dep, ids, random.Random(2), rounds=2)
    second = Replica(tables=copy.deepcopy(first.tables)).apply(
        run_sync(source.reader, selection, first.checkpoints[-1][0])
    )
    expected = truth(dep)
    assert second.contents() == expected
    checkpoints = first.checkpoints + second.checkpoints
    assert len(checkpoints) > 12
    for state, tables_then in checkpoints:
        # Fivetran: the state goes through its JSON; a checkpoint's own replica is where the resume begins.
        text = fivetran_state.serialize(state)
        restored = fivetran_state.parse(text)
        assert restored is not None and fivetran_state.serialize(restored) == text
        assert (restored.phase, restored.tables_seen) == (state.phase, state.tables_seen)
        resumed = Replica(tables=copy.deepcopy(tables_then)).apply(
            run_sync(source.reader, selection, restored), keep_checkpoints=False
        )
        assert resumed.contents() == expected, state
    # Airbyte: one stream per table, its state through the per-stream format, resumed at every checkpoint.
    stream = SyncSelection.of_tables([ENTRIES])
    base = Replica().apply(run_sync(source.reader, stream, airbyte_state.parse({})))
    assert base.contents() == truth(dep, stream)
    assert all(s.tables_seen is None for s, _ in base.checkpoints)
    for state, tables_then in base.checkpoints:
        restored = airbyte_state.parse(airbyte_state.serialize(state), "entries")
        resumed = Replica(tables=copy.deepcopy(tables_then)).apply(
            run_sync(source.reader, stream, restored), keep_checkpoints=False
        )
        assert resumed.contents() == truth(dep, stream)


def test_fivetran_update_calls_and_partial_selection(open_source: SourceFactory) -> None:
    source = open_source()
    dep = source.deployment
    ids = seed(dep, COUNTS)
    # Only the component tables, without one column (fivetran-source.md §8 item 7).
    selection = SyncSelection.of_tables([ENTRIES, JOBS], {ENTRIES: ["big"]})
    initial = Replica().apply(
        run_sync(source.reader, selection, SyncState.fresh(), SyncMode.STOP_AFTER_SNAPSHOT)
    )
    assert isinstance(initial.events[-1], Checkpoint) and initial.events[-1].state.phase is Phase.DELTAS
    assert not any(isinstance(e, Checkpoint) and e.state.phase is Phase.DELTAS for e in initial.events[:-1])
    assert initial.contents() == truth(dep, selection)
    assert all("big" not in d for d in initial.tables[ENTRIES].values())
    assert all("big" in d for d in initial.tables[JOBS].values())
    mutate(dep, ids, random.Random(3))
    state = fivetran_state.parse(fivetran_state.serialize(initial.events[-1].state))
    assert state is not None
    update = Replica(tables=initial.tables).apply(
        run_sync(source.reader, selection, state, SyncMode.STOP_AFTER_SNAPSHOT)
    )
    assert update.contents() == truth(dep, selection)
    assert {e.table for e in update.events if isinstance(e, Rows | Deletes)} <= {ENTRIES, JOBS}
    # A quiet Update still checkpoints once and advances the cursor.
    last = update.events[-1]
    assert isinstance(last, Checkpoint)
    quiet = list(run_sync(source.reader, selection, last.state, SyncMode.STOP_AFTER_SNAPSHOT))
    assert len(quiet) == 1 and isinstance(quiet[0], Checkpoint)
    assert quiet[0].state.delta_cursor is not None and last.state.delta_cursor is not None
    assert quiet[0].state.delta_cursor >= last.state.delta_cursor


def test_legacy_state_never_truncates_and_new_tables_truncate(open_source: SourceFactory) -> None:
    source = open_source()
    dep = source.deployment
    seed(dep, {USERS: 3})
    snap = list(
        run_sync(source.reader, SyncSelection.everything(), SyncState.fresh(), SyncMode.STOP_AFTER_SNAPSHOT)
    )
    final = snap[-1]
    assert isinstance(final, Checkpoint)
    seed(dep, {POSTS: 2})
    tracked = list(run_sync(source.reader, SyncSelection.everything(), final.state))
    assert [e for e in tracked if isinstance(e, TableStarted)] == [TableStarted(POSTS, True)]
    legacy_state = SyncState.deltas_from(final.state.delta_cursor or 0, tables_seen=None)
    legacy = list(run_sync(source.reader, SyncSelection.everything(), legacy_state))
    assert [e for e in legacy if isinstance(e, TableStarted)] == [TableStarted(POSTS, False)]
    assert all(
        isinstance(e, Checkpoint) and e.state.tables_seen is None for e in legacy if isinstance(e, Checkpoint)
    )


def test_snapshot_only_is_resumable_and_restarts_after_it_finished(open_source: SourceFactory) -> None:
    source = open_source()
    dep = source.deployment
    seed(dep, {USERS: 25})
    first = Replica().apply(
        run_sync(
            source.reader,
            SyncSelection.everything(),
            SyncState.fresh(track_tables=False),
            SyncMode.SNAPSHOT_ONLY,
        )
    )
    assert first.contents() == truth(dep)
    assert isinstance(first.events[-1], Checkpoint) and first.events[-1].state.phase is Phase.DELTAS
    # A new full refresh from the finished state reads everything again (no change feed).
    again = Replica().apply(
        run_sync(source.reader, SyncSelection.everything(), first.events[-1].state, SyncMode.SNAPSHOT_ONLY)
    )
    assert again.contents() == truth(dep)
    assert sum(len(e.values) for e in again.events if isinstance(e, Rows)) == 25


def test_expired_cursors_are_one_event_and_a_restart_recovers(
    open_source: SourceFactory, fake_clock: FakeClock
) -> None:
    source = open_source(
        DeploymentConfig(
            background=False,
            snapshot_page_limit=PAGE,
            deltas_page_limit=PAGE,
            clock_ns=fake_clock,
            retention_ns=RETENTION,
            snapshot_max_age_ns=MAX_AGE,
        )
    )
    dep = source.deployment
    ids = seed(dep, COUNTS)
    selection = SyncSelection.everything()
    # A snapshot interrupted after its second checkpoint, resumed after the snapshot got too old.
    events = run_sync(source.reader, selection, SyncState.fresh())
    checkpoints = 0
    interrupted: SyncState | None = None
    for event in events:
        if isinstance(event, Checkpoint):
            checkpoints += 1
            if checkpoints == 2:
                interrupted = event.state
                break
    events.close()
    assert interrupted is not None and interrupted.phase is Phase.SNAPSHOT
    fake_clock.advance(MAX_AGE + SECOND)
    expired = list(run_sync(source.reader, selection, interrupted))
    assert len(expired) == 1
    assert isinstance(expired[0], CursorExpired)
    assert (expired[0].code, expired[0].phase) == (SNAPSHOT_TOO_OLD, Phase.SNAPSHOT)
    assert expired[0].message == f"Snapshot value {interrupted.snapshot_ts} is too far in the past."
    # The caller restarts from a fresh snapshot; then the change feed expires after the retention window.
    replica = Replica().apply(run_sync(source.reader, selection, interrupted.restarted()))
    assert replica.contents() == truth(dep)
    state = replica.checkpoints[-1][0]
    mutate(dep, ids, random.Random(4))
    fake_clock.advance(RETENTION + SECOND)
    expired = list(run_sync(source.reader, selection, state))
    assert len(expired) == 1 and isinstance(expired[0], CursorExpired)
    assert (expired[0].code, expired[0].phase) == (INVALID_WINDOW, Phase.DELTAS)
    assert "older than the database\u2019s retention window" in expired[0].message
    recovered = Replica().apply(run_sync(source.reader, selection, state.restarted()))
    assert recovered.contents() == truth(dep)


def test_random_interleaving_of_writes_syncs_and_crashes(open_source: SourceFactory) -> None:
    """Writes, partial syncs cut off at random events (a crash) and resumes from the last checkpoint seen."""
    source = open_source()
    dep = source.deployment
    rnd = random.Random(1234)
    ids = seed(dep, {USERS: 12, ENTRIES: 7})
    selection = SyncSelection.everything()
    replica = Replica()
    committed: tuple[SyncState, dict[TableRef, dict[str, Any]]] = (SyncState.fresh(), {})
    for _ in range(8):
        if rnd.random() < 0.7:
            mutate(dep, ids, rnd)
        state, tables_then = committed
        replica = Replica(tables=copy.deepcopy(tables_then))
        stop_after = rnd.randrange(1, 40)
        events = run_sync(source.reader, selection, state)
        for i, event in enumerate(events):
            replica.apply([event])
            if isinstance(event, Checkpoint):
                committed = replica.checkpoints[-1]
            if i >= stop_after:
                break
        events.close()
    state, tables_then = committed
    final = Replica(tables=copy.deepcopy(tables_then)).apply(run_sync(source.reader, selection, state))
    assert final.contents() == truth(dep)


def test_http_and_local_readers_give_identical_events(server_factory: ServerFactory) -> None:
    """The export's guarantee: over HTTP and over ``--data-dir`` the same snapshot and changes, value for
    value (Int64, Bytes, floats exact), page for page, cursor for cursor."""
    live = server_factory.start(
        DeploymentConfig(background=False, snapshot_page_limit=PAGE, deltas_page_limit=PAGE)
    )
    dep = live.deployment
    ids = seed(dep, COUNTS)
    start = dep.read_timestamp()
    mutate(dep, ids, random.Random(5), rounds=2)
    pinned = SyncState.resume_snapshot(dep.read_timestamp(), None)
    selection = SyncSelection.of_tables([USERS, ENTRIES], {USERS: ["f"]})
    with ConvexClient(ClientConfig(deployment_url=live.url, deploy_key=live.export_key)) as client:
        readers: list[ExportReader] = [HttpReader(client), LocalReader(dep)]
        snapshots = [list(run_sync(r, selection, pinned, SyncMode.SNAPSHOT_ONLY)) for r in readers]
        assert snapshots[0] == snapshots[1]
        assert sum(len(e.values) for e in snapshots[0] if isinstance(e, Rows)) > 40
        changes = [list(run_sync(r, selection, SyncState.deltas_from(start))) for r in readers]
    # Only the final cursor differs: an exhausted change log answers with "now".
    assert changes[0][:-1] == changes[1][:-1]
    assert any(isinstance(e, Deletes) for e in changes[0])
    assert all(isinstance(e, Checkpoint) for e in (changes[0][-1], changes[1][-1]))


class _SelectionIgnoringReader:
    """A deployment that ignores the selection, as servers before 2026-03-16 ignored ``tableName``."""

    def __init__(self, inner: LocalReader) -> None:
        self.inner = inner

    def snapshot_pages(self, selection: Any, snapshot: int | None, cursor: str | None) -> Any:
        return self.inner.snapshot_pages(SyncSelection.everything().wire, snapshot, cursor)

    def delta_pages(self, selection: Any, cursor: int) -> Any:
        return self.inner.delta_pages(SyncSelection.everything().wire, cursor)

    def table_columns(self) -> Any:
        return self.inner.table_columns()

    def json_schemas(self, *, delta_schema: bool) -> Any:
        return self.inner.json_schemas(delta_schema=delta_schema)


def test_client_side_filter_when_the_server_ignores_the_selection(
    deployment_factory: DeploymentFactory,
) -> None:
    dep = deployment_factory.open(
        DeploymentConfig(background=False, snapshot_page_limit=PAGE, deltas_page_limit=PAGE)
    )
    ids = seed(dep, COUNTS)
    selection = SyncSelection.of_tables([POSTS, JOBS], {POSTS: ["b", "nested"]})
    reader = _SelectionIgnoringReader(LocalReader(dep))
    replica = Replica().apply(run_sync(reader, selection, SyncState.fresh()))
    mutate(dep, ids, random.Random(6))
    replica = Replica(tables=replica.tables).apply(run_sync(reader, selection, replica.checkpoints[-1][0]))
    assert replica.contents() == truth(dep, selection)
    assert set(replica.contents()) == {POSTS, JOBS}
    assert all("b" not in d and "nested" not in d and "n" in d for d in replica.tables[POSTS].values())
    assert replica.checkpoints[-1][0].tables_seen == {POSTS, JOBS}


def test_empty_deployment_finishes_at_the_snapshot(open_source: SourceFactory) -> None:
    """fivetran-source.md §8 item 2: no tables, and a DeltaUpdates checkpoint at the snapshot returned."""
    source = open_source()
    events = list(
        run_sync(source.reader, SyncSelection.everything(), SyncState.fresh(), SyncMode.STOP_AFTER_SNAPSHOT)
    )
    assert len(events) == 2
    done, final = events
    assert isinstance(done, SnapshotComplete) and isinstance(final, Checkpoint)
    assert final.state.phase is Phase.DELTAS and final.state.delta_cursor == done.snapshot_ts
    assert final.state.tables_seen == frozenset()
    assert fivetran_state.serialize(final.state) == (
        f'{{"version":2,"checkpoint":{{"DeltaUpdates":{{"cursor":{done.snapshot_ts}}}}},"tablesSeen":[]}}'
    )
