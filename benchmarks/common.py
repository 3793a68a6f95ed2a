"""Shared pieces of the benchmarks: the standard data set, timing, and peak-RSS measurement.

Every benchmark runs in its own subprocess so that its peak RSS (``ru_maxrss``) is its own.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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


ROOT = Path(__file__).resolve().parent.parent


def run_case(module: str, case: str, work: Path, docs: int, extra: Sequence[str] = ()) -> dict:
    """Runs one case of a benchmark module in its own process (so its peak RSS is its own) and returns the
    ``RESULT`` line it printed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", module, case, "--work", str(work), "--docs", str(docs), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict = json.loads(line[len("RESULT ") :])
            return result
    raise SystemExit(f"benchmark {case} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
