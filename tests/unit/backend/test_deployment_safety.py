"""Deployment safety in the engine: one writer per deployment, read-only opens that share with it, private
files, no deployment created by mistake, and timestamps that stay above everything handed out across a
crash (kill -9) with the clock set back. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from connectors.backend.engine import TIMESTAMP_LEASE_NS, Deployment, DeploymentConfig
from connectors.backend.sqlite import DB_FILE
from connectors.backend.writer_lock import (
    LOCK_FILE,
    DeploymentLockedError,
    DeploymentNotFoundError,
    ReadOnlyDeploymentError,
)
from tests.conftest import DeploymentFactory, FakeClock, pg_url, require_pg

CHILD = Path(__file__).with_name("timestamp_child.py")


def _open(factory: DeploymentFactory, **kwargs: object) -> Deployment:
    """Open the factory's current location with extra ``Deployment.open`` arguments (closed by the test)."""
    assert factory.location is not None
    config = DeploymentConfig(background=False)
    if factory.kind == "sqlite":
        return Deployment.open(data_dir=factory.location, config=config, **kwargs)  # type: ignore[arg-type]
    return Deployment.open(db_url=require_pg(), pg_schema=factory.location, config=config, **kwargs)  # type: ignore[arg-type]


# --- one writer ----------------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_and_names_the_holder(deployment_factory: DeploymentFactory) -> None:
    dep = deployment_factory.open()
    with dep.transaction() as tx:
        tx.create_table("t")
        tx.insert("t", {"n": 1})
    with pytest.raises(DeploymentLockedError) as refused:
        _open(deployment_factory)
    message = str(refused.value)
    assert f"process {os.getpid()} on host {socket.gethostname()}" in message
    assert "stop the server first, or import over HTTP" in message
    assert refused.value.holder is not None and refused.value.holder.pid == os.getpid()

    # A read-only open shares with the writer, reads as of its last commit, and cannot write.
    reader = _open(deployment_factory, read_only=True)
    try:
        assert reader.read_only and [d.value()["n"] for d in reader.iter_snapshot(reader.table("t"))] == [1]
        assert reader.read_timestamp() == dep.last_commit_ts
        with pytest.raises(ReadOnlyDeploymentError), reader.transaction() as tx:
            tx.insert("t", {"n": 2})
    finally:
        reader.close()

    # Closing the writer releases the lock: the next writer opens, and a crash-free restart just works.
    dep.close()
    again = _open(deployment_factory)
    try:
        assert again.document_count("t") == 1
    finally:
        again.close()


def test_the_writer_lock_is_released_when_the_process_dies(deployment_factory: DeploymentFactory) -> None:
    location = deployment_factory.new_location()
    proc = _start_child(deployment_factory.kind, location)
    try:
        assert proc.stdout is not None and proc.stdout.readline()  # open and writing
        with pytest.raises(DeploymentLockedError) as refused:
            _open(deployment_factory)
        assert refused.value.holder is not None and refused.value.holder.pid == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        _reap(proc)
    deployment_factory.open().close()  # no stale lock left behind by the killed writer


# --- nothing created by mistake ---------------------------------------------------------------------------


def test_create_false_refuses_storage_without_a_deployment(deployment_factory: DeploymentFactory) -> None:
    deployment_factory.new_location()
    for kwargs in ({"create": False}, {"read_only": True}):
        with pytest.raises(
            DeploymentNotFoundError, match="There is no deployment in .*only `serve` and `import`"
        ):
            _open(deployment_factory, **kwargs)
    if deployment_factory.kind == "sqlite":
        assert deployment_factory.location is not None
        assert not (Path(deployment_factory.location) / DB_FILE).exists()
    else:
        with psycopg.connect(pg_url(), options=f"-c search_path={deployment_factory.location}") as conn:
            assert conn.execute("SELECT to_regclass('globals')").fetchone() == (None,)
    created = _open(deployment_factory, create=True)
    try:
        assert created.created
    finally:
        created.close()
    existing = _open(deployment_factory, create=False)
    try:
        assert not existing.created
    finally:
        existing.close()


# --- private files -----------------------------------------------------------------------------------------


def test_a_new_sqlite_deployment_is_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the common default, which would make files world-readable
    try:
        data_dir = tmp_path / "parent" / "data"
        with Deployment.open(data_dir=data_dir, config=DeploymentConfig(background=False)) as dep:
            with dep.transaction() as tx:
                tx.create_table("t")
                tx.insert("t", {"secret": "s"})
            files = [data_dir / name for name in (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", LOCK_FILE)]
            assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
            assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    finally:
        os.umask(old_umask)


def test_opening_a_deployment_open_to_other_users_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    Deployment.open(data_dir=data_dir, config=DeploymentConfig(background=False)).close()
    caplog.set_level(logging.WARNING)
    Deployment.open(data_dir=data_dir, config=DeploymentConfig(background=False)).close()
    assert "readable by other" not in caplog.text
    os.chmod(data_dir, 0o755)
    os.chmod(data_dir / DB_FILE, 0o644)
    Deployment.open(data_dir=data_dir, config=DeploymentConfig(background=False)).close()
    assert "readable by other local users" in caplog.text
    assert f"{data_dir} (0755)" in caplog.text and f"{DB_FILE} (0644)" in caplog.text
    assert f"chmod 700 {data_dir}" in caplog.text


# --- crash-safe timestamps ---------------------------------------------------------------------------------


def _start_child(kind: str, location: str) -> subprocess.Popen[str]:
    args = [sys.executable, str(CHILD), kind, location] + ([pg_url()] if kind == "postgres" else [])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_timestamps_stay_above_everything_handed_out_after_kill_9_and_a_clock_set_back(
    deployment_factory: DeploymentFactory,
) -> None:
    location = deployment_factory.new_location()
    proc = _start_child(deployment_factory.kind, location)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        seen = [int(proc.stdout.readline() or 0)]
        deadline = time.monotonic() + 1.5 * TIMESTAMP_LEASE_NS / 1e9  # the lease is renewed on the way
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"the child died early: {proc.stderr.read()}")
            seen.append(int(line))
        os.kill(proc.pid, signal.SIGKILL)
        seen.extend(int(line) for line in proc.stdout.read().split())
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        _reap(proc)
    assert len(seen) > 20
    highest = max(seen)

    clock = FakeClock(start_ns=highest - 3_600 * 10**9)  # the wall clock went back an hour
    dep = deployment_factory.open(DeploymentConfig(background=False, clock_ns=clock), location=location)
    issued = [dep.read_timestamp()]
    with dep.transaction() as tx:
        tx.insert("items", {"after": "restart"})
    issued += [dep.last_commit_ts, dep.read_timestamp()]
    clock.advance(5 * TIMESTAMP_LEASE_NS)  # still far behind: the restart's timestamps stay ahead of it
    issued.append(dep.read_timestamp())
    assert all(ts > highest for ts in issued), (highest, issued)
    assert issued == sorted(issued)


def test_the_timestamp_lease_is_written_rarely_not_per_commit(deployment_factory: DeploymentFactory) -> None:
    clock = FakeClock()
    dep = deployment_factory.open(DeploymentConfig(background=False, clock_ns=clock))
    with dep.transaction() as tx:
        tx.create_table("t")

    def stored_lease() -> int:
        rows = dep.persistence.read("SELECT value FROM globals WHERE key = ?", ("ts_high_water",))
        return int(rows[0][0])

    first = stored_lease()
    for i in range(50):  # 50 commits and reads within a fraction of the lease: no new lease
        with dep.transaction() as tx:
            tx.insert("t", {"i": i})
        assert dep.read_timestamp() < first
    assert stored_lease() == first
    # Reads never run ahead of the stored lease, even while it is being renewed.
    clock.advance(TIMESTAMP_LEASE_NS)
    handed = dep.read_timestamp()
    assert stored_lease() > handed > first
