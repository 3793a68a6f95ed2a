"""Sync engine benchmark: the whole snapshot of a deployment over HTTP through ``run_sync`` (events of whole
pages, the client-side filter, checkpoints) next to the client's raw ``iter_snapshot_pages`` on the same
rows, each in its own process.

    python -m benchmarks.bench_sync <case> --work DIR --docs N

Both cases read the deployment in ``DIR/engine`` (the one the engine benchmarks build); when it is missing
the first case builds it with the engine-insert benchmark's data (not timed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_http import Server, _client, client_page_baseline
from benchmarks.common import Result, emit, peak_rss_mb
from connectors.sync import Checkpoint, HttpReader, Rows, SyncMode, SyncSelection, SyncState, run_sync


def _ensure_data(work: Path, docs: int) -> None:
    """Build ``DIR/engine`` in a child process (so its memory is not this case's peak RSS)."""
    if (work / "engine").exists():
        return
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_engine", "insert", "--work", str(work), "--docs", str(docs)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def sync_raw_pages(work: Path, docs: int) -> Result:
    """Baseline: the client's pipelined page iteration, counting rows."""
    _ensure_data(work, docs)
    return client_page_baseline(work, "sync baseline: client iter_snapshot_pages over HTTP (sqlite)")


def sync_engine_http(work: Path, docs: int) -> Result:
    """The sync engine's snapshot (full refresh) over HTTP: every event consumed, rows counted."""
    _ensure_data(work, docs)
    server = Server(work, "engine")
    try:
        with _client(server) as client:
            reader = HttpReader(client)
            start = time.perf_counter()
            count = 0
            checkpoints = 0
            for event in run_sync(
                reader, SyncSelection.everything(), SyncState.fresh(), SyncMode.SNAPSHOT_ONLY
            ):
                if type(event) is Rows:
                    count += len(event.values)
                elif type(event) is Checkpoint:
                    checkpoints += 1
            elapsed = time.perf_counter() - start
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    return Result(
        "sync engine snapshot over HTTP, events of whole pages (sqlite)",
        count,
        elapsed,
        peak_rss_mb(),
        note=f"server peak RSS {rss:.0f} MB; {checkpoints} checkpoints",
    )


def alternate(work: Path, docs: int, rounds: int) -> None:
    """Both cases in turn, ``rounds`` times, printing each round's ratio: on a machine shared with other
    jobs, neighbouring runs see the same load, so their ratio is fairer than two runs minutes apart."""
    for i in range(rounds):
        raw = sync_raw_pages(work, docs)
        engine = sync_engine_http(work, docs)
        print(
            f"round {i + 1}: client pages {raw.rows_per_s:,.0f} rows/s, sync engine {engine.rows_per_s:,.0f}"
            f" rows/s, ratio {engine.rows_per_s / raw.rows_per_s:.2f}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "case", help="sync_raw_pages, sync_engine_http, or alternate (both in turn, --rounds times)"
    )
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if a.case == "alternate":
        alternate(a.work, a.docs, a.rounds)
        return
    cases = {
        "sync_raw_pages": lambda: sync_raw_pages(a.work, a.docs),
        "sync_engine_http": lambda: sync_engine_http(a.work, a.docs),
    }
    if a.case not in cases:
        raise SystemExit(f"unknown case {a.case}")
    emit(cases[a.case]())


if __name__ == "__main__":
    main()
