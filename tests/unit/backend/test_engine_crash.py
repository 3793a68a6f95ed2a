"""Crash recovery: a child process commits 50-document transactions in a loop and is killed with SIGKILL
at a random moment. After reopening, every transaction the child reported is there, no transaction is
partially there, derived data (indexes, shapes, change log) agrees with the documents, and writes work."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from connectors.backend.engine import Deployment
from tests.conftest import pg_url
from tests.unit.backend._util import all_changes, assert_shape_matches, count_rows, live_docs

CHILD = Path(__file__).with_name("crash_child.py")
BATCH = 50
ROUNDS = 3


def _run_child_and_kill(kind: str, location: str, rng: random.Random) -> int:
    """Start the child, let it report a few commits, SIGKILL it; returns the last reported batch count."""
    args = [sys.executable, str(CHILD), kind, location] + ([pg_url()] if kind == "postgres" else [])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        reported: list[int] = []
        wanted = rng.randint(2, 5)
        deadline = time.monotonic() + 60
        while len(reported) < wanted:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"the child died early: {proc.stderr.read()}")
            reported.append(int(line))
            assert time.monotonic() < deadline
        time.sleep(rng.uniform(0, 0.03))  # a random moment, usually inside a transaction
        os.kill(proc.pid, signal.SIGKILL)
        # Lines the child wrote before it died are still in the pipe.
        reported.extend(int(line) for line in proc.stdout.read().split())
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert reported == list(range(reported[0], reported[0] + len(reported)))
    return reported[-1]


def _check(dep: Deployment, committed: int, probes: set[str]) -> int:
    last_commit = dep.last_commit_ts
    docs = live_docs(dep, "items")
    n = len(docs)
    assert n % BATCH == 0, f"{n} documents: a transaction is partially present"
    batches = n // BATCH
    assert batches in (committed, committed + 1), (batches, committed)
    by_batch: dict[int, dict[int, dict]] = {}
    for doc in docs.values():
        by_batch.setdefault(doc["batch"], {})[doc["i"]] = doc
    assert sorted(by_batch) == list(range(batches))
    for b, members in by_batch.items():
        assert sorted(members) == list(range(BATCH))
        assert members[0].get("patched") is True
        # Batch b+1's transaction also patched document 1 of batch b.
        assert members[1].get("touched_by") == (b + 1 if b + 1 < batches else None)
    # Derived data agrees with the documents.
    assert dep.document_count("items") == n
    assert_shape_matches(dep, "items")
    assert count_rows(dep, "index_entries") == n
    assert dep.index("items", "by_batch").ready
    # The change log holds every batch transaction whole (and the probes of earlier rounds).
    changes, _ = all_changes(dep, 0, limit=100)
    assert count_rows(dep, "revisions") == len(changes)
    per_ts = Counter(c.ts for c in changes if c.id not in probes)
    assert sorted(per_ts.values()) == sorted([BATCH] + [BATCH + 1] * (batches - 1) if batches else [])
    assert max(c.ts for c in changes) <= last_commit if changes else True
    with dep.transaction() as tx:
        for b in range(batches):
            assert len(tx.index_query("items", "by_batch", [b])) == BATCH
        assert tx.index_query("items", "by_batch", [batches]) == []
    return batches


def test_sigkill_during_commits_then_reopen(deployment_factory) -> None:
    rng = random.Random()
    location = deployment_factory.new_location()
    kind = deployment_factory.kind
    probes: set[str] = set()
    for _ in range(ROUNDS):
        committed = _run_child_and_kill(kind, location, rng)
        dep = deployment_factory.open(location=location)
        batches = _check(dep, committed, probes)
        last = dep.last_commit_ts
        assert dep.read_timestamp() >= last
        # New writes work and get later timestamps.
        with dep.transaction() as tx:
            probe = tx.insert("items", {"probe": True})
            probes.add(probe)
            assert tx.ts > last
        with dep.transaction() as tx:
            assert tx.get(probe)["probe"] is True
            tx.delete(probe)
        assert dep.document_count("items") == batches * BATCH
        dep.close()
