"""The README's `fivetran-sync` example, pasted as written into bash (only the port changes): it seeds a
deployment, serves it, syncs it into DuckDB, queries the result and syncs again."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
DEFAULT_PORT = "3210"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_fivetran_sync_example_works_when_pasted(tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    (block,) = [b for b in blocks if "fivetran-sync" in b]
    script = block.replace(DEFAULT_PORT, str(_free_port()))
    venv = Path(sys.prefix)  # the environment running the tests (a venv: its bin holds both commands)
    assert (venv / "bin" / "convex-connectors").exists(), "run the tests from the project's venv"
    (tmp_path / ".venv").symlink_to(venv)
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out_file, open(err_path, "wb") as err_file:
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            proc.wait(timeout=180)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    text, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 0, (text, err)
    assert "Synced 1,000 rows, 0 deletes, 1 truncates" in text
    assert "Synced 0 rows" in text  # the second run only follows the changes
    assert "user" in text and "_fivetran_synced" in text  # the DuckDB query printed the rows
    assert (
        (tmp_path / "out.duckdb.state.json")
        .read_text()
        .startswith('{"version":2,"checkpoint":{"DeltaUpdates"')
    )
