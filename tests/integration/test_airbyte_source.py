"""Our Airbyte ``source-convex`` (airbyte-cdk 7) against our live server on loopback, on SQLite and
PostgreSQL: through its CDK entrypoint in-process and as the installed console script. Full refresh,
incremental with inserts/patches/deletes between runs, resume from every emitted state, components as
namespaces, null fields kept, an expired change cursor, and clear messages for bad config, a bad key and an
unreachable server."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
from source_convex import SourceConvex

from connectors.backend.engine import DeploymentConfig
from connectors.sync import TableRef
from tests.airbyte_source_helpers import (
    OUR_SCRIPT,
    Files,
    Replica,
    airbyte_truth,
    catalog_streams,
    latest_states,
    of_type,
    run_in_process,
    run_script,
    stream_states,
)
from tests.conftest import FakeClock
from tests.integration.conftest import LiveServer, ServerFactory
from tests.integration.test_sync_live import mutate, seed
from tests.unit.test_client import unused_port

PAGE = 10
SECOND = 1_000_000_000
USERS = TableRef("", "users")
ENTRIES = TableRef("waitlist", "entries")
JOBS = TableRef("cron/inner", "jobs")


def _start(server_factory: ServerFactory, **config: Any) -> LiveServer:
    return server_factory.start(
        DeploymentConfig(background=False, snapshot_page_limit=PAGE, deltas_page_limit=PAGE, **config)
    )


def _files(tmp_path: Path, live: LiveServer, key: str | None = None) -> Files:
    return Files(tmp_path, live.url, key or live.export_key)


def _seeded(server_factory: ServerFactory, **config: Any) -> tuple[LiveServer, dict[TableRef, list[str]]]:
    live = _start(server_factory, **config)
    ids = seed(live.deployment, {USERS: 23, ENTRIES: 14, JOBS: 3})
    with live.deployment.transaction() as tx:
        ids[USERS].append(
            tx.insert("users", {"n": math.nan, "big": -(2**63), "f": math.inf, "none": None, "b": b""})
        )
    return live, ids


def _discover(files: Files) -> list[dict[str, Any]]:
    return catalog_streams(run_in_process("discover", "--config", str(files.config())))


def _read(files: Files, catalog: Path, states: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    argv = ["read", "--config", str(files.config()), "--catalog", str(catalog)]
    if states is not None:
        argv += ["--state", str(files.state(states))]
    return run_in_process(*argv)


def test_spec_check_and_discover(server_factory: ServerFactory, tmp_path: Path) -> None:
    live, _ = _seeded(server_factory)
    files = _files(tmp_path, live)
    (spec,) = of_type(run_in_process("spec"), "SPEC")
    connection = spec["spec"]["connectionSpecification"]
    assert connection["required"] == ["deployment_url", "access_key"]
    assert connection["properties"]["access_key"]["airbyte_secret"] is True

    (status,) = of_type(run_in_process("check", "--config", str(files.config())), "CONNECTION_STATUS")
    assert status["connectionStatus"] == {"status": "SUCCEEDED"}

    streams = {(s.get("namespace"), s["name"]): s for s in _discover(files)}
    # Root tables keep their bare names (no namespace); component tables are namespaced by their path.
    assert set(streams) == {(None, "users"), ("waitlist", "entries"), ("cron/inner", "jobs")}
    users = streams[(None, "users")]
    assert users["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert users["source_defined_cursor"] is True and users["default_cursor_field"] == ["_ts"]
    assert users["source_defined_primary_key"] == [["_id"]]
    props = users["json_schema"]["properties"]
    assert props["_ab_cdc_lsn"] == {"type": "number"}
    assert props["_ab_cdc_updated_at"] == {"type": "string"}
    assert props["_ab_cdc_deleted_at"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert props["big"] == {"type": "integer"}  # Int64: an exact JSON integer
    assert props["b"]["contentEncoding"] == "base64"  # Bytes
    assert users["json_schema"]["additionalProperties"] is True

    only_app = catalog_streams(run_in_process("discover", "--config", str(files.config(components=[""]))))
    assert [(s.get("namespace"), s["name"]) for s in only_app] == [(None, "users")]


def test_incremental_with_changes_and_resume_from_every_state(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    live, ids = _seeded(server_factory)
    dep = live.deployment
    files = _files(tmp_path, live)
    catalog = files.catalog(_discover(files))

    first = _read(files, catalog)
    replica = Replica().apply(first)
    assert replica.contents() == airbyte_truth(dep)
    records = of_type(first, "RECORD")
    # Null fields are kept (CDK 7's serializer would drop them) and values are exact.
    some = next(r["record"]["data"] for r in records if r["record"]["stream"] == "users")
    assert "none" in some and some["none"] is None and some["_ab_cdc_deleted_at"] is None
    special = next(r["record"]["data"] for r in records if r["record"]["data"].get("big") == -(2**63))
    assert (special["n"], special["f"], special["b"]) == ("NaN", "Infinity", "")
    assert special["_ab_cdc_lsn"] == special["_ts"] and isinstance(special["_ab_cdc_updated_at"], str)
    assert {r["record"].get("namespace") for r in records} == {None, "waitlist", "cron/inner"}

    # Every state covers exactly the records before it: its recordCount, and a resume from it converges.
    count = 0
    for m in first:
        if m["type"] == "RECORD":
            count += 1
        elif m["type"] == "STATE":
            assert m["state"]["sourceStats"]["recordCount"] == count
            count = 0
    assert count == 0

    mutate(dep, ids, random.Random(7), rounds=2)
    second = _read(files, catalog, latest_states(first))
    deletes = [r for r in of_type(second, "RECORD") if r["record"]["data"]["_ab_cdc_deleted_at"] is not None]
    assert deletes and all(r["record"]["data"]["_deleted"] is True for r in deletes)
    assert len(of_type(second, "RECORD")) < len(records)  # only the changes
    replica.apply(second)
    assert replica.contents() == airbyte_truth(dep)

    # Resume from every state of the second run, with the replica as it stood at that state.
    prefix: list[dict[str, Any]] = list(first)
    states_so_far = latest_states(first)
    for i, m in enumerate(second):
        if m["type"] != "STATE":
            continue
        upto = prefix + second[: i + 1]
        by_stream = {(s["stream"]["stream_descriptor"]["name"]): s for s in states_so_far}
        by_stream[m["state"]["stream"]["stream_descriptor"]["name"]] = {
            "type": "STREAM",
            "stream": m["state"]["stream"],
        }
        states_so_far = list(by_stream.values())
        resumed = _read(files, catalog, states_so_far)
        assert Replica().apply(upto).apply(resumed).contents() == airbyte_truth(dep)


def test_full_refresh_resumes_and_restarts(server_factory: ServerFactory, tmp_path: Path) -> None:
    live, _ = _seeded(server_factory)
    files = _files(tmp_path, live)
    catalog = files.catalog([s for s in _discover(files) if s["name"] == "users"], mode="full_refresh")
    full = _read(files, catalog)
    assert Replica().apply(full).contents()[USERS] == airbyte_truth(live.deployment)[USERS]
    states = [s["stream"]["stream_state"] for s in stream_states(full)]
    assert [s["snapshot_has_more"] for s in states] == [True, True, False]  # 24 documents, pages of 10
    assert states[-1]["delta_cursor"] == states[0]["delta_cursor"]  # one snapshot throughout

    # Interrupted after the first page: the resume reads only the rest of that same snapshot.
    cut = next(i for i, m in enumerate(full) if m["type"] == "STATE")
    resumed = _read(files, catalog, [{"type": "STREAM", "stream": full[cut]["state"]["stream"]}])
    assert len(of_type(resumed, "RECORD")) == 24 - PAGE
    assert (
        Replica().apply(full[: cut + 1]).apply(resumed).contents()[USERS]
        == airbyte_truth(live.deployment)[USERS]
    )

    # A finished full refresh's state starts a new snapshot next time (every document again).
    again = _read(files, catalog, latest_states(full))
    assert len(of_type(again, "RECORD")) == 24


def test_starting_states_empty_and_published_shapes(server_factory: ServerFactory, tmp_path: Path) -> None:
    live, _ = _seeded(server_factory)
    files = _files(tmp_path, live)
    streams = [s for s in _discover(files) if s["name"] == "users"]
    catalog = files.catalog(streams)
    empty = _read(
        files,
        catalog,
        [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {}}}],
    )
    assert len(of_type(empty, "RECORD")) == 24
    # The published connector's initial shape, and its legacy whole-object state.
    published = {"snapshot_cursor": None, "snapshot_has_more": True, "delta_cursor": None}
    shaped = _read(
        files,
        catalog,
        [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": published}}],
    )
    assert len(of_type(shaped, "RECORD")) == 24
    legacy = _read(
        files,
        catalog,
        [{"type": "LEGACY", "data": {"users": latest_states(shaped)[0]["stream"]["stream_state"]}}],
    )
    assert of_type(legacy, "RECORD") == []
    # A state of another shape is refused with what to do.
    with pytest.raises(Exception, match="Reset the stream's state"):
        _read(
            files,
            catalog,
            [
                {
                    "type": "STREAM",
                    "stream": {
                        "stream_descriptor": {"name": "users"},
                        "stream_state": {"snapshot_has_more": "yes"},
                    },
                }
            ],
        )


def test_expired_change_cursor_restarts_from_a_snapshot(
    server_factory: ServerFactory, tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    retention = 3600 * SECOND
    live, ids = _seeded(
        server_factory, retention_ns=retention, snapshot_max_age_ns=600 * SECOND, clock_ns=fake_clock
    )
    files = _files(tmp_path, live)
    catalog = files.catalog(_discover(files))
    first = _read(files, catalog)
    mutate(live.deployment, ids, random.Random(3))
    fake_clock.advance(retention + SECOND)
    with caplog.at_level("WARNING", logger="airbyte"):
        second = _read(files, catalog, latest_states(first))
    assert "cursor has expired" in caplog.text and "InvalidWindowToReadDocuments" in caplog.text
    # The restart re-reads every table from a new snapshot: the replica is right even without the first run.
    assert Replica().apply(second).contents() == airbyte_truth(live.deployment)


def test_cdk_read_interface_yields_typed_messages(server_factory: ServerFactory, tmp_path: Path) -> None:
    """``SourceConvex.read`` (what in-process CDK callers use) gives the same records as typed messages."""
    import logging

    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, Type

    live, _ = _seeded(server_factory)
    files = _files(tmp_path, live)
    catalog = ConfiguredAirbyteCatalogSerializer.load(
        __import__("json").loads(files.catalog(_discover(files)).read_text())
    )
    config = {"deployment_url": live.url, "access_key": live.export_key}
    messages = list(SourceConvex().read(logging.getLogger("airbyte"), config, catalog, []))
    assert sum(1 for m in messages if m.type == Type.RECORD) == 24 + 14 + 3
    assert any(m.type == Type.STATE for m in messages)


@pytest.mark.parametrize("backend_kind", ["sqlite"], indirect=True)
def test_console_script_end_to_end_and_clear_failures(server_factory: ServerFactory, tmp_path: Path) -> None:
    live, ids = _seeded(server_factory)
    files = _files(tmp_path, live)
    spec = run_script(OUR_SCRIPT, "spec")
    assert spec.returncode == 0 and of_type(spec.messages, "SPEC")
    config = files.config()
    check = run_script(OUR_SCRIPT, "check", "--config", str(config))
    assert of_type(check.messages, "CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    discover = run_script(OUR_SCRIPT, "discover", "--config", str(config))
    catalog = files.catalog(catalog_streams(discover.messages))
    first = run_script(OUR_SCRIPT, "read", "--config", str(config), "--catalog", str(catalog))
    assert first.returncode == 0, first.stderr
    mutate(live.deployment, ids, random.Random(11))
    state = files.state(latest_states(first.messages))
    second = run_script(
        OUR_SCRIPT, "read", "--config", str(config), "--catalog", str(catalog), "--state", str(state)
    )
    assert second.returncode == 0, second.stderr
    assert Replica().apply(first.messages).apply(second.messages).contents() == airbyte_truth(live.deployment)

    def failed_check(path: Path) -> str:
        result = run_script(OUR_SCRIPT, "check", "--config", str(path))
        (status,) = of_type(result.messages, "CONNECTION_STATUS")
        assert status["connectionStatus"]["status"] == "FAILED", result
        return status["connectionStatus"]["message"]

    bad_key = Files(tmp_path, live.url, "prod:nope|" + "x" * 40)
    assert "Check `access_key`" in failed_check(bad_key.config())
    import_only = Files(tmp_path, live.url, live.import_key)
    assert "access key" in failed_check(import_only.config())
    unreachable = Files(tmp_path, f"http://127.0.0.1:{unused_port()}", live.export_key)
    message = failed_check(unreachable.config())
    assert "Could not reach" in message and "Check `deployment_url`" in message
    typo = Files(tmp_path, "htps://127.0.0.1:1", live.export_key)
    assert "`deployment_url`" in failed_check(typo.config())
    assert "x" * 40 not in (failed_check(bad_key.config()))

    # A read with a bad key fails with a TRACE error that says what to fix, and a non-zero exit code.
    broken = run_script(OUR_SCRIPT, "read", "--config", str(bad_key.config()), "--catalog", str(catalog))
    assert broken.returncode != 0
    traces = [
        m["trace"]["error"]["message"]
        for m in of_type(broken.messages, "TRACE")
        if m["trace"]["type"] == "ERROR"
    ]
    assert traces and "Check `access_key`" in traces[0]
    assert "x" * 40 not in str(broken.messages) + broken.stderr
