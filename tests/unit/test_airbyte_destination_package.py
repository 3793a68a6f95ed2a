"""destination-convex's packaging (Dockerfile, metadata.yaml, spec, README, console script) and the parts of
its write path that need no server (table plans, bounded index polling)."""

from __future__ import annotations

import json
import re
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from destination_convex.writer import (
    DestinationError,
    IndexPolling,
    plan_tables,
    table_name,
    wait_for_indexes,
)

from connectors.errors import Reaction

REPO = Path(__file__).resolve().parents[2]
CONNECTOR = REPO / "airbyte" / "destination-convex"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (CONNECTOR / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def metadata() -> dict[str, Any]:
    return yaml.safe_load((CONNECTOR / "metadata.yaml").read_text())["data"]


def test_dockerfile_matches_the_metadata_and_the_package() -> None:
    instructions = dockerfile_instructions()
    data = metadata()
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms == [data["connectorBuildOptions"]["baseImage"]]
    assert re.fullmatch(r"docker\.io/airbyte/python-connector-base:\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", froms[0])
    # Every COPY source exists relative to the build context (the repository root).
    for op, args in instructions:
        if op == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                assert (REPO / source).exists(), source
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    assert scripts["destination-convex"] == "destination_convex.run:run"
    assert ("ENTRYPOINT", '["destination-convex"]') in instructions
    assert ("ENV", 'AIRBYTE_ENTRYPOINT="destination-convex"') in instructions
    labels = dict(args.split("=", 1) for op, args in instructions if op == "LABEL")
    assert labels["io.airbyte.name"] == data["dockerRepository"] == "airbyte/destination-convex"
    assert labels["io.airbyte.version"] == data["dockerImageTag"]
    assert any(op == "RUN" and "pip install" in args for op, args in instructions)


def test_metadata_describes_a_community_python_destination() -> None:
    data = metadata()
    assert data["connectorType"] == "destination"
    assert data["definitionId"] == "3eb4d99c-11fa-4561-a259-fc88e0c2f8f4"  # the published connector's
    assert re.fullmatch(r"\d+\.\d+\.\d+", data["dockerImageTag"])
    assert "language:python" in data["tags"] and "cdk:python" in data["tags"]
    assert data["supportLevel"] == "community" and data["releaseStage"] == "alpha"


def test_spec_and_readme() -> None:
    spec = json.loads((CONNECTOR / "destination_convex" / "spec.json").read_text())
    assert spec["supported_destination_sync_modes"] == ["overwrite", "append", "append_dedup"]
    conn = spec["connectionSpecification"]
    assert conn["required"] == ["deployment_url", "access_key"] and conn["additionalProperties"] is False
    assert conn["properties"]["access_key"]["airbyte_secret"] is True
    readme = (CONNECTOR / "README.md").read_text()
    for needle in ("docker build -f airbyte/destination-convex/Dockerfile", "destination-convex check", "append_dedup"):
        assert needle in readme
    top = (REPO / "README.md").read_text()
    assert "## Airbyte destination" in top


def test_the_wheel_ships_destination_convex_with_its_spec(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "connectors", "fivetran_source", "fivetran_destination", "protos", "airbyte"):
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("convex_connectors-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "destination_convex/spec.json" in names and "destination_convex/destination.py" in names
    assert "destination-convex = destination_convex.run:run" in entry_points


# --- write-path pieces without a server -------------------------------------------------------------------


def test_one_table_name_per_stream() -> None:
    assert table_name("users", "shop") == "shop_users"
    assert table_name("users", None) == "users" == table_name("users", "")
    (plan,) = plan_tables([("My Users", "crm", "append", None, {})])
    assert plan.table == "crm_My Users" and plan.stored_as == "source_crm_my_users"
    (dedup,) = plan_tables([("items", None, "append_dedup", [["id"], ["nested", "key"]], {})])
    assert dedup.wire_stream().primary_key == [["id"], ["nested", "key"]]
    (append,) = plan_tables([("items", None, "append", [["id"]], {})])
    assert append.wire_stream().primary_key is None  # a primary key only means dedup in append_dedup


class FakeReadiness:
    def __init__(self, ready_after: int) -> None:
        self.calls = 0
        self.ready_after = ready_after

    def primary_key_indexes_ready(self, tables: list[str]) -> bool:
        self.calls += 1
        return self.calls > self.ready_after


def test_index_polling_backs_off_and_is_bounded() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    client = FakeReadiness(ready_after=5)
    wait_for_indexes(client, ["t"], IndexPolling(timeout_s=100, first_s=1, max_s=4), sleep=sleep,  # type: ignore[arg-type]
                     clock=lambda: now[0])
    assert sleeps == [1, 2, 4, 4, 4]
    never = FakeReadiness(ready_after=10**9)
    now[0], sleeps[:] = 0.0, []
    with pytest.raises(DestinationError) as info:
        wait_for_indexes(never, ["a_t"], IndexPolling(timeout_s=10, first_s=1, max_s=4), sleep=sleep,  # type: ignore[arg-type]
                         clock=lambda: now[0])
    assert sum(sleeps) == pytest.approx(10) and sleeps == [1, 2, 4, 3]
    assert info.value.reaction is Reaction.TRANSIENT
    assert "a_t" in info.value.message and "still backfilling after 10 s" in info.value.message
