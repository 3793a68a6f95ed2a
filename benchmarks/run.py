"""Run the benchmarks and print (and optionally save) the results table.

    python -m benchmarks.run                     # 1 M documents, SQLite, all suites
    python -m benchmarks.run --docs 100000 --suite engine
    python -m benchmarks.run --docs 1000000 --suite sync  # builds its own deployment when run alone
    python -m benchmarks.run --docs 1000000 --suite export
    python -m benchmarks.run --write-readme      # update the table in benchmarks/README.md

Each case runs in its own subprocess so its peak RSS is its own. Baselines run in the same invocation,
on the same rows, so ratios compare like with like.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import run_case

ROOT = Path(__file__).resolve().parent.parent

# (suite, case, module, name of the baseline case whose rows/s is the ratio's denominator)
CASES: list[tuple[str, str, str, str | None]] = [
    ("engine", "raw_insert", "benchmarks.bench_engine", None),
    ("engine", "insert", "benchmarks.bench_engine", "raw_insert"),
    ("engine", "raw_scan", "benchmarks.bench_engine", None),
    ("engine", "list", "benchmarks.bench_engine", "raw_scan"),
    ("engine", "list_documents", "benchmarks.bench_engine", "raw_scan"),
    ("engine", "list_decode", "benchmarks.bench_engine", "raw_scan"),
    ("engine", "changes", "benchmarks.bench_engine", None),
    # Same end product on both sides: every document decoded to Python values.
    ("http", "http_list_snapshot", "benchmarks.bench_http", "list_decode"),
    ("http", "http_document_deltas", "benchmarks.bench_http", None),
    # Import paths against the engine's own insert of the same rows, measured in the same run.
    ("http", "http_engine_insert", "benchmarks.bench_http", None),
    ("http", "http_import_append", "benchmarks.bench_http", "http_engine_insert"),
    ("http", "http_import_dedup", "benchmarks.bench_http", "http_engine_insert"),
    ("http", "http_engine_insert_fivetran", "benchmarks.bench_http", None),
    ("http", "http_fivetran_upsert", "benchmarks.bench_http", "http_engine_insert_fivetran"),
    # The sync engine's snapshot over HTTP against the client's raw page iteration in the same run.
    ("sync", "sync_raw_pages", "benchmarks.bench_sync", None),
    ("sync", "sync_engine_http", "benchmarks.bench_sync", "sync_raw_pages"),
    # The Fivetran source end to end over gRPC against the client reading the same pages without gRPC;
    # the records case's note also gives its ratio to --single-records (same run).
    ("fivetran-source", "ftsrc_raw_pages", "benchmarks.bench_fivetran_source", None),
    ("fivetran-source", "ftsrc_single_records", "benchmarks.bench_fivetran_source", "ftsrc_raw_pages"),
    ("fivetran-source", "ftsrc_records", "benchmarks.bench_fivetran_source", "ftsrc_raw_pages"),
    ("fivetran-source", "ftsrc_records_gzip", "benchmarks.bench_fivetran_source", "ftsrc_raw_pages"),
    # Airbyte source: ours against the published connector on the same server (and the client alone).
    ("airbyte", "airbyte_source_client", "benchmarks.bench_airbyte_source", None),
    ("airbyte", "airbyte_published_full_refresh", "benchmarks.bench_airbyte_source", None),
    ("airbyte", "airbyte_published_incremental", "benchmarks.bench_airbyte_source", None),
    (
        "airbyte",
        "airbyte_source_full_refresh",
        "benchmarks.bench_airbyte_source",
        "airbyte_published_full_refresh",
    ),
    (
        "airbyte",
        "airbyte_source_incremental",
        "benchmarks.bench_airbyte_source",
        "airbyte_published_incremental",
    ),
    # The snapshot export (issue #11) against the raw pipeline: client pages written with pyarrow directly.
    ("export", "export_raw_pipeline", "benchmarks.bench_export", None),
    ("export", "export_parquet_http", "benchmarks.bench_export", "export_raw_pipeline"),
    ("export", "export_parquet_local", "benchmarks.bench_export", "export_raw_pipeline"),
    ("export", "export_avro_http", "benchmarks.bench_export", "export_raw_pipeline"),
    # Fivetran destination: a zstd + AES replace batch end to end against the client fed the same rows.
    ("fivetran-destination", "fd_prepare", "benchmarks.bench_fivetran_destination", None),
    ("fivetran-destination", "fd_parse", "benchmarks.bench_fivetran_destination", None),
    ("fivetran-destination", "fd_direct", "benchmarks.bench_fivetran_destination", None),
    ("fivetran-destination", "fd_connector", "benchmarks.bench_fivetran_destination", "fd_direct"),
    # destination-convex (console script) against the shared client importing the same records, same run.
    ("airbyte-destination", "abdst_client_append", "benchmarks.bench_airbyte_destination", None),
    ("airbyte-destination", "abdst_append", "benchmarks.bench_airbyte_destination", "abdst_client_append"),
]
# (case, other case): the case's note gets its rows/s ratio to the other case of the same run.
EXTRA_RATIOS: list[tuple[str, str]] = [("ftsrc_records", "ftsrc_single_records")]


def table(results: list[tuple[dict, float | None]]) -> str:
    lines = [
        "| benchmark | rows | rows/s | peak RSS (MB) | ratio to baseline | notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r, ratio in results:
        ratio_text = f"{ratio:.2f}x" if ratio is not None else "—"
        lines.append(
            f"| {r['name']} | {r['rows']:,} | {r['rows_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | {ratio_text}"
            f" | {r.get('note', '')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--suite", choices=["all", *dict.fromkeys(suite for suite, *_ in CASES)], default="all")
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="convex-bench-"))
    results: list[tuple[dict, float | None]] = []
    by_case: dict[str, dict] = {}
    try:
        for suite, case, module, baseline in CASES:
            if a.suite != "all" and suite != a.suite and not (suite == "engine" and a.suite == "http"):
                continue
            r = run_case(module, case, work, a.docs, [])
            by_case[case] = r
            base = by_case.get(baseline) if baseline else None
            ratio = r["rows_per_s"] / base["rows_per_s"] if base else None
            for extra_case, other in EXTRA_RATIOS:
                if case == extra_case and other in by_case:
                    r["note"] = (
                        f"{r['rows_per_s'] / by_case[other]['rows_per_s']:.1f}x {other}; {r.get('note', '')}"
                    )
            results.append((r, ratio))
            print(
                f"{r['name']}: {r['rows_per_s']:,.0f} rows/s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True
            )
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = table(results)
    header = (
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}.\n"
        f"Command: `python -m benchmarks.run --docs {a.docs} --suite {a.suite}`\n\n"
    )
    print()
    print(header + text)
    if a.write_readme:
        readme = ROOT / "benchmarks" / "README.md"
        old = readme.read_text() if readme.exists() else ""
        start, end = "<!-- results:start -->", "<!-- results:end -->"
        block = f"{start}\n{header}{text}\n{end}"
        if start in old and end in old:
            new = old[: old.index(start)] + block + old[old.index(end) + len(end) :]
        else:
            new = old + "\n" + block + "\n"
        readme.write_text(new)


if __name__ == "__main__":
    main()
