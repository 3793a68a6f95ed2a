"""Packaging and entry points: what the wheel holds, and ``python -m connectors.cli``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a wheel build reads; copied so the build leaves no build/ or *.egg-info in the checkout.
_SOURCES = ("pyproject.toml", "README.md", "connectors", "fivetran_source", "fivetran_destination", "protos", "airbyte")


def test_wheel_ships_our_packages_and_no_bare_airbyte(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in _SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, src / name)
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("convex_connectors-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        top_level = {name.split("/", 1)[0] for name in zf.namelist() if not name.split("/", 1)[0].endswith(
            (".dist-info", ".data")
        )}
        names = set(zf.namelist())
    assert "airbyte" not in top_level  # PyAirbyte owns that import name
    assert {"connectors", "protos"} <= top_level
    assert "protos/__init__.py" in names
    assert "connectors/client/__init__.py" in names and "connectors/constants.py" in names


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connectors.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_python_dash_m_cli_knows_every_command() -> None:
    top = run_cli("--help")
    assert top.returncode == 0, top.stderr
    for command in ("serve", "export", "import", "keygen"):
        assert command in top.stdout
    export = run_cli("export", "--help")
    assert export.returncode == 0, export.stderr
    assert "Usage:" in export.stdout and "export" in export.stdout
