"""``airbyte/source-convex``: the Dockerfile and metadata agree with each other and with the package (images
cannot be built here, so they are parsed), the spec is what the connector serves, and the record renderer
writes every value the type map's way, nulls included."""

from __future__ import annotations

import json
import logging
import math
import tomllib
import uuid
from pathlib import Path

import orjson
import source_convex
import yaml
from source_convex import SourceConvex
from source_convex.records import StreamRenderer, cdc_timestamp

from connectors.client import ExportedValue

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "airbyte" / "source-convex"


def _dockerfile() -> list[tuple[str, str]]:
    instructions = []
    for raw in (FOLDER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_and_metadata_agree() -> None:
    meta = yaml.safe_load((FOLDER / "metadata.yaml").read_text())["data"]
    docker = _dockerfile()
    assert docker[0][0] == "FROM"
    base = docker[0][1]
    assert base == meta["connectorBuildOptions"]["baseImage"]
    assert base.startswith("docker.io/airbyte/python-connector-base:") and "@sha256:" in base
    assert meta["connectorType"] == "source" and meta["dockerRepository"] == "airbyte/source-convex"
    assert str(uuid.UUID(meta["definitionId"])) == meta["definitionId"]
    # The published connector's definition id: existing connections upgrade in place.
    assert meta["definitionId"] == "c332628c-f55c-4017-8222-378cfafda9b2"
    assert meta["dockerImageTag"] == source_convex.__version__
    labels = dict(rest.split("=", 1) for kw, rest in docker if kw == "LABEL")
    assert labels == {
        "io.airbyte.name": meta["dockerRepository"],
        "io.airbyte.version": meta["dockerImageTag"],
    }
    # Every COPY source exists relative to the build context (the repository root).
    for kw, rest in docker:
        if kw == "COPY":
            *sources, _dest = rest.split()
            for source in sources:
                assert (REPO / source).exists(), source
    (entrypoint,) = [json.loads(rest) for kw, rest in docker if kw == "ENTRYPOINT"]
    assert entrypoint == ["python", "/airbyte/integration_code/main.py"]
    env = [rest for kw, rest in docker if kw == "ENV"]
    assert 'AIRBYTE_ENTRYPOINT="python /airbyte/integration_code/main.py"' in env
    assert any(kw == "RUN" and "pip install" in rest for kw, rest in docker)
    assert "from source_convex.run import run" in (FOLDER / "main.py").read_text()


def test_console_script_and_package_layout() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["source-convex"] == "source_convex.run:run"
    assert any(dep.startswith("airbyte-cdk>=7.39,<8") for dep in project["project"]["dependencies"])
    assert Path(source_convex.__file__).resolve().parent == FOLDER / "source_convex"


def test_spec_file_is_what_the_connector_serves() -> None:
    raw = json.loads((FOLDER / "source_convex" / "spec.json").read_text())
    spec = SourceConvex().spec(logging.getLogger("airbyte"))
    connection = spec.connectionSpecification
    assert connection == raw["connectionSpecification"]
    assert connection["required"] == ["deployment_url", "access_key"]
    assert connection["properties"]["access_key"]["airbyte_secret"] is True


def test_renderer_writes_type_map_values_and_keeps_nulls() -> None:
    ts = 1_750_000_000_123_456_789
    doc = {
        "_id": "abc",
        "none": None,
        "big": -(2**63),
        "nan": math.nan,
        "inf": -math.inf,
        "b": b"\x00\xff",
        "plain": [1, "x", 2.5, None, True, {"k": "v"}],
        "deep": {"list": [{"x": math.inf, "b": b"\x01"}], "n": None},
    }
    out = bytearray()
    renderer = StreamRenderer("users", "waitlist")
    renderer.records([ExportedValue("waitlist", "users", ts, False, dict(doc))], deleted=False, out=out)
    renderer.records(
        [ExportedValue("waitlist", "users", ts + 1, True, {"_id": "abc"})], deleted=True, out=out
    )
    renderer.state({"snapshot_cursor": None, "snapshot_has_more": False, "delta_cursor": ts + 1}, 2, out)
    lines = [orjson.loads(line) for line in bytes(out).splitlines()]
    upsert, delete, state = lines
    assert upsert["type"] == "RECORD" and upsert["record"]["namespace"] == "waitlist"
    data = upsert["record"]["data"]
    assert data["none"] is None and data["big"] == -(2**63)
    assert (data["nan"], data["inf"], data["b"]) == ("NaN", "-Infinity", "AP8=")
    assert data["plain"] == [1, "x", 2.5, None, True, {"k": "v"}]
    assert data["deep"] == {"list": [{"x": "Infinity", "b": "AQ=="}], "n": None}
    assert (data["_ts"], data["_ab_cdc_lsn"], data["_deleted"]) == (ts, ts, False)
    assert data["_ab_cdc_updated_at"] == "2025-06-15T15:06:40.123457" == cdc_timestamp(ts)
    assert data["_ab_cdc_deleted_at"] is None and (data["_table"], data["_component"]) == (
        "users",
        "waitlist",
    )
    gone = delete["record"]["data"]
    assert gone["_deleted"] is True and gone["_ab_cdc_deleted_at"] == cdc_timestamp(ts + 1)
    assert state["state"]["stream"]["stream_descriptor"] == {"name": "users", "namespace": "waitlist"}
    assert state["state"]["sourceStats"] == {"recordCount": 2.0}


def test_config_errors_name_the_key_and_never_the_secret() -> None:
    import pytest
    from source_convex.config import SourceConfig, SourceConfigError

    ok = SourceConfig.from_mapping(
        {"deployment_url": " https://a.convex.cloud/ ", "access_key": "k", "components": ["", "/auth/"]}
    )
    assert ok.components == ("", "auth") and ok.includes_component("auth") and not ok.includes_component("x")
    assert SourceConfig.from_mapping({"deployment_url": "http://h", "access_key": "k"}).includes_component(
        "any"
    )
    cases = [
        ({"access_key": "k"}, "`deployment_url` is missing"),
        ({"deployment_url": "http://h"}, "`access_key` is missing"),
        ({"deployment_url": "ftp://h", "access_key": "secret-value"}, "`deployment_url`"),
        ({"deployment_url": "http://h", "access_key": "bad\nsecret-value"}, "`access_key`"),
        ({"deployment_url": "http://h", "access_key": "k", "components": "auth"}, "`components`"),
    ]
    for raw, expected in cases:
        with pytest.raises(SourceConfigError, match=expected) as info:
            SourceConfig.from_mapping(raw)
        assert "secret-value" not in str(info.value)
