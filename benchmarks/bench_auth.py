"""Cost of authenticating one request now that keys can be revoked while the server runs.

    python -m benchmarks.bench_auth [--calls 20000] [--db-url postgresql://postgres@127.0.0.1:5432/test]

Baseline: the pre-registry check, ``verify_key`` with the secret in memory (one HMAC). Measured:
``Authenticator.authorize`` with a ``KeyRing``, which adds one primary-key read of the registry's version
counter per request (reloading only when it moved), on SQLite and, with ``--db-url``, PostgreSQL. Reports
checks/s, the microseconds each check costs, and the ratio to the baseline, all in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import Result, emit, peak_rss_mb
from connectors import keys
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.keys import KeyKind, KeyRegistry, KeyRing, Operation
from connectors.server.auth import Api, Authenticator


def _rate(name: str, calls: int, check: Callable[[], object], baseline: float | None) -> Result:
    for _ in range(min(calls, 500)):  # warm up connections and caches
        check()
    start = time.perf_counter()
    for _ in range(calls):
        check()
    seconds = time.perf_counter() - start
    note = f"{seconds / calls * 1e6:.1f} µs per check"
    return Result(name, calls, seconds, peak_rss_mb(), baseline, note)


def _measure(dep: Deployment, label: str, calls: int, baseline: float | None) -> Result:
    _record, key = KeyRegistry(dep).issue(KeyKind.EXPORT, f"bench-{time.time_ns()}")
    auth = Authenticator(KeyRing(KeyRegistry(dep)))
    headers = [(b"authorization", f"Convex {key}".encode())]

    def check() -> object:
        return auth.authorize(headers, {}, Operation.VIEW_DATA, Api.EXPORT)

    return _rate(f"authorize with key registry ({label})", calls, check, baseline)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--db-url", default=None)
    a = ap.parse_args()
    config = DeploymentConfig(background=False)
    with tempfile.TemporaryDirectory(prefix="convex-bench-auth-") as work:
        dep = Deployment.open(data_dir=Path(work) / "d", config=config)
        secret = keys.instance_secret(dep)
        legacy = keys.issue_key(secret, KeyKind.EXPORT)
        base = _rate(
            "verify_key, secret in memory (baseline)", a.calls, lambda: keys.verify_key(secret, legacy), None
        )
        emit(base)
        results = [base, _measure(dep, "sqlite", a.calls, base.rows_per_s)]
        dep.close()
    if a.db_url:
        with Deployment.open(db_url=a.db_url, pg_schema="bench_auth", config=config) as pg:
            results.append(_measure(pg, "postgres", a.calls, base.rows_per_s))
    for r in results[1:]:
        emit(r)
    print()
    for r in results:
        ratio = f"{r.rows_per_s / r.baseline_rows_per_s:.2f}x" if r.baseline_rows_per_s else "—"
        print(
            f"{r.name}: {r.rows_per_s:,.0f} checks/s ({r.note}), ratio {ratio}, peak RSS {r.peak_rss_mb:.0f} MB"
        )


if __name__ == "__main__":
    main()
