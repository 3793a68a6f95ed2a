"""The published ``airbyte-source-convex`` 0.4.51 (PyPI; airbyte-cdk 0.80, in its own virtual environment:
``airbyte.md`` §5.4) reads our backend correctly: spec, check, discover, full refresh, incremental with
inserts, patches and a delete, and a resume from its own state. It is the client most existing users run,
so its wire behaviour (GET with query parameters, clean ``json``, the availability probe, cursors) is served
as is. Its state also carries over to our source, which is how an existing connection switches."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from connectors.backend.engine import DeploymentConfig
from connectors.sync import TableRef
from connectors.values import to_clean_json
from tests.airbyte_source_helpers import (
    Files,
    Replica,
    airbyte_truth,
    catalog_streams,
    latest_states,
    of_type,
    published_venv,
    run_in_process,
    run_script,
)
from tests.integration.conftest import ServerFactory
from tests.integration.test_sync_live import mutate, seed

USERS = TableRef("", "users")
POSTS = TableRef("", "posts")


@pytest.fixture(scope="session")
def published() -> Path:
    return published_venv()


def clean_truth(dep: Any) -> dict[TableRef, dict[str, dict[str, Any]]]:
    out: dict[TableRef, dict[str, dict[str, Any]]] = {}
    for info in dep.tables():
        docs = {d.id: to_clean_json(d.value()) for d in dep.iter_snapshot(info)}
        if docs:
            out[TableRef(info.component, info.name)] = docs
    return out


@pytest.mark.parametrize("backend_kind", ["sqlite"], indirect=True)
def test_published_source_reads_our_backend(
    published: Path, server_factory: ServerFactory, tmp_path: Path
) -> None:
    live = server_factory.start(
        DeploymentConfig(background=False, snapshot_page_limit=7, deltas_page_limit=5)
    )
    dep = live.deployment
    ids = seed(dep, {USERS: 17, POSTS: 4})
    files = Files(tmp_path, live.url, live.export_key)
    config = str(files.config())

    spec = run_script(published, "spec")
    assert of_type(spec.messages, "SPEC")[0]["spec"]["connectionSpecification"]["required"] == [
        "deployment_url",
        "access_key",
    ]
    check = run_script(published, "check", "--config", config)
    assert of_type(check.messages, "CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED", check
    streams = catalog_streams(run_script(published, "discover", "--config", config).messages)
    assert sorted(s["name"] for s in streams) == ["posts", "users"]
    users = next(s for s in streams if s["name"] == "users")
    assert users["source_defined_primary_key"] == [["_id"]] and users["default_cursor_field"] == ["_ts"]

    # Full refresh: every document over several pages, exactly once.
    full = run_script(
        published, "read", "--config", config, "--catalog", str(files.catalog(streams, "full_refresh"))
    )
    assert full.returncode == 0, full.stderr
    records = of_type(full.messages, "RECORD")
    assert len(records) == 17 + 4
    assert Replica().apply(full.messages).contents() == clean_truth(dep)
    final = {
        s["stream"]["stream_descriptor"]["name"]: s["stream"]["stream_state"]
        for s in latest_states(full.messages)
    }
    assert final["users"]["snapshot_has_more"] is False and isinstance(final["users"]["delta_cursor"], int)

    # Incremental: snapshot, then changes (patches, inserts, a delete) from its own saved state.
    catalog = str(files.catalog(streams, "incremental"))
    first = run_script(published, "read", "--config", config, "--catalog", catalog)
    assert first.returncode == 0, first.stderr
    replica = Replica().apply(first.messages)
    assert replica.contents() == clean_truth(dep)
    mutate(dep, ids, random.Random(5))
    state = str(files.state(latest_states(first.messages), "published-state.json"))
    second = run_script(published, "read", "--config", config, "--catalog", catalog, "--state", state)
    assert second.returncode == 0, second.stderr
    deleted = [r for r in of_type(second.messages, "RECORD") if r["record"]["data"].get("_deleted")]
    assert deleted and all(r["record"]["data"]["_ab_cdc_deleted_at"] for r in deleted)
    replica.apply(second.messages)
    assert replica.contents() == clean_truth(dep)

    # Resume from its latest state: nothing new.
    resumed_state = str(files.state(latest_states(first.messages + second.messages), "published-state2.json"))
    third = run_script(published, "read", "--config", config, "--catalog", catalog, "--state", resumed_state)
    assert third.returncode == 0, third.stderr
    assert of_type(third.messages, "RECORD") == []

    # An existing connection switches to our source with its stored state: only later changes arrive.
    # (The published records are clean JSON, ours exact JSON: the base is the same documents our way,
    # taken when the published replica was verified equal to the deployment.)
    before = airbyte_truth(dep)
    mutate(dep, ids, random.Random(6))
    ours_catalog = files.catalog(catalog_streams(run_in_process("discover", "--config", config)))
    ours = run_in_process(
        "read", "--config", config, "--catalog", str(ours_catalog), "--state", resumed_state
    )
    assert 0 < len(of_type(ours, "RECORD")) < 17
    assert Replica(tables=before).apply(ours).contents() == airbyte_truth(dep)
