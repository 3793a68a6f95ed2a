"""Shared pieces of the benchmarks: the standard data set, timing, and peak-RSS measurement.

Every benchmark runs in its own subprocess so that its peak RSS (``ru_maxrss``) is its own.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "amber",
    "cobalt",
    "ember",
    "frost",
    "granite",
]


def standard_documents(n: int, seed: int = 42) -> Iterator[dict]:
    """The standard data set: ~200-byte documents with 8 mixed fields (id-like string, float time,
    3-word string, int, bool, float, list of 2 strings, nullable string)."""
    rnd = random.Random(seed)
    base = 1_700_000_000_000.0
    for i in range(n):
        yield {
            "external_id": f"ext_{i:010d}_{rnd.getrandbits(32):08x}",
            "event_time": base + i * 13.25,
            "title": " ".join(rnd.choice(WORDS) for _ in range(3)),
            "quantity": rnd.randint(-1_000_000, 1_000_000),
            "active": rnd.random() < 0.5,
            "score": rnd.random() * 100.0,
            "tags": [rnd.choice(WORDS), rnd.choice(WORDS)],
            "note": None if rnd.random() < 0.3 else rnd.choice(WORDS),
        }


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Result:
    name: str
    rows: int
    seconds: float
    peak_rss_mb: float
    baseline_rows_per_s: float | None = None
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> str:
        d = asdict(self)
        d["rows_per_s"] = self.rows_per_s
        return json.dumps(d)


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    rows = fn()
    return rows, time.perf_counter() - start


def emit(result: Result) -> None:
    """Benchmarks print one JSON line as their last output; the runner collects it."""
    sys.stdout.write("RESULT " + result.to_json() + "\n")
    sys.stdout.flush()


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))
