"""Batch-file reader benchmark (issue #9 target: decrypt + decompress + CSV parse >= 300k rows/s).

    python -m benchmarks.bench_batch_files                 # 1 M rows x 10 columns, zstd + AES
    python -m benchmarks.bench_batch_files --rows 100000

Cases, each in its own subprocess so its peak RSS is its own:

- ``prepare``: writes the batch file (CSV -> zstd -> AES-256-CBC, streamed to disk; not timed);
- ``raw_csv``: baseline — the file decrypted and decompressed into memory (not timed), then a plain
  ``csv.reader`` over that text, counting rows;
- ``reader``: ``fivetran_destination.batch_files.read_batch_file`` over the file, counting rows: the whole
  pipeline (decrypt, unpad, decompress, decode, parse, rows as cell lists with sentinels mapped).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import tempfile
import time
from pathlib import Path

import zstandard
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from benchmarks.common import Result, emit, peak_rss_mb, run_case
from fivetran_destination.batch_files import BatchFileParams, Compression, Encryption, read_batch_file

ROOT = Path(__file__).resolve().parent.parent
FILE_NAME = "bench_replace.csv.zst.aes"
KEY_NAME = "bench.key"
NULL = "null-m8yilkvPsNulehxl2G6pmSQ3G3WWdLP"
UNMODIFIED = "unmod-NcK9NIjPUutCsz4mjOQQztbnwnE1sY3"
HEADER = [
    "id",
    "name",
    "email",
    "amount",
    "quantity",
    "active",
    "category",
    "note",
    "_fivetran_deleted",
    "_fivetran_synced",
]
CATEGORIES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def params() -> BatchFileParams:
    return BatchFileParams(Compression.ZSTD, Encryption.AES, NULL, UNMODIFIED)


def prepare(work: Path, rows: int) -> Result:
    """Stream rows -> zstd (level -5, like the v1 tester) -> AES-256-CBC -> file."""
    key = os.urandom(32)
    (work / KEY_NAME).write_bytes(key)
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    padder = padding.PKCS7(128).padder()
    compressor = zstandard.ZstdCompressor(level=-5).compressobj()
    rnd = random.Random(42)
    start = time.perf_counter()
    plain_bytes = 0
    with (work / FILE_NAME).open("wb") as out:
        out.write(iv)

        def write(text: str) -> None:
            nonlocal plain_bytes
            data = text.encode()
            plain_bytes += len(data)
            out.write(encryptor.update(padder.update(compressor.compress(data))))

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(rows):
            writer.writerow(
                [
                    i,
                    f"Customer {rnd.getrandbits(24):06x}",
                    f"user{i}@example.com",
                    f"{rnd.random() * 10_000:.2f}",
                    rnd.randint(0, 1000),
                    "true" if rnd.random() < 0.5 else "false",
                    rnd.choice(CATEGORIES),
                    NULL if rnd.random() < 0.3 else ('an, embedded "quote"' if rnd.random() < 0.1 else "ok"),
                    "false",
                    f"2024-01-09T04:10:19.{i % 1_000_000_000:09d}Z",
                ]
            )
            if buffer.tell() > 1 << 20:
                write(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
        write(buffer.getvalue())
        out.write(
            encryptor.update(padder.update(compressor.flush()) + padder.finalize()) + encryptor.finalize()
        )
    size = (work / FILE_NAME).stat().st_size
    note = f"{plain_bytes / 1e6:.0f} MB of CSV, {size / 1e6:.1f} MB on disk"
    return Result("prepare (not a measurement)", rows, time.perf_counter() - start, peak_rss_mb(), note=note)


def raw_csv(work: Path, rows: int) -> Result:
    """Baseline: csv.reader over the already decrypted and decompressed text in memory."""
    key = (work / KEY_NAME).read_bytes()
    data = (work / FILE_NAME).read_bytes()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(data[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    compressed = unpadder.update(decryptor.update(data[16:]) + decryptor.finalize()) + unpadder.finalize()
    del data
    text = zstandard.ZstdDecompressor().decompressobj().decompress(compressed).decode()
    del compressed
    start, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in csv.reader(io.StringIO(text, newline=""))) - 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert count == rows, (count, rows)
    return Result(
        "raw csv.reader over decompressed text in memory",
        count,
        elapsed,
        peak_rss_mb(),
        note=_cpu(count, cpu),
    )


def reader(work: Path, rows: int) -> Result:
    path = str(work / FILE_NAME)
    keys = {path: (work / KEY_NAME).read_bytes()}
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    for batch in read_batch_file(path, params(), keys):
        count += len(batch.rows)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert count == rows, (count, rows)
    name = "batch_files.read_batch_file (AES + zstd + CSV -> cell lists)"
    return Result(name, count, elapsed, peak_rss_mb(), note=_cpu(count, cpu))


def _cpu(rows: int, cpu_seconds: float) -> str:
    # On a shared machine wall-clock rates swing with the load; CPU time shows the code's own cost.
    return f"{rows / cpu_seconds:,.0f} rows per CPU-second" if cpu_seconds else ""


MODULE = "benchmarks.bench_batch_files"
CASES = {"prepare": prepare, "raw_csv": raw_csv, "reader": reader}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("case", nargs="?", choices=sorted(CASES), help="run one case in this process")
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
    with tempfile.TemporaryDirectory(prefix="convex-bench-batch-") as tmp:
        work = Path(tmp)
        prepared = run_case(MODULE, "prepare", work, rows)
        baseline = run_case(MODULE, "raw_csv", work, rows)
        ours = run_case(MODULE, "reader", work, rows)
    print(f"File: {rows:,} rows x {len(HEADER)} columns; {prepared['note']}.")
    print(f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    print("| benchmark | rows | rows/s | peak RSS (MB) | ratio to baseline | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for result in (baseline, ours):
        ratio = result["rows_per_s"] / baseline["rows_per_s"]
        print(
            f"| {result['name']} | {result['rows']:,} | {result['rows_per_s']:,.0f} | "
            f"{result['peak_rss_mb']:.0f} | {ratio:.2f}x | {result['note']} |"
        )
    target = 300_000
    verdict = "meets" if ours["rows_per_s"] >= target else "MISSES"
    print(f"Reader {verdict} the {target:,} rows/s target ({ours['rows_per_s']:,.0f} rows/s).")


if __name__ == "__main__":
    main()
