"""Airbyte source benchmark: a full read of the benchmark deployment by our ``source-convex`` console script
(records serialized to stdout and drained by this process through a pipe), next to the published
``airbyte-source-convex`` 0.4.51 (its own virtual environment, ``tests.airbyte_source_helpers``) reading the
same server in the same run, and the shared client alone.

    python -m benchmarks.bench_airbyte_source <case> --work DIR --docs N

The published connector reads at most ``CONVEX_BENCH_PUBLISHED_DOCS`` records (default 200,000): it is
stopped there and its rate is that of those records (a 1 M read at its speed would take minutes), which the
row's note says. Peak RSS of each connector process is its VmHWM, polled while it runs.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.bench_http import Server, client_page_baseline
from benchmarks.bench_sync import _ensure_data
from benchmarks.common import Result, emit, env_int
from tests.airbyte_source_helpers import OUR_SCRIPT, Files, catalog_streams, parse_lines, published_venv

# Ours writes compact JSON; the published connector (CDK 0.80) writes `"type": "RECORD"`.
RECORD = (b'{"type":"RECORD"', b'{"type": "RECORD"')
STATE = (b'{"type":"STATE"', b'{"type": "STATE"')


class _Peak:
    """Polls a process's VmHWM (its peak RSS, monotonic) until it exits."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mb = 0.0
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.mb = max(self.mb, int(line.split()[1]) / 1024)
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.05)


def _connection(work: Path, server: Server, script: Path, mode: str) -> tuple[Path, Path]:
    root = work / f"airbyte-{script.parent.parent.name}-{mode}"
    root.mkdir(parents=True, exist_ok=True)
    files = Files(root, server.url, server.key)
    config = files.config()
    discover = subprocess.run(
        [str(script), "discover", "--config", str(config)], capture_output=True, check=True, timeout=300
    )
    return config, files.catalog(catalog_streams(parse_lines(discover.stdout)), mode)


def _read(script: Path, config: Path, catalog: Path, limit: int | None) -> tuple[int, int, float, float]:
    """Run ``read``, drain stdout, count RECORD lines; stop after ``limit`` records. Returns (records,
    states, seconds, peak RSS MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(script), "read", "--config", str(config), "--catalog", str(catalog)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    peak = _Peak(proc.pid)
    assert proc.stdout is not None
    records = states = 0
    tail = b""
    stopped = False
    while chunk := proc.stdout.read1(1 << 20):
        data = tail + chunk
        cut = data.rfind(b"\n") + 1
        lines, tail = data[:cut], data[cut:]
        records += sum(lines.count(marker) for marker in RECORD)
        states += sum(lines.count(marker) for marker in STATE)
        if limit is not None and records >= limit:
            stopped = True
            break
    elapsed = time.perf_counter() - start
    if stopped:
        proc.kill()
    proc.wait()
    if not stopped and proc.returncode != 0:
        raise SystemExit(f"{script} read failed with exit code {proc.returncode}")
    return records, states, elapsed, peak.mb


def source_read(work: Path, docs: int, *, published: bool, mode: str) -> Result:
    _ensure_data(work, docs)
    script = published_venv() if published else OUR_SCRIPT
    limit = env_int("CONVEX_BENCH_PUBLISHED_DOCS", 200_000) if published else None
    if limit is not None and limit >= docs:
        limit = None
    server = Server(work, "engine")
    try:
        config, catalog = _connection(work, server, script, mode)
        records, states, elapsed, rss = _read(script, config, catalog, limit)
        server_rss = server.peak_rss_mb()
    finally:
        server.stop()
    who = "published airbyte-source-convex 0.4.51" if published else "our source-convex"
    note = f"connector peak RSS {rss:.0f} MB, server {server_rss:.0f} MB; {states} states"
    if limit is not None:
        note += f"; stopped after {records:,} of {docs:,} records (rate of those)"
    return Result(f"airbyte: {who} read, {mode} (sqlite)", records, elapsed, rss, note=note)


def client_only(work: Path, docs: int) -> Result:
    """Baseline: the shared client's pipelined pages of the same table, values decoded, nothing written."""
    _ensure_data(work, docs)
    return client_page_baseline(work, "airbyte baseline: shared client iter_snapshot_pages (sqlite)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=1_000_000)
    a = ap.parse_args()
    cases = {
        "airbyte_source_client": lambda: client_only(a.work, a.docs),
        "airbyte_published_full_refresh": lambda: source_read(
            a.work, a.docs, published=True, mode="full_refresh"
        ),
        "airbyte_published_incremental": lambda: source_read(
            a.work, a.docs, published=True, mode="incremental"
        ),
        "airbyte_source_full_refresh": lambda: source_read(
            a.work, a.docs, published=False, mode="full_refresh"
        ),
        "airbyte_source_incremental": lambda: source_read(
            a.work, a.docs, published=False, mode="incremental"
        ),
    }
    if a.case not in cases:
        raise SystemExit(f"unknown case {a.case}; one of {', '.join(cases)}")
    emit(cases[a.case]())


if __name__ == "__main__":
    main()
