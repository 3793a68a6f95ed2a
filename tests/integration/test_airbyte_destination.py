"""``destination-convex`` (airbyte/destination-convex) against the live server on loopback: through the CDK
entrypoint in-process (``run_cmd`` with the messages on stdin) and as the installed console script."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalogSerializer,
    FailureType,
    Status,
    Type,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from destination_convex import DestinationConvex
from destination_convex.writer import IndexPolling

from connectors.backend.engine import Deployment
from connectors.client import ClientConfig, ConvexClient
from connectors.sync import TableRef
from tests.integration.conftest import LiveServer, ServerFactory
from tests.integration.faults import Fault, FaultProxy
from tests.integration.test_sync_live import seed

SCRIPT = Path(sys.executable).parent / "destination-convex"
FAST_POLLING = IndexPolling(timeout_s=30, first_s=0.01, max_s=0.2)


# --- helpers ---------------------------------------------------------------------------------------------


def docs(dep: Deployment, table: str) -> list[dict[str, Any]]:
    info = dep.find_table(table)
    if info is None:
        return []
    return [d.value() for d in dep.iter_snapshot(info)]


def user_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}


def config_of(live: LiveServer, key: str | None = None, url: str | None = None) -> dict[str, str]:
    return {"deployment_url": url or live.url, "access_key": key or live.import_key}


def stream(
    name: str,
    mode: str = "append",
    *,
    namespace: str | None = None,
    primary_key: list[list[str]] | None = None,
) -> dict[str, Any]:
    s: dict[str, Any] = {"name": name, "json_schema": {"type": "object", "properties": {}},
                         "supported_sync_modes": ["full_refresh", "incremental"]}
    if namespace:
        s["namespace"] = namespace
    return {
        "stream": s,
        "sync_mode": "incremental" if mode != "overwrite" else "full_refresh",
        "destination_sync_mode": mode,
        **({"primary_key": primary_key} if primary_key else {}),
    }


def record(name: str, data: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"stream": name, "data": data, "emitted_at": 1}
    if namespace:
        r["namespace"] = namespace
    return {"type": "RECORD", "record": r}


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "state": {"type": "LEGACY", "data": {"n": n}}}


def catalog_of(*streams: dict[str, Any]) -> dict[str, Any]:
    return {"streams": list(streams)}


def run_in_process(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: dict[str, Any],
    catalog: dict[str, Any],
    messages: list[dict[str, Any]],
    destination: DestinationConvex | None = None,
) -> list[AirbyteMessage]:
    """The CDK entrypoint's ``write`` in this process: config and catalog files, messages on stdin."""
    dest = destination or DestinationConvex(index_polling=FAST_POLLING)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    stdin = b"".join(orjson.dumps(m) + b"\n" for m in messages)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    args = dest.parse_args(
        ["write", "--config", str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")]
    )
    return list(dest.run_cmd(args))


def run_script(tmp_path: Path, command: list[str], stdin: bytes = b"") -> tuple[list[dict[str, Any]], int]:
    proc = subprocess.run(
        [str(SCRIPT), *command], input=stdin, capture_output=True, timeout=120, cwd=tmp_path
    )
    out = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    return out, proc.returncode


def write_files(tmp_path: Path, config: dict[str, Any], catalog: dict[str, Any] | None = None) -> list[str]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = ["--config", str(tmp_path / "config.json")]
    if catalog is not None:
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))
        args += ["--catalog", str(tmp_path / "catalog.json")]
    return args


def check(config: dict[str, Any]) -> Any:
    return DestinationConvex().check(logging.getLogger("test"), config)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- spec and check ----------------------------------------------------------------------------------------


def test_spec_from_the_console_script(tmp_path: Path) -> None:
    assert shutil.which(str(SCRIPT)), "pip install -e . installs the destination-convex console script"
    out, rc = run_script(tmp_path, ["spec"])
    assert rc == 0
    spec = out[0]["spec"]
    assert spec["supported_destination_sync_modes"] == ["overwrite", "append", "append_dedup"]
    conn = spec["connectionSpecification"]
    assert conn["required"] == ["deployment_url", "access_key"]
    assert conn["properties"]["access_key"]["airbyte_secret"] is True


def test_check_succeeds_and_fails_with_what_to_fix(live_server: LiveServer, tmp_path: Path) -> None:
    assert check(config_of(live_server)).status == Status.SUCCEEDED
    bad_key = check(config_of(live_server, key="prod:nope|bad"))
    assert bad_key.status == Status.FAILED and "rejected the access key" in bad_key.message
    assert "deployment:backups:import" in bad_key.message and "nope" not in bad_key.message
    read_only = check(config_of(live_server, key=live_server.export_key))
    assert read_only.status == Status.FAILED and "deployment:backups:import" in read_only.message
    unreachable = check(config_of(live_server, url=f"http://127.0.0.1:{closed_port()}"))
    assert unreachable.status == Status.FAILED and "Could not reach" in unreachable.message
    typo = check(config_of(live_server, url="htps://example.convex.cloud"))
    assert typo.status == Status.FAILED and "deployment_url" in typo.message and "http" in typo.message
    wrong_path = check(config_of(live_server, url=live_server.url + "/dashboard"))
    assert wrong_path.status == Status.FAILED and "404" in wrong_path.message
    missing = check({"deployment_url": live_server.url})
    assert missing.status == Status.FAILED and "access_key" in missing.message
    # The console script: the same answers as CONNECTION_STATUS messages, exit code 0.
    out, rc = run_script(tmp_path, ["check", *write_files(tmp_path, config_of(live_server))])
    assert rc == 0 and out[-1]["connectionStatus"]["status"] == "SUCCEEDED"
    out, rc = run_script(tmp_path, ["check", *write_files(tmp_path, config_of(live_server, key="wrong"))])
    assert out[-1]["connectionStatus"]["status"] == "FAILED"
    assert "rejected the access key" in out[-1]["connectionStatus"]["message"]


# --- the three modes ---------------------------------------------------------------------------------------


def test_append_echoes_each_state_only_after_its_records_are_committed(live_server: LiveServer) -> None:
    catalog = ConfiguredAirbyteCatalogSerializer.load(catalog_of(stream("events")))
    msgs = [record("events", {"n": i}) for i in range(5)] + [state(1)]
    msgs += [record("events", {"n": i}) for i in range(5, 12)] + [state(2)] + [record("events", {"n": 12})]
    seen: list[tuple[int, int]] = []
    dest = DestinationConvex(max_rows=3)
    for out in dest.write(
        config_of(live_server), catalog, (AirbyteMessageSerializer.load(m) for m in msgs)
    ):
        assert out.type == Type.STATE and out.state is not None
        seen.append((out.state.data["n"], len(docs(live_server.deployment, "events"))))  # type: ignore[union-attr, index]
    # Each state once every record before it is in the table (later ones may be too: one batch in flight).
    assert [n for n, _ in seen] == [1, 2]
    assert seen[0][1] >= 5 and seen[1][1] >= 12
    assert sorted(d["n"] for d in docs(live_server.deployment, "events")) == [float(i) for i in range(13)]


def test_append_twice_and_a_state_echoed_unchanged(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_of(stream("events"))
    msgs = [record("events", {"n": 1, "nested": {"a": [1, {"b": None}]}}), state(7)]
    for _ in range(2):
        out = run_in_process(tmp_path, monkeypatch, config_of(live_server), catalog, msgs)
        assert [AirbyteMessageSerializer.dump(m) for m in out] == [state(7)]
    got = [user_fields(d) for d in docs(live_server.deployment, "events")]
    assert got == [{"n": 1.0, "nested": {"a": [1.0, {"b": None}]}}] * 2


def test_overwrite_clears_exactly_the_namespaced_tables_it_writes(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConvexClient(ClientConfig(live_server.url, live_server.import_key)) as client:
        from connectors.client import AirbyteMessage as Msg
        from connectors.client import AirbyteStream

        for table in ("shop_users", "users", "other"):
            client.import_airbyte_records(
                {table: AirbyteStream(None, {})}, [Msg(table, {"old": True}), Msg(table, {"old": True})]
            )
    catalog = catalog_of(stream("users", "overwrite", namespace="shop"), stream("fresh", "overwrite"))
    msgs = [record("users", {"new": 1}, "shop"), record("fresh", {"new": 2}), state(1)]
    out = run_in_process(tmp_path, monkeypatch, config_of(live_server), catalog, msgs)
    assert len(out) == 1
    dep = live_server.deployment
    assert [user_fields(d) for d in docs(dep, "shop_users")] == [{"new": 1.0}]
    assert [user_fields(d) for d in docs(dep, "fresh")] == [{"new": 2.0}]
    # The bare stream name (what the published connector clears) and unrelated tables are untouched.
    assert len(docs(dep, "users")) == 2 and len(docs(dep, "other")) == 2
    # A second overwrite replaces again.
    run_in_process(tmp_path, monkeypatch, config_of(live_server), catalog, [record("users", {"new": 3}, "shop")])
    assert [user_fields(d) for d in docs(dep, "shop_users")] == [{"new": 3.0}]
    assert docs(dep, "fresh") == []


def test_append_dedup_upserts_and_applies_cdc_deletes(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_of(stream("items", "append_dedup", namespace="ns", primary_key=[["key"]]))
    first = [
        record("items", {"key": "key1", "value": "value1"}, "ns"),
        record("items", {"key": "key1", "value": "value2"}, "ns"),
        record("items", {"key": "key2", "value": "value1"}, "ns"),
        record("items", {"key": "key3", "value": "value1", "_ab_cdc_deleted_at": None}, "ns"),
        state(1),
        record("items", {"key": "key3", "_ab_cdc_deleted_at": "2026-01-01T00:00:00Z"}, "ns"),
        state(2),
    ]
    out = run_in_process(tmp_path, monkeypatch, config_of(live_server), catalog, first)
    assert len(out) == 2
    got = sorted((d["key"], d["value"]) for d in docs(live_server.deployment, "ns_items"))
    assert got == [("key1", "value2"), ("key2", "value1")]
    second = [
        record("items", {"key": "key2", "value": "changed", "_ab_cdc_updated_at": "x"}, "ns"),
        record("items", {"key": "key1", "_ab_cdc_deleted_at": "2026-01-02T00:00:00Z"}, "ns"),
        record("items", {"key": "key4", "value": "new"}, "ns"),
    ]
    run_in_process(tmp_path, monkeypatch, config_of(live_server), catalog, second)
    got_docs = sorted((user_fields(d) for d in docs(live_server.deployment, "ns_items")), key=lambda d: d["key"])
    assert got_docs == [{"key": "key2", "value": "changed"}, {"key": "key4", "value": "new"}]


def test_batches_are_bounded_by_bytes(live_server: LiveServer) -> None:
    from destination_convex.writer import Writer, plan_tables

    plans = plan_tables([("big", None, "append", None, {})])
    with ConvexClient(ClientConfig(live_server.url, live_server.import_key)) as client:
        writer = Writer(client, plans, body_limit=64 * 1024)
        for i in range(40):
            writer.record("big", None, {"i": i, "blob": "x" * 5000})
        writer.close()
        assert writer.rows_written == 40 and writer.batches_written >= 4
    assert len(docs(live_server.deployment, "big")) == 40


# --- errors ------------------------------------------------------------------------------------------------


def _traced(exc_info: pytest.ExceptionInfo[AirbyteTracedException]) -> AirbyteTracedException:
    return exc_info.value


def test_record_of_a_missing_stream_fails_after_committing_what_came_before(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_of(stream("events"))
    msgs = [record("events", {"n": 1}), state(1), record("events", {"n": 2}), record("ghost", {"secret": "s3"})]
    with pytest.raises(AirbyteTracedException) as info:
        run_in_process(tmp_path, monkeypatch, config_of(live_server), catalog, msgs)
    err = _traced(info)
    assert err.failure_type == FailureType.config_error
    assert "stream 'ghost'" in str(err) and "not in the configured catalog" in str(err)
    assert "s3" not in str(err) and live_server.import_key not in str(err.internal_message)
    assert [d["n"] for d in docs(live_server.deployment, "events")] == [1.0]


def test_missing_primary_key_value_is_a_clear_error(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_of(stream("items", "append_dedup", primary_key=[["key"]]))
    msgs = [record("items", {"key": "a"}), record("items", {"value": "private"})]
    with pytest.raises(AirbyteTracedException) as info:
        run_in_process(tmp_path, monkeypatch, config_of(live_server), catalog, msgs)
    message = str(_traced(info))
    assert "Record #2" in message and "stream 'items'" in message and "'key'" in message
    assert "private" not in message


@pytest.mark.parametrize(
    ("streams", "expected"),
    [
        ([stream("x" * 80)], "cannot be made a valid Convex table name"),
        ([stream("items", "append_dedup")], "has no primary key"),
        ([stream("items", "append_dedup", primary_key=[["_id"]])], "which Convex cannot index"),
        ([stream("a b"), stream("a-b")], "would both write the Convex table 'source_a_b'"),
    ],
)
def test_rejected_names_and_keys_fail_before_anything_is_written(
    live_server: LiveServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    streams: list[dict[str, Any]],
    expected: str,
) -> None:
    with pytest.raises(AirbyteTracedException) as info:
        run_in_process(tmp_path, monkeypatch, config_of(live_server), catalog_of(*streams), [state(1)])
    assert expected in str(_traced(info)) and _traced(info).failure_type == FailureType.config_error


def test_bad_key_and_unreachable_server_fail_the_write_clearly(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_of(stream("events", "overwrite"))
    with pytest.raises(AirbyteTracedException) as info:
        run_in_process(tmp_path, monkeypatch, config_of(live_server, key="bad"), catalog, [state(1)])
    assert "rejected the access key" in str(_traced(info))
    assert _traced(info).failure_type == FailureType.config_error


def test_a_dropped_append_batch_is_not_retried_and_its_state_not_echoed(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = catalog_of(stream("events"))
    msgs = [record("events", {"n": 1}), state(1), record("events", {"n": 2}), state(2)]
    with FaultProxy(live_server.url, [Fault.PASS, Fault.DROP]) as proxy:
        echoed: list[Any] = []
        dest = DestinationConvex()
        catalog_obj = ConfiguredAirbyteCatalogSerializer.load(catalog)
        with pytest.raises(AirbyteTracedException) as info:
            for out in dest.write(
                config_of(live_server, url=proxy.url), catalog_obj, (AirbyteMessageSerializer.load(m) for m in msgs)
            ):
                echoed.append(out.state.data)  # type: ignore[union-attr]
        assert len(proxy.request_lines) == 2  # the dropped batch was not sent again
    assert echoed == [{"n": 1}]
    assert "not retried, so no record is written twice" in str(_traced(info))
    assert sorted(d["n"] for d in docs(live_server.deployment, "events")) == [1.0, 2.0]  # each once


def test_a_dropped_dedup_batch_is_retried_and_converges(live_server: LiveServer) -> None:
    with ConvexClient(ClientConfig(live_server.url, live_server.import_key)) as client:
        client.add_primary_key_indexes({"items": [["key"]]})
        client.wait_for_primary_key_indexes(["items"], timeout_s=10, poll_interval_s=0.05)
    catalog = ConfiguredAirbyteCatalogSerializer.load(
        catalog_of(stream("items", "append_dedup", primary_key=[["key"]]))
    )
    msgs = [record("items", {"key": k, "v": 1}) for k in "abc"] + [state(1)]
    # add_primary_key_indexes, primary_key_indexes_ready (ready at once), then the batch: dropped.
    with FaultProxy(live_server.url, [Fault.PASS, Fault.PASS, Fault.DROP]) as proxy:
        out = list(
            DestinationConvex(index_polling=FAST_POLLING).write(
                config_of(live_server, url=proxy.url), catalog, (AirbyteMessageSerializer.load(m) for m in msgs)
            )
        )
        assert len(proxy.request_lines) == 4
    assert len(out) == 1
    assert sorted(d["key"] for d in docs(live_server.deployment, "items")) == ["a", "b", "c"]


# --- as the installed console script ------------------------------------------------------------------------


def test_console_script_writes_and_echoes_states(live_server: LiveServer, tmp_path: Path) -> None:
    catalog = catalog_of(stream("events", "append_dedup", primary_key=[["id"]]))
    msgs = [record("events", {"id": i, "v": "x"}) for i in range(50)] + [state(1)]
    msgs += [record("events", {"id": 3, "v": "y"}), state(2)]
    stdin = b"".join(orjson.dumps(m) + b"\n" for m in msgs)
    out, rc = run_script(tmp_path, ["write", *write_files(tmp_path, config_of(live_server), catalog)], stdin)
    assert rc == 0
    assert [m["state"]["data"] for m in out if m["type"] == "STATE"] == [{"n": 1}, {"n": 2}]
    got = {d["id"]: d["v"] for d in docs(live_server.deployment, "events")}
    assert len(got) == 50 and got[3.0] == "y"
    # A missing stream from the script: a TRACE error message and a non-zero exit code.
    bad = b"".join(orjson.dumps(m) + b"\n" for m in [record("nope", {"a": 1})])
    out, rc = run_script(tmp_path, ["write", *write_files(tmp_path, config_of(live_server), catalog)], bad)
    assert rc != 0
    errors = [m["trace"]["error"] for m in out if m["type"] == "TRACE"]
    assert errors and "not in the configured catalog" in errors[0]["message"]
    assert errors[0]["failure_type"] == "config_error"


# --- round trip: our source reads deployment A, our destination writes deployment B ------------------------


def test_round_trip_from_deployment_a_to_deployment_b(
    server_factory: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from source_convex.entrypoint import launch

    from tests.airbyte_source_helpers import Files, airbyte_truth, catalog_streams, of_type, parse_lines

    a, b = server_factory.start(), server_factory.start()
    seed(a.deployment, {TableRef("", "things"): 5, TableRef("cron/inner", "jobs"): 3})
    with a.deployment.transaction() as tx:
        tx.insert("things", {"n": math.nan, "inf": -math.inf, "i64": 2**53 - 1, "neg": -(2**31), "none": None,
                             "b": b"\x00\xffbinary", "nested": {"list": [], "obj": {"k": None}}})

    def source(*argv: str) -> list[dict[str, Any]]:
        out = io.BytesIO()
        launch(list(argv), out=out)
        return parse_lines(out.getvalue())

    src = tmp_path / "source"
    src.mkdir()
    files = Files(src, a.url, a.export_key)
    streams = catalog_streams(source("discover", "--config", str(files.config())))
    read = source("read", "--config", str(files.config()), "--catalog", str(files.catalog(streams, "full_refresh")))
    messages = of_type(read, "RECORD") + [m for m in read if m["type"] == "STATE"]
    dest_catalog = catalog_of(*({"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}
                                for s in streams))
    dest = tmp_path / "dest"
    dest.mkdir()
    ordered = [m for m in read if m["type"] in ("RECORD", "STATE")]
    assert len(messages) == len(ordered)
    out = run_in_process(dest, monkeypatch, config_of(b), dest_catalog, ordered)
    assert [AirbyteMessageSerializer.dump(m) for m in out] == [m for m in ordered if m["type"] == "STATE"]

    truth = airbyte_truth(a.deployment)  # A's documents as Airbyte JSON (Int64 integers, Bytes base64, "NaN")
    # The component table is the stream "jobs" in namespace "cron/inner": table "cron/inner_jobs", which the
    # server's identifier rule stores as "source_cron_inner_jobs".
    for ref, table in ((TableRef("", "things"), "things"), (TableRef("cron/inner", "jobs"), "source_cron_inner_jobs")):
        got = {}
        for doc in docs(b.deployment, table):
            # Airbyte's metadata columns arrive renamed by the server (_id -> source_id, ...); CDC ones dropped.
            assert not any(k.startswith("source_ab_cdc") for k in doc)
            content = {k: v for k, v in doc.items() if not k.startswith(("_", "source_"))}
            got[doc["source_id"]] = {**content, "_creationTime": doc["source_creationtime"]}
        expected = {i: {k: v for k, v in d.items() if k != "_id"} for i, d in truth[ref].items()}
        assert got.keys() == expected.keys()
        for doc_id, want in expected.items():
            have = got[doc_id]
            # Every JSON number is stored as a Float64 (streaming-import.md §5): an Int64 arrives as the
            # Float64 nearest to it, exact up to 2^53, rounded beyond ("big" is 2^62 + i).
            if "big" in want:
                assert have.pop("big") == float(want.pop("big"))
            assert have == want, doc_id
    specials = next(d for d in docs(b.deployment, "things") if "inf" in d)
    assert specials["n"] == "NaN" and specials["inf"] == "-Infinity"
    assert specials["i64"] == 2**53 - 1 and base64.b64decode(specials["b"]) == b"\x00\xffbinary"
    assert specials["nested"] == {"list": [], "obj": {"k": None}}


# --- the README's example, pasted as written -----------------------------------------------------------------


def test_readme_destination_example_works_when_pasted(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", readme, flags=re.S) if "destination-convex write" in b
                and "docker" not in b]
    port = str(closed_port())
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the environment running the tests, as .venv
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", block.replace("3211", port)], cwd=tmp_path,
                                stdout=out, stderr=err, start_new_session=True)
        try:
            proc.wait(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    text = (tmp_path / "out").read_text()
    assert proc.returncode == 0, (text, (tmp_path / "err").read_text())
    assert '"status":"SUCCEEDED"' in text
    assert '{"type":"STATE","state":{"type":"LEGACY","data":{"cursor":1}}}' in text
    assert "[{'email': 'ada@example.com', 'name': 'Ada Lovelace'}]" in text
