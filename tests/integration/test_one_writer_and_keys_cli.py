"""The CLI with real processes: while `serve` runs, a second `serve` and an `import` are refused with a message
naming the server process; `export`, `keygen` and `keys` work alongside it, and a key revoked (or a secret
rotated) by the CLI is refused by the running server on its very next request. SQLite and PostgreSQL.

Also the typo guards: commands that need a deployment refuse a location that holds none."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests
from click.testing import CliRunner

from connectors.cli import main
from tests.conftest import pg_url, require_pg

REPO = Path(__file__).parents[2]
BAD_ADMIN_KEY = {"code": "BadAdminKey", "message": "The provided admin key was invalid for this instance"}


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", "from connectors.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    admin_key: str = field(repr=False)
    location: list[str]  # --data-dir DIR or --db URL

    def check(self, key: str) -> requests.Response:
        return requests.get(
            f"{self.url}/api/test_streaming_export_connection",
            headers={"Authorization": f"Convex {key}"},
            timeout=10,
        )


@pytest.fixture
def location(backend_kind: str, tmp_path: Path) -> Iterator[list[str]]:
    if backend_kind == "sqlite":
        yield ["--data-dir", str(tmp_path / "data")]
        return
    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(require_pg(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_url() else "?"
    try:
        yield ["--db", f"{pg_url()}{sep}options=-csearch_path%3D{schema}"]
    finally:
        with psycopg.connect(pg_url(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def served(location: list[str]) -> Iterator[Served]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from connectors.cli import main; main()", "serve", *location, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("Make deploy keys"):
                break
        url = lines[0].rpartition(" ")[2]
        key = next(line for line in lines if line.startswith("admin:"))
        yield Served(proc, url, key, location)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stdout is not None:
            proc.stdout.close()


def test_one_writer_while_serve_runs_and_read_only_commands_share(served: Served, tmp_path: Path) -> None:
    assert served.check(served.admin_key).status_code == 200
    pid = served.process.pid

    second = _cli("serve", *served.location, "--port", "0")
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"in use by process {pid} on host" in second.stderr and "serve" in second.stderr
    assert "stop the server first, or import over HTTP" in second.stderr

    # Backup export is read-only: it works while the server runs (and gives the import below a real ZIP).
    backup = tmp_path / "backup.zip"
    exported = _cli("export", *served.location, str(backup))
    assert exported.returncode == 0, exported.stderr
    imported = _cli("import", *served.location, "--mode", "replace", str(backup))
    assert imported.returncode == 1 and f"in use by process {pid}" in imported.stderr, imported.stderr

    # The server is unaffected and still the only writer.
    assert served.check(served.admin_key).status_code == 200
    assert served.process.poll() is None


def test_keys_made_revoked_and_rotated_by_the_cli_apply_to_the_running_server(served: Served) -> None:
    made = _cli("keygen", *served.location, "--kind", "export", "--name", "ci")
    assert made.returncode == 0, made.stderr
    ci_key = made.stdout.strip()
    assert ci_key.startswith("export:ci|")
    assert served.check(ci_key).status_code == 200  # a key made while the server runs works at once

    duplicate = _cli("keygen", *served.location, "--name", "ci")
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr

    listed = _cli("keys", "list", *served.location)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert {(r[0], r[1], r[4]) for r in rows} >= {("ci", "export", "active")}
    assert any(r[0].startswith("initial-admin-") and r[1] == "admin" for r in rows)
    assert ci_key.rpartition("|")[2] not in listed.stdout  # never the key itself

    revoked = _cli("keys", "revoke", "ci", *served.location)
    assert revoked.returncode == 0 and "Revoked key ci" in revoked.stdout, revoked.stderr
    refused = served.check(ci_key)
    assert refused.status_code == 401 and refused.json() == BAD_ADMIN_KEY
    assert served.check(served.admin_key).status_code == 200
    again = _cli("keys", "revoke", "ci", *served.location)
    assert again.returncode == 1 and "no active key named 'ci'" in again.stderr

    rotated = _cli("keys", "rotate-secret", "--yes", *served.location)
    assert rotated.returncode == 0, rotated.stderr
    gone = served.check(served.admin_key)
    assert gone.status_code == 401 and gone.json() == BAD_ADMIN_KEY
    fresh = _cli("keygen", *served.location, "--name", "after-rotation").stdout.strip()
    assert served.check(fresh).status_code == 200


# --- typo guards ----------------------------------------------------------------------------------------------


def test_commands_that_need_a_deployment_refuse_an_empty_location(tmp_path: Path) -> None:
    runner = CliRunner()
    typo = tmp_path / "convex_dta"
    for args in (
        ["keygen", "--data-dir", str(typo)],
        ["keys", "list", "--data-dir", str(typo)],
        ["keys", "revoke", "x", "--data-dir", str(typo)],
        ["keys", "rotate-secret", "--yes", "--data-dir", str(typo)],
        ["export", "--data-dir", str(typo), str(tmp_path / "out.zip")],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert f"There is no deployment in {typo}" in result.output and "Check --data-dir" in result.output
        assert not typo.exists(), args

    # `import` of something that is not a backup fails before creating anything.
    bogus = tmp_path / "backup.zip"
    bogus.write_text("not a zip")
    result = runner.invoke(main, ["import", "--data-dir", str(typo), str(bogus)])
    assert result.exit_code == 1 and "not a valid ZIP" in result.output
    assert not typo.exists()
    # Neither does a file that is not a .zip, given without --table.
    notes = tmp_path / "notes.txt"
    notes.write_text("not a zip")
    result = runner.invoke(main, ["import", "--data-dir", str(typo), str(notes)])
    assert result.exit_code == 2 and "not a .zip backup" in result.output and "--table" in result.output
    assert not typo.exists()


def test_commands_that_need_a_deployment_refuse_an_empty_postgres_schema() -> None:
    url = require_pg()
    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in url else "?"
        result = CliRunner().invoke(main, ["keygen", "--db", f"{url}{sep}options=-csearch_path%3D{schema}"])
        assert result.exit_code == 1 and "There is no deployment in PostgreSQL database" in result.output
        with psycopg.connect(url, options=f"-c search_path={schema}") as conn:
            assert conn.execute("SELECT to_regclass('globals')").fetchone() == (None,)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
