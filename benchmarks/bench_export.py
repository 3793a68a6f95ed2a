"""Snapshot export benchmark: ``run_export`` to Parquet (zstd) and Avro over HTTP and from the data
directory, next to the raw pipeline (the same pages fetched with the client and written with pyarrow from
plainly built columns, no type checks or converters) in the same run.

    python -m benchmarks.bench_export <case> --work DIR --docs N

Every case reads the deployment in ``DIR/engine`` (built by the engine-insert benchmark when missing) and
writes into a fresh directory under ``DIR``, removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.bench_http import Server, _client
from benchmarks.bench_sync import _ensure_data
from benchmarks.common import Result, emit, peak_rss_mb
from connectors.backend.engine import Deployment
from connectors.export import ExportFormat, ExportOptions, run_export
from connectors.export.cli import local_export_config
from connectors.export.core import ReadOnlyLocalReader
from connectors.selection import Selection
from connectors.sync import HttpReader

# The standard data set's columns and their Arrow types (benchmarks/common.py).
_RAW_SCHEMA = pa.schema(
    [
        ("_id", pa.string()),
        ("_creationTime", pa.float64()),
        ("active", pa.bool_()),
        ("event_time", pa.float64()),
        ("external_id", pa.string()),
        ("note", pa.string()),
        ("quantity", pa.int64()),
        ("score", pa.float64()),
        ("tags", pa.list_(pa.string())),
        ("title", pa.string()),
    ]
)
_ROW_GROUP = 64 * 1024  # the export's default (ExportOptions.row_group_rows), like for like


def _out(work: Path, name: str) -> Path:
    out = work / f"export-{name}"
    shutil.rmtree(out, ignore_errors=True)
    return out


def export_raw_pipeline(work: Path, docs: int) -> Result:
    """Baseline: client pages -> one list per column -> pa.array -> ParquetWriter (zstd), no checks."""
    _ensure_data(work, docs)
    server = Server(work, "engine")
    out = _out(work, "raw")
    out.mkdir()
    names = _RAW_SCHEMA.names
    try:
        with _client(server) as client:
            start = time.perf_counter()
            count = 0
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            with pq.ParquetWriter(out / "part-00000.parquet", _RAW_SCHEMA, compression="zstd") as writer:
                for page in client.iter_snapshot_pages(selection=Selection.everything()):
                    if not page.values:
                        continue
                    rows = [v.document for v in page.values]
                    arrays = [
                        pa.array([r.get(n) for r in rows], type=f.type)
                        for n, f in zip(names, _RAW_SCHEMA, strict=True)
                    ]
                    pending.append(pa.RecordBatch.from_arrays(arrays, schema=_RAW_SCHEMA))
                    pending_rows += len(rows)
                    count += len(rows)
                    if pending_rows >= _ROW_GROUP:
                        writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
                        pending, pending_rows = [], 0
                if pending:
                    writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
            elapsed = time.perf_counter() - start
        rss = server.peak_rss_mb()
    finally:
        server.stop()
        shutil.rmtree(out, ignore_errors=True)
    return Result(
        "export baseline: client pages -> pyarrow columns -> Parquet zstd (raw)",
        count,
        elapsed,
        peak_rss_mb(),
        note=f"server peak RSS {rss:.0f} MB",
    )


def _http_export(work: Path, docs: int, fmt: ExportFormat) -> Result:
    _ensure_data(work, docs)
    server = Server(work, "engine")
    out = _out(work, fmt.value)
    try:
        with _client(server) as client:
            start = time.perf_counter()
            result = run_export(HttpReader(client), ExportOptions(out=str(out), format=fmt))
            elapsed = time.perf_counter() - start
        rss = server.peak_rss_mb()
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    finally:
        server.stop()
        shutil.rmtree(out, ignore_errors=True)
    return Result(
        f"export --url --format {fmt.value} (zstd), end to end",
        result.rows,
        elapsed,
        peak_rss_mb(),
        note=f"server peak RSS {rss:.0f} MB; output {size / 1e6:.0f} MB",
    )


def export_parquet_http(work: Path, docs: int) -> Result:
    return _http_export(work, docs, ExportFormat.PARQUET)


def export_avro_http(work: Path, docs: int) -> Result:
    return _http_export(work, docs, ExportFormat.AVRO)


def export_parquet_local(work: Path, docs: int) -> Result:
    """``--data-dir``: the same export read in this process (read-only open, no HTTP)."""
    _ensure_data(work, docs)
    out = _out(work, "local")
    try:
        # Opened as the command opens it (its configuration, read-only, ReadOnlyLocalReader).
        with Deployment.open(data_dir=work / "engine", config=local_export_config(), read_only=True) as dep:
            start = time.perf_counter()
            result = run_export(
                ReadOnlyLocalReader(dep), ExportOptions(out=str(out), format=ExportFormat.PARQUET)
            )
            elapsed = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return Result(
        "export --data-dir --format parquet (zstd), end to end", result.rows, elapsed, peak_rss_mb()
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=1_000_000)
    a = ap.parse_args()
    cases = {
        "export_raw_pipeline": export_raw_pipeline,
        "export_parquet_http": export_parquet_http,
        "export_parquet_local": export_parquet_local,
        "export_avro_http": export_avro_http,
    }
    if a.case not in cases:
        raise SystemExit(f"unknown case {a.case}")
    emit(cases[a.case](a.work, a.docs))


if __name__ == "__main__":
    main()
