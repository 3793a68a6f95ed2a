"""The README's shell example, pasted as written into bash against a real `convex-connectors serve`."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson

README = Path(__file__).resolve().parents[2] / "README.md"
DEFAULT_PORT = "3210"


def _sh_block_with_curl() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "curl" in b]
    return block


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_pasted(script: str, tmp_path: Path, timeout_s: float = 120) -> tuple[str, str, int]:
    """Runs a README shell block as pasted from a directory whose ``.venv`` is the environment running the
    tests (so every ``.venv/bin/...`` command of the README is the installed one); stops whatever it started
    in the background. Returns stdout, stderr and the exit code."""
    venv = Path(sys.prefix)
    if (venv / "bin" / "convex-connectors").exists():
        (tmp_path / ".venv").symlink_to(venv)
    else:  # not run from a venv: the installed command on PATH
        found = shutil.which("convex-connectors")
        assert found is not None, "the convex-connectors command is not installed"
        (tmp_path / ".venv" / "bin").mkdir(parents=True)
        (tmp_path / ".venv" / "bin" / "convex-connectors").symlink_to(found)
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    # Files, not pipes: the background server keeps its output open after bash exits.
    with open(out_path, "wb") as out_file, open(err_path, "wb") as err_file:
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,  # the background server joins this process group, stopped below
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            proc.wait(timeout=timeout_s)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    return out_path.read_text(), err_path.read_text(), proc.returncode


def test_readme_curl_examples_work_when_pasted(tmp_path: Path) -> None:
    block = _sh_block_with_curl()
    assert "<" not in block.replace("<<", ""), "placeholders left in the README's sh block"
    port = str(_free_port())
    # Only the port changes; everything else runs as pasted, from a directory holding the venv.
    script = block.replace(DEFAULT_PORT, port)
    text, err, returncode = run_pasted(script, tmp_path)
    assert returncode == 0, (text, err)
    lines = [line for line in text.splitlines() if line.strip()]
    # The server's own start-up lines interleave; pick the API answers.
    assert "null" in lines
    deltas = orjson.loads(next(line for line in lines if line.startswith("{") and '"cursor"' in line))
    assert deltas["values"] == []  # nothing changed after the snapshot
    assert "Ada" in err and "Grace" in err  # the page printed by the list_snapshot call
    assert (tmp_path / "convex_data").is_dir()
