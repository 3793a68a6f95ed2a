"""Shared fixtures: deployments on real SQLite and PostgreSQL, isolated per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from connectors.backend.engine import Deployment, DeploymentConfig

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pg_url() -> str:
    return os.environ.get("CONVEX_TEST_PG_URL", DEFAULT_PG_URL)


def _pg_available() -> bool:
    try:
        with psycopg.connect(pg_url(), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


_PG_OK: bool | None = None


def require_pg() -> str:
    global _PG_OK
    if _PG_OK is None:
        _PG_OK = _pg_available()
    if not _PG_OK:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at CONVEX_TEST_PG_URL ({pg_url()!r})")
        pytest.skip("PostgreSQL not reachable; run scripts/test.sh to start one")
    return pg_url()


class DeploymentFactory:
    """Opens deployments on one backend; each test gets its own data dir or PostgreSQL schema."""

    def __init__(self, kind: str, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.kind = kind
        self._tmp = tmp_path_factory
        self.location: str | None = None
        self._opened: list[Deployment] = []
        self._schemas: list[str] = []

    def new_location(self) -> str:
        if self.kind == "sqlite":
            self.location = str(self._tmp.mktemp("deployment"))
        else:
            self.location = "t_" + uuid.uuid4().hex[:16]
            self._schemas.append(self.location)
        return self.location

    def open(self, config: DeploymentConfig | None = None, location: str | None = None) -> Deployment:
        location = location or self.location or self.new_location()
        config = config or DeploymentConfig(background=False)
        if self.kind == "sqlite":
            dep = Deployment.open(data_dir=location, config=config)
        else:
            dep = Deployment.open(db_url=require_pg(), pg_schema=location, config=config)
        self._opened.append(dep)
        return dep

    def open_read_only(self, location: str) -> Deployment:
        """A second, read-only view of a deployment another opener (a server) holds, as a local export opens it."""
        config = DeploymentConfig(background=False)
        if self.kind == "sqlite":
            dep = Deployment.open(data_dir=location, config=config, read_only=True)
        else:
            dep = Deployment.open(db_url=require_pg(), pg_schema=location, config=config, read_only=True)
        self._opened.append(dep)
        return dep

    def cli_location(self, location: str) -> list[str]:
        """The command-line options that name this deployment (``--data-dir`` or ``--db`` with its schema)."""
        if self.kind == "sqlite":
            return ["--data-dir", location]
        return ["--db", f"{require_pg()}?options=-csearch_path%3D{location}"]

    def close_all(self) -> None:
        for dep in self._opened:
            dep.close()
        if self._schemas:
            with psycopg.connect(pg_url(), autocommit=True) as conn:
                for schema in self._schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_pg()
    return request.param


@pytest.fixture
def deployment_factory(
    backend_kind: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeploymentFactory]:
    factory = DeploymentFactory(backend_kind, tmp_path_factory)
    try:
        yield factory
    finally:
        factory.close_all()


@pytest.fixture
def deployment(deployment_factory: DeploymentFactory) -> Deployment:
    return deployment_factory.open()


class FakeClock:
    """A controllable nanosecond clock for retention tests."""

    def __init__(self, start_ns: int = 1_750_000_000_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        self.now += 1_000  # time always moves forward a little
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


ConfigFactory = Callable[..., DeploymentConfig]


# --- a run must end: threads left behind by a test are reported, and never keep the process alive ---------

_EXIT_STATUS: int | None = None
_THREAD_GRACE_S = 10.0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _EXIT_STATUS
    _EXIT_STATUS = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Interpreter exit joins every non-daemon thread (thread-pool workers included): one stuck in a test's
    server would hang CI until its time limit. Give them a grace period, then print where they are stuck
    and end the process with the session's own status, so the leak is visible and the run still ends."""
    import faulthandler
    import sys
    import threading
    import time

    def stuck() -> list[threading.Thread]:
        main = threading.main_thread()
        return [t for t in threading.enumerate() if t is not main and t.is_alive() and not t.daemon]

    deadline = time.monotonic() + _THREAD_GRACE_S
    while stuck() and time.monotonic() < deadline:
        time.sleep(0.1)
    if stuck() and _EXIT_STATUS is not None:
        names = ", ".join(t.name for t in stuck())
        print(f"\nThreads still running after the tests ({names}); their stacks:", file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(_EXIT_STATUS)
