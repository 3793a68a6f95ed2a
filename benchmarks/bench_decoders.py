"""Decoder hot paths with their depth checks (issue #7 item 6), against the raw parse they sit on.

    python -m benchmarks.bench_decoders --docs 100000

Every case parses the same rows with orjson first, so the ratio to ``raw orjson.loads`` shows what the
decoder itself costs. Best of five runs, in one process (the decoders allocate nothing that outlives a
run). ``load_json`` is called once per request body on the server, so its fixed per-call cost (the
``-0`` scan) is spread over a whole body there, not paid per row. ``deep input refused`` measures how fast an over-deep value (1000 levels) is turned away.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable

import orjson

from benchmarks.common import Result, peak_rss_mb, standard_documents
from connectors import values
from connectors.airbyte_records import convert_airbyte_record

REPEATS = 5


def best_of(fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    n = ap.parse_args().docs
    # Copied: orjson's result keeps a larger allocation, which would make the rows look like 400 MB.
    encoded = [bytes(bytearray(orjson.dumps(values.to_encoded_json(d)))) for d in standard_documents(n)]
    plain = [bytes(bytearray(orjson.dumps(d))) for d in standard_documents(n)]
    deep = b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}"

    def refuse_deep() -> None:
        for _ in range(n // 100):
            with contextlib.suppress(values.NestingTooDeepError):
                values.decode_encoded_value(orjson.loads(deep))

    def each(rows: list[bytes], fn: Callable[[bytes], object]) -> Callable[[], None]:
        def run() -> None:
            for b in rows:  # results are dropped at once: memory stays one row
                fn(b)

        return run

    loads = orjson.loads
    cases: list[tuple[str, Callable[[], object], bool]] = [
        ("raw orjson.loads of encoded rows (baseline)", each(encoded, loads), True),
        (
            "decode_encoded_value (client export path)",
            each(encoded, lambda b: values.decode_encoded_value(loads(b))),
            False,
        ),
        (
            "from_encoded_json (apply_fivetran_operations rows)",
            each(encoded, lambda b: values.from_encoded_json(loads(b))),
            False,
        ),
        ("raw orjson.loads of Airbyte rows (baseline)", each(plain, loads), True),
        ("load_json of Airbyte rows (-0 aware)", each(plain, values.load_json), False),
        (
            "convert_airbyte_record (import_airbyte_records)",
            each(plain, lambda b: convert_airbyte_record(loads(b))),
            False,
        ),
    ]
    baseline = 0.0
    for name, fn, is_baseline in cases:
        seconds = best_of(fn)
        result = Result(name, n, seconds, peak_rss_mb())
        if is_baseline:
            baseline = result.rows_per_s
            ratio = "—"
        else:
            ratio = f"{result.rows_per_s / baseline:.2f}x"
        print(f"| {name} | {n:,} | {result.rows_per_s:,.0f} | {result.peak_rss_mb:.0f} | {ratio} |")
    seconds = best_of(refuse_deep)
    print(
        f"| deep input refused (1000 levels, parse + decode) | {n // 100:,} | {n // 100 / seconds:,.0f} | "
        f"{peak_rss_mb():.0f} | — |"
    )


if __name__ == "__main__":
    main()
