"""Fivetran destination benchmark (issue #9): a replace batch (10 columns, zstd + AES) into the SQLite backend.

    python -m benchmarks.bench_fivetran_destination --rows 200000
    python -m benchmarks.run --suite fivetran-destination --docs 1000000

Cases, each in its own subprocess (its peak RSS is its own; the HTTP server is another process):

- ``fd_prepare``: writes the batch file (``bench_batch_files.prepare``: CSV -> zstd -> AES; not a measurement);
- ``fd_parse``: decrypt + decompress + CSV parse alone (``read_batch_file``), target >= 300k rows/s;
- ``fd_direct``: baseline — the same rows, built in the client as Convex documents, posted to
  ``apply_fivetran_operations`` in 500-row chunks by ``ConvexClient`` (no files, no gRPC);
- ``fd_connector``: end to end — a WriteBatch over a real gRPC channel into our destination server running in
  the case's process, which reads the file and posts to a ``convex-connectors serve`` process (SQLite); targets
  >= 30k rows/s, >= 0.7x ``fd_direct``, connector peak RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.bench_batch_files import CATEGORIES, FILE_NAME, KEY_NAME, NULL, UNMODIFIED
from benchmarks.bench_batch_files import prepare as prepare_file
from benchmarks.common import Result, emit, peak_rss_mb, run_case

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "connectors.cli"]


def _columns() -> list[tuple[str, str, bool]]:
    return [
        ("id", "LONG", True),
        ("name", "STRING", False),
        ("email", "STRING", False),
        ("amount", "DOUBLE", False),
        ("quantity", "INT", False),
        ("active", "BOOLEAN", False),
        ("category", "STRING", False),
        ("note", "STRING", False),
        ("_fivetran_deleted", "BOOLEAN", False),
        ("_fivetran_synced", "UTC_DATETIME", False),
    ]


class _Server:
    """``convex-connectors serve`` in its own process over a fresh SQLite deployment."""

    def __init__(self, work: Path, name: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = work / f"server_{name}"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        args = ["--data-dir", str(self.dir)]
        self.proc = subprocess.Popen(
            [*CLI, "serve", *args, "--port", str(self.port), "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=work,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the benchmark server did not start") from None
                time.sleep(0.2)
        self.key = subprocess.run(
            [*CLI, "keygen", *args, "--kind", "admin", "--name", "bench"],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            check=True,
        ).stdout.strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def fd_prepare(work: Path, rows: int) -> Result:
    return prepare_file(work, rows)


def fd_parse(work: Path, rows: int) -> Result:
    from fivetran_destination.batch_files import BatchFileParams, Compression, Encryption, read_batch_file

    path = str(work / FILE_NAME)
    keys = {path: (work / KEY_NAME).read_bytes()}
    params = BatchFileParams(Compression.ZSTD, Encryption.AES, NULL, UNMODIFIED)
    start = time.perf_counter()
    count = sum(len(batch.rows) for batch in read_batch_file(path, params, keys))
    elapsed = time.perf_counter() - start
    assert count == rows, (count, rows)
    return Result("decrypt + decompress + CSV parse (read_batch_file)", count, elapsed, peak_rss_mb())


def _documents(rows: int) -> Iterator[dict[str, Any]]:
    """The rows of ``bench_batch_files.prepare`` (same generator and seed) as Convex documents."""
    rnd = random.Random(42)
    for i in range(rows):
        name = f"Customer {rnd.getrandbits(24):06x}"
        amount = float(f"{rnd.random() * 10_000:.2f}")
        quantity = float(rnd.randint(0, 1000))
        active = rnd.random() < 0.5
        category = rnd.choice(CATEGORIES)
        note = None if rnd.random() < 0.3 else ('an, embedded "quote"' if rnd.random() < 0.1 else "ok")
        yield {
            "id": i,
            "name": name,
            "email": f"user{i}@example.com",
            "amount": amount,
            "quantity": quantity,
            "active": active,
            "category": category,
            "note": note,
            "fivetran": {"deleted": False, "synced": 1704773419000.0 + (i % 1_000_000_000) / 1e6},
        }


def _table(name: str) -> Any:
    from protos import common_pb2

    return common_pb2.Table(
        name=name,
        columns=[
            common_pb2.Column(name=n, type=common_pb2.DataType.Value(t), primary_key=pk)
            for n, t, pk in _columns()
        ],
    )


def fd_direct(work: Path, rows: int) -> Result:
    from connectors.client import ClientConfig, ConvexClient
    from connectors.client.wire import FivetranOperation
    from fivetran_destination.model import TableDef
    from fivetran_destination.rows import encode_doc

    server = _Server(work, "direct")
    try:
        with ConvexClient(ClientConfig(server.url, server.key)) as client:
            table = TableDef.from_proto("bench", _table("direct"))
            client.fivetran_create_table(table.create_table_body())
            start = time.perf_counter()
            chunk: list[FivetranOperation] = []
            for doc in _documents(rows):
                chunk.append(FivetranOperation("bench_direct", "Upsert", encode_doc(doc)))
                if len(chunk) == 500:
                    client.apply_fivetran_operations(chunk)
                    chunk = []
            if chunk:
                client.apply_fivetran_operations(chunk)
            elapsed = time.perf_counter() - start
    finally:
        server.stop()
    return Result(
        "baseline: apply_fivetran_operations fed by the client (500-row chunks)", rows, elapsed, peak_rss_mb()
    )


def fd_connector(work: Path, rows: int) -> Result:
    import grpc

    from connectors.fivetran.server import ServerSettings, create_server
    from fivetran_destination.service import register
    from protos import destination_sdk_pb2, destination_sdk_pb2_grpc

    server = _Server(work, "connector")
    path = str(work / FILE_NAME)
    bound = create_server(ServerSettings(0), register, hosts=("127.0.0.1",))
    bound.server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
            stub = destination_sdk_pb2_grpc.DestinationConnectorStub(channel)
            configuration = {"url": server.url, "key": server.key}
            created = stub.CreateTable(
                destination_sdk_pb2.CreateTableRequest(
                    configuration=configuration, schema_name="bench", table=_table("connector")
                )
            )
            assert created.success, created
            start = time.perf_counter()
            resp = stub.WriteBatch(
                destination_sdk_pb2.WriteBatchRequest(
                    configuration=configuration,
                    schema_name="bench",
                    table=_table("connector"),
                    keys={path: (work / KEY_NAME).read_bytes()},
                    replace_files=[path],
                    file_params=destination_sdk_pb2.FileParams(
                        compression=destination_sdk_pb2.ZSTD,
                        encryption=destination_sdk_pb2.AES,
                        null_string=NULL,
                        unmodified_string=UNMODIFIED,
                    ),
                ),
                timeout=3600,
            )
            elapsed = time.perf_counter() - start
            assert resp.success, resp
    finally:
        bound.server.stop(1).wait()
        server.stop()
    return Result("connector: WriteBatch over gRPC (read, convert, post)", rows, elapsed, peak_rss_mb())


CASES = {"fd_prepare": fd_prepare, "fd_parse": fd_parse, "fd_direct": fd_direct, "fd_connector": fd_connector}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("case", nargs="?", choices=sorted(CASES))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--docs", type=int, help="alias of --rows (benchmarks.run passes --docs)")
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    rows = args.docs or args.rows
    if args.case:
        if args.work is None:
            ap.error("--work is required with a case")
        emit(CASES[args.case](args.work, rows))
        return
    with tempfile.TemporaryDirectory(prefix="convex-bench-fd-") as tmp:
        work = Path(tmp)
        run_case("benchmarks.bench_fivetran_destination", "fd_prepare", work, rows)
        parse = run_case("benchmarks.bench_fivetran_destination", "fd_parse", work, rows)
        direct = run_case("benchmarks.bench_fivetran_destination", "fd_direct", work, rows)
        ours = run_case("benchmarks.bench_fivetran_destination", "fd_connector", work, rows)
    print(f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    print("| benchmark | rows | rows/s | peak RSS (MB) | ratio to baseline |")
    print("|---|---:|---:|---:|---:|")
    for r, base in ((parse, None), (direct, None), (ours, direct)):
        ratio = f"{r['rows_per_s'] / base['rows_per_s']:.2f}x" if base else "—"
        print(f"| {r['name']} | {r['rows']:,} | {r['rows_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
