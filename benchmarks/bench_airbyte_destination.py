"""Airbyte destination benchmark: ``destination-convex write`` (the installed console script, its own process)
appending the standard documents to our server on loopback, against the shared client importing the same
records directly, measured in the same run.

    python -m benchmarks.bench_airbyte_destination <case> --work DIR --docs N

``abdst_client_append`` (baseline): ``ConvexClient.import_airbyte_records`` of the records, already in memory,
in batches of 10,000 (the destination's batch size); only the calls are timed.
``abdst_append``: the Airbyte messages (RECORDs, a STATE every 10,000 records) are written to a JSONL file
first (not timed); then ``destination-convex write`` runs with the file on stdin and its stdout drained, timed
from start to exit. The row's peak RSS is the destination process's (``wait4``); the server's is in the note.
Each case writes a fresh deployment served by its own process (``bench_http.Server``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

from benchmarks.bench_http import Server, _client, timed_airbyte_imports
from benchmarks.common import Result, emit, peak_rss_mb, standard_documents
from connectors.client import AirbyteMessage, AirbyteStream

BATCH = 10_000
DOCS_MAX = 1_000_000
STREAM = "events"


def client_append(work: Path, n: int) -> Result:
    n = min(n, DOCS_MAX)
    server = Server(work, "abdst_client")
    try:
        with _client(server) as client:
            streams = {STREAM: AirbyteStream(primary_key=None, json_schema={"type": "object"})}
            messages = (AirbyteMessage(STREAM, d) for d in standard_documents(n, seed=11))
            elapsed, count = timed_airbyte_imports(client, streams, messages, BATCH)
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    return Result(
        f"shared client import_airbyte_records, append, batches of {BATCH:,} (baseline) (sqlite)",
        count,
        elapsed,
        peak_rss_mb(),
        note=f"server peak RSS {rss:.0f} MB",
    )


def destination_append(work: Path, n: int) -> Result:
    n = min(n, DOCS_MAX)
    work.mkdir(parents=True, exist_ok=True)
    messages = work / "abdst_messages.jsonl"
    with open(messages, "wb") as f:
        for i, doc in enumerate(standard_documents(n, seed=11), 1):
            f.write(orjson.dumps({"type": "RECORD", "record": {"stream": STREAM, "data": doc, "emitted_at": 0}}))
            f.write(b"\n")
            if i % BATCH == 0:
                f.write(orjson.dumps({"type": "STATE", "state": {"type": "LEGACY", "data": {"n": i}}}) + b"\n")
    catalog = {
        "streams": [
            {
                "stream": {"name": STREAM, "json_schema": {"type": "object"}, "supported_sync_modes": ["incremental"]},
                "sync_mode": "incremental",
                "destination_sync_mode": "append",
            }
        ]
    }
    (work / "abdst_catalog.json").write_text(json.dumps(catalog))
    server = Server(work, "abdst_destination")
    try:
        (work / "abdst_config.json").write_text(json.dumps({"deployment_url": server.url, "access_key": server.key}))
        script = Path(sys.executable).parent / "destination-convex"
        cmd = [str(script), "write", "--config", str(work / "abdst_config.json"), "--catalog", str(work / "abdst_catalog.json")]
        states = 0
        with open(messages, "rb") as stdin:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            for line in proc.stdout:  # drained as Airbyte reads it
                if line.startswith(b'{"type":"STATE"'):
                    states += 1
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 or states != n // BATCH:
            raise SystemExit(f"destination-convex failed: exit {proc.returncode}, {states} states echoed")
        with _client(server) as client:
            client.version()
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    return Result(
        f"destination-convex write, append, console script, STATE every {BATCH:,} (sqlite)",
        n,
        elapsed,
        usage.ru_maxrss / 1024,
        note=f"destination process peak RSS; server peak RSS {rss:.0f} MB",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="Airbyte destination benchmark; see the module docstring.")
    ap.add_argument("case")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=1_000_000)
    a = ap.parse_args()
    cases = {
        "abdst_client_append": lambda: client_append(a.work, a.docs),
        "abdst_append": lambda: destination_append(a.work, a.docs),
    }
    if a.case not in cases:
        raise SystemExit(f"unknown case {a.case}")
    emit(cases[a.case]())


if __name__ == "__main__":
    main()
