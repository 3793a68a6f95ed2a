"""Storage engine: snapshot age limits, change-log retention errors (exact messages), and pruning of old
revisions, tombstones and deleted tables while reads inside the retention window stay correct."""

from __future__ import annotations

import time

import orjson
import pytest

from connectors.backend import export
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.errors import BadRequestError, InternalError
from connectors.selection import Selection
from connectors.values import ValueFormat
from tests.unit.backend._util import all_changes, count_rows, live_docs, snapshot_pages

SECOND = 1_000_000_000
RETENTION = 3600 * SECOND
MAX_AGE = 600 * SECOND

EVERYTHING = Selection.everything()


def retention_message(ts: int) -> str:
    return (
        f"Trying to synchronize from timestamp {ts}, which is older than the database\u2019s retention window. "
        "This may happen if you paused your Fivetran or Airbyte connector for a long period of time. "
        "Please perform a full sync of the connector. "
        "See https://fivetran.com/docs/connectors/troubleshooting/trigger-historical-re-syncs "
        "or https://docs.airbyte.com/platform/operator-guides/refreshes"
    )


def _list(dep: Deployment, snapshot: int | None) -> export.SnapshotPageResult:
    return export.list_snapshot(
        dep, snapshot=snapshot, cursor=None, fmt=ValueFormat.JSON, selection=EVERYTHING
    )


def _deltas(dep: Deployment, cursor: int | None) -> export.DeltasPageResult:
    return export.document_deltas(dep, cursor=cursor, fmt=ValueFormat.JSON, selection=EVERYTHING)


def test_snapshot_too_old_and_too_new(deployment_factory, fake_clock) -> None:
    dep = deployment_factory.open(
        DeploymentConfig(
            background=False, clock_ns=fake_clock, retention_ns=RETENTION, snapshot_max_age_ns=MAX_AGE
        )
    )
    with dep.transaction() as tx:
        tx.create_table("t")
        tx.insert("t", {"a": 1})
    s0 = dep.read_timestamp()
    assert _list(dep, s0).count == 1
    fake_clock.advance(MAX_AGE // 2)
    assert _list(dep, s0).snapshot == s0  # still young enough
    fake_clock.advance(MAX_AGE // 2 + 1)
    with pytest.raises(BadRequestError) as err:
        _list(dep, s0)
    assert (err.value.code, err.value.message, err.value.status) == (
        "SnapshotTooOld",
        f"Snapshot value {s0} is too far in the past.",
        400,
    )
    future = dep.read_timestamp() + SECOND
    with pytest.raises(BadRequestError) as err:
        _list(dep, future)
    assert (err.value.code, err.value.message, err.value.status) == (
        "SnapshotTooNew",
        f"Snapshot value {future} is in the future.",
        400,
    )
    with pytest.raises(InternalError):
        _list(dep, -1)
    # Without a snapshot the server picks "now".
    page = _list(dep, None)
    assert page.count == 1 and page.snapshot >= s0 + MAX_AGE


def test_boundaries_with_a_still_clock(deployment_factory) -> None:
    now = {"t": 1_800_000_000 * SECOND}
    dep = deployment_factory.open(
        DeploymentConfig(
            background=False, clock_ns=lambda: now["t"], retention_ns=RETENTION, snapshot_max_age_ns=MAX_AGE
        )
    )
    with dep.transaction() as tx:
        tx.create_table("t")
    now["t"] += RETENTION + MAX_AGE
    read_ts = dep.read_timestamp()
    assert read_ts == now["t"]
    assert _list(dep, read_ts).snapshot == read_ts  # the read timestamp itself is not "in the future"
    with pytest.raises(BadRequestError, match="in the future"):
        _list(dep, read_ts + 1)
    assert _list(dep, now["t"] - MAX_AGE).count == 0  # exactly the max age is still allowed
    with pytest.raises(BadRequestError, match="too far in the past"):
        _list(dep, now["t"] - MAX_AGE - 1)
    assert _deltas(dep, now["t"] - RETENTION).cursor == read_ts  # exactly at retention: allowed
    with pytest.raises(BadRequestError) as err:
        _deltas(dep, now["t"] - RETENTION - 1)
    assert err.value.message == retention_message(now["t"] - RETENTION)


def test_document_deltas_outside_retention(deployment_factory, fake_clock) -> None:
    dep = deployment_factory.open(
        DeploymentConfig(
            background=False, clock_ns=fake_clock, retention_ns=RETENTION, snapshot_max_age_ns=MAX_AGE
        )
    )
    with dep.transaction() as tx:
        tx.create_table("t")
    cursor = dep.read_timestamp()
    with dep.transaction() as tx:
        tx.insert("t", {})
    assert _deltas(dep, cursor).count == 1
    fake_clock.advance(RETENTION + 1)
    with pytest.raises(BadRequestError) as err:
        _deltas(dep, cursor)
    assert err.value.code == "InvalidWindowToReadDocuments" and err.value.status == 400
    assert err.value.message == retention_message(cursor + 1)
    assert "database\u2019s" in err.value.message and f"timestamp {cursor + 1}," in err.value.message
    assert orjson.loads(orjson.dumps(err.value.to_body()))["message"] == retention_message(cursor + 1)
    with pytest.raises(BadRequestError) as err:
        _deltas(dep, None)
    assert (err.value.code, err.value.message) == (
        "DocumentDeltasCursorRequired",
        "/api/document_deltas requires a cursor",
    )
    with pytest.raises(InternalError):
        _deltas(dep, -5)
    # A recent cursor still works.
    assert _deltas(dep, dep.read_timestamp()).count == 0


def test_prune_keeps_the_window_readable(deployment_factory, fake_clock) -> None:
    dep = deployment_factory.open(
        DeploymentConfig(
            background=False,
            clock_ns=fake_clock,
            retention_ns=RETENTION,
            snapshot_max_age_ns=MAX_AGE,
            prune_batch=2,  # several rounds
        )
    )
    with dep.transaction() as tx:
        tx.create_table("t")
        tx.create_table("gone_early")
        tx.create_table("gone_late")
        a, b, c = (tx.insert("t", {"v": name}) for name in "abc")
        for i in range(3):
            tx.insert("gone_early", {"i": i})
        for i in range(2):
            tx.insert("gone_late", {"i": i})
    with dep.transaction() as tx:
        tx.patch(a, {"v": "a2"})
        tx.delete(b)
        tx.delete_table("gone_early")
    assert count_rows(dep, "revisions") == 10
    assert dep.prune() == 0  # nothing is old enough yet
    assert count_rows(dep, "revisions") == 10

    fake_clock.advance(RETENTION + MAX_AGE)
    s_mid = dep.read_timestamp()
    with dep.transaction() as tx:
        tx.patch(c, {"v": "c2"})
        tx.delete(a)
        d = tx.insert("t", {"v": "d"})
        tx.delete_table("gone_late")
    s_now = dep.read_timestamp()
    assert count_rows(dep, "revisions") == 13
    tablet_early = next(t.tablet for t in dep.tables(include_deleted=True) if t.name == "gone_early")
    tablet_late = next(t.tablet for t in dep.tables(include_deleted=True) if t.name == "gone_late")

    # Superseded a1 and b1, b's tombstone, and the three rows of the early-deleted table go.
    assert dep.prune() == 6
    assert count_rows(dep, "revisions") == 7
    assert count_rows(dep, "revisions", "tablet = ?", (tablet_early,)) == 0
    assert count_rows(dep, "revisions", "tablet = ?", (tablet_late,)) == 2
    assert count_rows(dep, "revisions", "deleted = 1") == 1  # a's recent tombstone stays
    assert dep.prune() == 0

    # Reads inside the window are unaffected.
    assert {doc["v"] for doc in live_docs(dep, "t", s_mid).values()} == {"a2", "c"}
    assert {doc["v"] for doc in live_docs(dep, "t", s_now).values()} == {"c2", "d"}
    assert dep.get_at(a, s_mid).value()["v"] == "a2" and dep.get_at(a, s_now) is None
    assert dep.get_at(b, s_mid) is None
    vals, _ = snapshot_pages(dep, snapshot=s_mid, limit=1)
    assert sorted(v["v"] for v in vals if v["_table"] == "t") == ["a2", "c"]
    # gone_late still existed at s_mid, so its documents are listed there.
    assert sorted(v["i"] for v in vals if v["_table"] == "gone_late") == ["0", "1"]
    changes, _ = all_changes(dep, s_mid)
    assert sorted((c_.id, c_.deleted) for c_ in changes) == sorted([(a, True), (c, False), (d, False)])
    body = orjson.loads(_deltas(dep, s_mid).to_json())
    assert {v["_id"]: v["_deleted"] for v in body["values"]} == {a: True, c: False, d: False}

    # Later everything but the current revisions goes, including the late-deleted table.
    fake_clock.advance(RETENTION + MAX_AGE)
    assert dep.prune() == 5
    assert count_rows(dep, "revisions") == 2
    assert {doc["v"] for doc in live_docs(dep, "t").values()} == {"c2", "d"}
    assert dep.document_count("t") == 2
    with pytest.raises(BadRequestError, match="retention window"):
        _deltas(dep, s_now)


def test_background_pruner(deployment_factory, fake_clock) -> None:
    dep = deployment_factory.open(
        DeploymentConfig(
            background=True,
            clock_ns=fake_clock,
            retention_ns=RETENTION,
            snapshot_max_age_ns=MAX_AGE,
            prune_interval_s=0.05,
        )
    )
    with dep.transaction() as tx:
        tx.create_table("t")
        doc = tx.insert("t", {"n": 0})
    for n in range(1, 6):
        with dep.transaction() as tx:
            tx.patch(doc, {"n": n})
    assert count_rows(dep, "revisions") == 6
    fake_clock.advance(RETENTION + MAX_AGE + 1)
    deadline = time.monotonic() + 10
    while count_rows(dep, "revisions") > 1:
        assert time.monotonic() < deadline, "the background pruner did not run"
        time.sleep(0.02)
    assert live_docs(dep, "t")[doc]["n"] == 5
