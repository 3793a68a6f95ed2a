"""HTTP benchmarks: our typed client against our server over loopback, each in its own process.

    python -m benchmarks.bench_http <case> --work DIR --docs N

``http_list_snapshot`` and ``http_document_deltas`` read the deployment the engine benchmarks built in
``DIR/engine``; the import cases write a fresh deployment. The server's peak RSS (VmHWM) is reported in the
note; the row's peak RSS column is the client's.

The import cases have in-process baselines measured in the same run (``benchmarks.run`` divides by them):
``http_engine_insert`` is ``tx.insert`` of exactly the rows the server stores for the Airbyte cases (every
number a Float64), 1000 a transaction like the 1000-record requests; ``http_engine_insert_fivetran`` the
same for the Fivetran rows (with their ``fivetran`` object), 500 a transaction like the 500-row requests.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import Result, emit, peak_rss_mb, standard_documents
from connectors.client import AirbyteMessage, AirbyteStream, ClientConfig, ConvexClient, FivetranOperation
from connectors.selection import Selection

BATCH = 1000
FIVETRAN_BATCH = 500  # rows per apply_fivetran_operations call, as Convex's destination sends them
IMPORT_DOCS_MAX = 200_000
SYNCED_MS = 1_704_773_419_156.0


def serve(work: Path, name: str) -> None:
    """Child process: serve the deployment in ``work/name`` and print URL and an admin key."""
    from connectors import keys
    from connectors.backend.engine import Deployment, DeploymentConfig
    from connectors.server.app import run

    dep = Deployment.open(data_dir=work / name, config=DeploymentConfig(background=True))
    key = keys.issue_key(keys.instance_secret(dep), keys.KeyKind.ADMIN)

    def ready(url: str) -> None:
        print(f"READY {url} {key}", flush=True)

    run(dep, host="127.0.0.1", port=0, on_ready=ready, log_level="warning")


class Server:
    def __init__(self, work: Path, name: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_http", "serve", "--work", str(work), "--name", name],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            raise SystemExit(f"server did not start: {line!r}")
        _, self.url, self.key = line.split()

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _client(server: Server) -> ConvexClient:
    return ConvexClient(ClientConfig(deployment_url=server.url, deploy_key=server.key, timeout_s=300))


def http_list_snapshot(work: Path) -> Result:
    return client_page_baseline(
        work, "HTTP list_snapshot, convex_encoded_json, 1024/page, decoded by the client (sqlite)"
    )


def timed_airbyte_imports(
    client: ConvexClient,
    streams: dict[str, AirbyteStream],
    messages: Iterator[AirbyteMessage],
    batch_size: int,
) -> tuple[float, int]:
    """Posts the messages to ``import_airbyte_records`` in batches; the seconds spent in the calls (building
    the batches is not timed) and the number of records."""
    elapsed, count = 0.0, 0
    while batch := list(itertools.islice(messages, batch_size)):
        t0 = time.perf_counter()
        client.import_airbyte_records(streams, batch)
        elapsed += time.perf_counter() - t0
        count += len(batch)
    return elapsed, count


def client_page_baseline(work: Path, name: str) -> Result:
    """The shared client's pipelined page iteration over the ``engine`` deployment, values decoded, rows
    counted: the baseline the sync, Airbyte and Fivetran source suites compare with."""
    server = Server(work, "engine")
    try:
        with _client(server) as client:
            start = time.perf_counter()
            count = 0
            for page in client.iter_snapshot_pages(selection=Selection.everything()):
                count += len(page.values)
            elapsed = time.perf_counter() - start
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    return Result(name, count, elapsed, peak_rss_mb(), note=f"server peak RSS {rss:.0f} MB")


def http_document_deltas(work: Path) -> Result:
    server = Server(work, "engine")
    try:
        with _client(server) as client:
            cursor = time.time_ns() - 86_400 * 10**9  # inside retention, before the benchmark's writes
            start = time.perf_counter()
            count = 0
            for page in client.iter_delta_pages(cursor, selection=Selection.everything()):
                count += len(page.values)
            elapsed = time.perf_counter() - start
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    return Result(
        "HTTP document_deltas, convex_encoded_json, decoded by the client (sqlite)",
        count,
        elapsed,
        peak_rss_mb(),
        note=f"server peak RSS {rss:.0f} MB",
    )


def _airbyte_messages(n: int, table: str):
    for doc in standard_documents(n, seed=7):
        yield AirbyteMessage(table_name=table, data=doc)


def _as_stored(doc: dict) -> dict:
    """The row as the Airbyte import stores it: every JSON number becomes a Float64."""
    return {k: float(v) if type(v) is int else v for k, v in doc.items()}


def _fivetran_row(doc: dict) -> dict:
    return {**_as_stored(doc), "fivetran": {"synced": SYNCED_MS, "deleted": False}}


def engine_insert_same_rows(work: Path, n: int, fivetran: bool) -> Result:
    """Baseline: the engine's own ``tx.insert`` of the rows the HTTP case stores, in the same batch sizes."""
    from connectors.backend.engine import Deployment, DeploymentConfig

    n = min(n, IMPORT_DOCS_MAX)
    batch = FIVETRAN_BATCH if fivetran else BATCH
    convert = _fivetran_row if fivetran else _as_stored
    name = "engine_baseline_fivetran" if fivetran else "engine_baseline"
    dep = Deployment.open(data_dir=work / name, config=DeploymentConfig(background=False))
    with dep.transaction() as tx:
        tx.create_table("events")
    docs = standard_documents(n, seed=7)
    elapsed = 0.0
    count = 0
    while True:
        rows = [convert(d) for d in itertools.islice(docs, batch)]  # not timed, like the client's encoding
        if not rows:
            break
        t0 = time.perf_counter()
        with dep.transaction() as tx:
            for row in rows:
                tx.insert("events", row)
        elapsed += time.perf_counter() - t0
        count += len(rows)
    dep.close()
    what = "Fivetran rows, 500" if fivetran else "Airbyte rows, 1000"
    return Result(
        f"engine insert of the same rows ({what}/transaction; baseline) (sqlite)",
        count,
        elapsed,
        peak_rss_mb(),
    )


def http_fivetran_upsert(work: Path, n: int) -> Result:
    """``apply_fivetran_operations`` Upserts of new rows in 500-row batches, primary-key index ready."""
    n = min(n, IMPORT_DOCS_MAX)
    server = Server(work, "import_fivetran")
    table = "events"
    try:
        with _client(server) as client:
            client.fivetran_create_table(
                {
                    "tableName": table,
                    "indexes": [
                        {
                            "indexDescriptor": "_fivetran_by_primary_key",
                            "fields": ["fivetran.deleted", "external_id"],
                        },
                        {
                            "indexDescriptor": "_fivetran_by_synced",
                            "fields": ["fivetran.deleted", "fivetran.synced"],
                        },
                    ],
                }
            )
            docs = standard_documents(n, seed=7)
            elapsed = 0.0
            count = 0
            while True:
                batch = [
                    FivetranOperation(table=table, operation="Upsert", row=_fivetran_row(d))
                    for d in itertools.islice(docs, FIVETRAN_BATCH)
                ]
                if not batch:
                    break
                t0 = time.perf_counter()
                client.apply_fivetran_operations(batch)
                elapsed += time.perf_counter() - t0
                count += len(batch)
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    return Result(
        f"HTTP apply_fivetran_operations, Upsert of new rows, batches of {FIVETRAN_BATCH} (sqlite)",
        count,
        elapsed,
        peak_rss_mb(),
        note=f"server peak RSS {rss:.0f} MB",
    )


def http_import(work: Path, n: int, dedup: bool) -> Result:
    n = min(n, IMPORT_DOCS_MAX)
    name = "import_dedup" if dedup else "import_append"
    server = Server(work, name)
    table = "events"
    try:
        with _client(server) as client:
            pk = [["external_id"]] if dedup else None
            if dedup:
                client.add_primary_key_indexes({table: pk})
                client.wait_for_primary_key_indexes([table], timeout_s=60, poll_interval_s=0.1)
            streams = {table: AirbyteStream(primary_key=pk, json_schema={})}
            elapsed, count = timed_airbyte_imports(client, streams, _airbyte_messages(n, table), BATCH)
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    mode = "dedup with a ready primary-key index" if dedup else "append"
    return Result(
        f"HTTP import_airbyte_records, {mode}, batches of {BATCH} (sqlite)",
        count,
        elapsed,
        peak_rss_mb(),
        note=f"server peak RSS {rss:.0f} MB",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="HTTP benchmarks; see the module docstring.")
    ap.add_argument("case")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--name", default="engine")
    a = ap.parse_args()
    if a.case == "serve":
        serve(a.work, a.name)
        return
    cases = {
        "http_list_snapshot": lambda: http_list_snapshot(a.work),
        "http_document_deltas": lambda: http_document_deltas(a.work),
        "http_import_append": lambda: http_import(a.work, a.docs, dedup=False),
        "http_import_dedup": lambda: http_import(a.work, a.docs, dedup=True),
        "http_engine_insert": lambda: engine_insert_same_rows(a.work, a.docs, fivetran=False),
        "http_engine_insert_fivetran": lambda: engine_insert_same_rows(a.work, a.docs, fivetran=True),
        "http_fivetran_upsert": lambda: http_fivetran_upsert(a.work, a.docs),
    }
    if a.case not in cases:
        raise SystemExit(f"unknown case {a.case}")
    emit(cases[a.case]())


if __name__ == "__main__":
    main()
