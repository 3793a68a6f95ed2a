"""Fivetran source benchmark: an initial sync over gRPC on loopback, end to end — the HTTP backend, the
connector (``fivetran-source``, its own process, so its peak RSS is its own) and a gRPC client draining the
Update stream (parsing every message, as Fivetran does) — next to the shared client reading the same pages
with no gRPC, each in its own process.

    python -m benchmarks.bench_fivetran_source <case> --work DIR --docs N

Cases: ``ftsrc_raw_pages`` (baseline: ``ConvexClient.iter_snapshot_pages``), ``ftsrc_records`` (``records``
batches), ``ftsrc_single_records`` (``--single-records``: one record per message, as Convex's connector),
``ftsrc_records_gzip`` (``records`` batches with ``--gzip-update``: what gzipping the stream costs).

The draining client is a real gRPC client (``grpc.insecure_channel``, the generated stub, gzip accepted) that
parses every ``UpdateResponse`` and counts the UPSERT records of each message; it takes about 2 µs of CPU per
row (4 with gzip), well below the connector's share.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from benchmarks.bench_http import Server, client_page_baseline
from benchmarks.bench_sync import _ensure_data
from benchmarks.common import Result, emit, peak_rss_mb
from connectors.constants import FIVETRAN_GRPC_MAX_MESSAGE_BYTES
from protos import connector_sdk_pb2, connector_sdk_pb2_grpc


def ftsrc_raw_pages(work: Path, docs: int) -> Result:
    """Baseline: the shared client's pipelined page iteration over the same pages, counting rows."""
    _ensure_data(work, docs)
    return client_page_baseline(
        work, "fivetran source baseline: client iter_snapshot_pages, no gRPC (sqlite)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _update(work: Path, docs: int, single_records: bool, gzip_update: bool = False) -> Result:
    _ensure_data(work, docs)
    server = Server(work, "engine")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    args = ["--port", str(port)] + (["--single-records"] if single_records else [])
    args += ["--gzip-update"] if gzip_update else []
    connector = subprocess.Popen(
        [sys.executable, "-c", "from fivetran_source.cli import fivetran_source_command as c; c()", *args],
        stdout=subprocess.DEVNULL,
        env=env,
    )
    options = [("grpc.max_receive_message_length", FIVETRAN_GRPC_MAX_MESSAGE_BYTES)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = connector_sdk_pb2_grpc.SourceConnectorStub(channel)
        request = connector_sdk_pb2.UpdateRequest(configuration={"url": server.url, "key": server.key})
        start = time.perf_counter()
        count = messages = checkpoints = 0
        for response in stub.Update(request):
            messages += 1
            kind = response.WhichOneof("operation")
            if kind == "records":
                count += sum(1 for r in response.records.records if r.type == 0)
            elif kind == "record":
                count += response.record.type == 0
            elif kind == "checkpoint":
                checkpoints += 1
            elif kind == "task":
                raise SystemExit(f"the connector sent a Task: {response.task.message}")
        elapsed = time.perf_counter() - start
        connector_rss = _peak_rss_of(connector.pid)
        server_rss = server.peak_rss_mb()
    finally:
        channel.close()
        connector.terminate()
        connector.wait(timeout=60)
        server.stop()
    mode = "--single-records (one record per message)" if single_records else "records batches (<= 100)"
    mode += ", --gzip-update" if gzip_update else ""
    return Result(
        f"fivetran source Update over gRPC, {mode}, backend + connector + draining client (sqlite)",
        count,
        elapsed,
        connector_rss,
        note=(
            f"peak RSS: connector {connector_rss:.0f} MB, backend {server_rss:.0f} MB, client "
            f"{peak_rss_mb():.0f} MB; {messages:,} messages, {checkpoints} checkpoints"
        ),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=1_000_000)
    a = ap.parse_args()
    cases = {
        "ftsrc_raw_pages": lambda: ftsrc_raw_pages(a.work, a.docs),
        "ftsrc_records": lambda: _update(a.work, a.docs, single_records=False),
        "ftsrc_single_records": lambda: _update(a.work, a.docs, single_records=True),
        "ftsrc_records_gzip": lambda: _update(a.work, a.docs, single_records=False, gzip_update=True),
    }
    if a.case not in cases:
        raise SystemExit(f"unknown case {a.case}")
    emit(cases[a.case]())


if __name__ == "__main__":
    main()
