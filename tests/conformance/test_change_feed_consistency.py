"""Change-feed consistency: a replica built from list_snapshot + document_deltas equals the deployment.

Writer threads insert, patch, replace and delete documents in several tables of two components directly
through the engine, in transactions of 1–5 operations, while a reader — concurrently — pages a
``list_snapshot`` over HTTP (small pages, so writes land between pages) and then follows
``document_deltas`` from the returned snapshot, applying each page to an in-memory replica keyed by
``(component, table, _id)``. Once the writers have joined and a delta traversal that started afterwards
ends with ``hasMore: false``, the replica must equal a fresh listing of every table through the engine,
value for value (Int64 vs Float64, bytes, NaN payloads and -0.0 compared by type and bits).

Two readers: raw Rust-client requests (``clients.RustSource``) and our typed ``ConvexClient``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from connectors.backend.engine import Deployment, DeploymentConfig, Transaction
from connectors.client import ClientConfig, ConvexClient
from tests.conformance.clients import RustSource, decode_encoded, ok_json, typed
from tests.integration.conftest import LiveServer, ServerFactory

Key = tuple[str, str, str]  # (component, table, _id)
Replica = dict[Key, Any]  # key -> typed document
TABLES: tuple[tuple[str, str], ...] = (
    ("", "alpha"),
    ("", "beta"),
    ("", "gamma"),
    ("child", "alpha"),
    ("child", "delta"),
)
EVERYTHING = {"_other": "included"}
META = ("_component", "_table", "_ts", "_deleted")
CONFIG = DeploymentConfig(background=False, snapshot_page_limit=7, deltas_page_limit=5)
SETTINGS = settings(
    max_examples=8,
    deadline=None,
    # Thread interleavings are not reproducible, so shrinking would chase noise.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- operations -----------------------------------------------------------------------------------------

field_names = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),  # NaN (any payload), ±inf, -0.0 included
    st.sampled_from([float("nan"), -0.0, float("inf"), float("-inf"), 0.0]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
    st.binary(max_size=6),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(field_names, inner, max_size=3),
    max_leaves=5,
)
documents = st.dictionaries(field_names, values, max_size=4)


KINDS: tuple[Literal["insert", "patch", "replace", "delete"], ...] = (
    "insert",
    "insert",
    "patch",
    "replace",
    "delete",
)


@dataclass(frozen=True)
class Op:
    kind: Literal["insert", "patch", "replace", "delete"]
    table: int  # index into TABLES (inserts)
    target: int  # picks one of the writer's live documents (other kinds)
    doc: dict[str, Any]
    commit: bool  # end the transaction after this operation


@st.composite
def workloads(draw: st.DrawFn) -> list[Op]:
    """A few hundred operations. The rich values come from a small pool of generated documents and the
    operations are plain integers, which keeps the example well inside Hypothesis's data budget."""
    pool = draw(st.lists(documents, min_size=4, max_size=12))
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(KINDS) - 1),
                st.integers(0, len(TABLES) - 1),
                st.integers(0, 255),
                st.integers(0, len(pool) - 1),
                st.integers(0, 3),
            ),
            min_size=150,
            max_size=300,
        )
    )
    return [Op(KINDS[k], table, target, pool[d], commit == 0) for k, table, target, d, commit in steps]


@dataclass
class Writer:
    """Applies its operations in transactions; touches only documents it created itself."""

    dep: Deployment
    ops: list[Op]
    start: threading.Event | None = None  # wait for it before the first transaction
    pause_s: float = 0.0  # between transactions, so the reader's requests interleave with them
    live: list[Key] = field(default_factory=list)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.start is not None:
                assert self.start.wait(30), "the reader never started"
            group: list[Op] = []
            for op in self.ops:
                group.append(op)
                if op.commit or len(group) == 5:
                    self._commit(group)
                    group = []
            if group:
                self._commit(group)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _commit(self, group: list[Op]) -> None:
        with self.dep.transaction() as tx:
            created: set[Key] = set()
            for op in group:
                self._apply(tx, op, created)
        time.sleep(self.pause_s)

    def _apply(self, tx: Transaction, op: Op, created: set[Key]) -> None:
        if op.kind == "insert" or not self.live:
            component, table = TABLES[op.table]
            tx.create_table(table, component, exist_ok=True)
            key = (component, table, tx.insert(table, op.doc, component))
            self.live.append(key)
            created.add(key)
            return
        component, table, doc_id = key = self.live[op.target % len(self.live)]
        if op.kind == "patch":
            tx.patch(doc_id, op.doc, component)
        elif op.kind == "replace":
            tx.replace(doc_id, op.doc, component)
        elif key not in created:  # an insert and a delete in one transaction would leave no trace
            tx.delete(doc_id, component)
            self.live.remove(key)


# --- readers --------------------------------------------------------------------------------------------


@dataclass
class FeedResult:
    replica: Replica
    cursor: int
    snapshot_pages: int = 0
    delta_pages: int = 0


@dataclass
class Signals:
    first_page: threading.Event = field(default_factory=threading.Event)  # the reader has a snapshot
    writers_done: threading.Event = field(default_factory=threading.Event)

    def page_read(self) -> None:
        self.first_page.set()


def document_fields(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in META}


def read_raw(live: LiveServer, signals: Signals) -> FeedResult:
    """The Rust source's requests; values decoded with the test's own convex_encoded_json decoder."""
    source = RustSource(live.url, live.export_key)
    replica: Replica = {}
    snapshot: int | None = None
    cursor: str | None = None
    result = FeedResult(replica, 0)
    while True:
        page = ok_json(source.list_snapshot(snapshot, cursor, EVERYTHING))
        result.snapshot_pages += 1
        signals.page_read()
        assert snapshot is None or page["snapshot"] == snapshot
        for value in page["values"]:
            key = (value["_component"], value["_table"], value["_id"])
            assert key not in replica, f"{key} listed twice in one snapshot"
            assert value["_ts"] <= page["snapshot"] and "_deleted" not in value
            replica[key] = typed(decode_encoded(document_fields(value)))
        if not page["hasMore"]:
            break
        snapshot, cursor = page["snapshot"], page["cursor"]
    result.cursor = page["snapshot"]
    while True:
        final = signals.writers_done.is_set()  # every write committed before this request
        page = ok_json(source.document_deltas(result.cursor, EVERYTHING))
        result.delta_pages += 1
        signals.page_read()
        for value in page["values"]:
            assert result.cursor < value["_ts"] <= page["cursor"]
            key = (value["_component"], value["_table"], value["_id"])
            if value["_deleted"]:
                assert set(value) == {*META, "_id"}
                assert replica.pop(key, None) is not None, f"delete of unknown document {key}"
            else:
                replica[key] = typed(decode_encoded(document_fields(value)))
        assert page["cursor"] >= result.cursor
        result.cursor = page["cursor"]
        if final and not page["hasMore"]:
            return result
        if not page["hasMore"]:
            time.sleep(0.002)


def read_typed(live: LiveServer, signals: Signals) -> FeedResult:
    """Our ``ConvexClient``: ``iter_snapshot_pages`` then ``iter_delta_pages`` until caught up."""
    config = ClientConfig(deployment_url=live.url, deploy_key=live.export_key, max_retries=0)
    replica: Replica = {}
    result = FeedResult(replica, 0)
    with ConvexClient(config) as client:
        snapshot = 0
        for snap_page in client.iter_snapshot_pages():
            result.snapshot_pages += 1
            signals.page_read()
            snapshot = snap_page.snapshot
            for v in snap_page.values:
                key = (v.component, v.table, v.document["_id"])
                assert key not in replica and not v.deleted and v.ts <= snapshot
                replica[key] = typed(v.document)
        result.cursor = snapshot
        while True:
            final = signals.writers_done.is_set()
            for delta_page in client.iter_delta_pages(result.cursor):
                result.delta_pages += 1
                signals.page_read()
                for v in delta_page.values:
                    assert v.ts > result.cursor
                    key = (v.component, v.table, v.document["_id"])
                    if v.deleted:
                        assert set(v.document) == {"_id"}
                        assert replica.pop(key, None) is not None, f"delete of unknown document {key}"
                    else:
                        replica[key] = typed(v.document)
                result.cursor = delta_page.cursor
            if final:
                return result
            time.sleep(0.002)


Reader = Callable[[LiveServer, Signals], FeedResult]


# --- the property ---------------------------------------------------------------------------------------


def engine_state(dep: Deployment) -> Replica:
    """Every live document of every user table, listed in-process."""
    state: Replica = {}
    for table in dep.tables():
        if table.name.startswith("_"):
            continue
        for doc in dep.iter_snapshot(table):
            state[(table.component, table.name, doc.id)] = typed(doc.value())
    return state


def run_example(server_factory: ServerFactory, reader: Reader, workload: list[Op]) -> None:
    live = server_factory.start(CONFIG)
    try:
        dep = live.deployment
        seed_count = len(workload) // 5  # some data exists before the snapshot starts
        Writer(dep, workload[:seed_count]).run()
        rest = workload[seed_count:]
        signals = Signals()
        writers = [Writer(dep, rest[i::2], signals.first_page, pause_s=0.001) for i in range(2)]
        threads = [threading.Thread(target=w.run, name=f"writer-{i}") for i, w in enumerate(writers)]
        outcome: dict[str, Any] = {}

        def read() -> None:
            try:
                outcome["result"] = reader(live, signals)
            except BaseException as exc:
                outcome["error"] = exc

        reader_thread = threading.Thread(target=read, name="reader")
        reader_thread.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        signals.writers_done.set()
        reader_thread.join(60)
        assert not reader_thread.is_alive(), "the reader did not catch up"
        for w in writers:
            assert w.error is None, w.error
        if "error" in outcome:
            raise outcome["error"]
        result: FeedResult = outcome["result"]
        expected = engine_state(dep)
        assert result.cursor >= dep.last_commit_ts
        missing = expected.keys() - result.replica.keys()
        extra = result.replica.keys() - expected.keys()
        assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
        wrong = [k for k in expected if expected[k] != result.replica[k]]
        assert not wrong, [(k, expected[k], result.replica[k]) for k in wrong[:3]]
        assert result.snapshot_pages > 1
    finally:
        server_factory.stop(live)


@pytest.mark.parametrize("reader", [read_raw, read_typed], ids=["raw-rust-requests", "typed-client"])
def test_replica_from_snapshot_and_deltas_equals_deployment(
    server_factory: ServerFactory, reader: Reader
) -> None:
    @SETTINGS
    @given(workload=workloads())
    def check(workload: list[Op]) -> None:
        run_example(server_factory, reader, workload)

    check()
