"""The Fivetran source connector end to end: our HTTP server on loopback (SQLite and PostgreSQL), the
connector's gRPC server on loopback, and a real gRPC client playing Fivetran (fivetran-source.md §8)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
import orjson
import pytest

from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.fivetran.server import ServerSettings, create_server
from connectors.sync import fivetran_state
from connectors.typemap.fivetran import FivetranTimestamp, fivetran_row
from fivetran_source.records import EXPIRED_CURSOR_HINT
from fivetran_source.runner import SyncRunner
from fivetran_source.service import APP_COMPONENT_MESSAGE, SourceConnector, SourceOptions, register
from fivetran_source.warehouse import Warehouse
from protos import common_pb2, connector_sdk_pb2, connector_sdk_pb2_grpc
from tests.conformance.clients import current_documents, write
from tests.integration.conftest import LiveServer, ServerFactory
from tests.integration.faults import Fault, FaultProxy

PAGE = 10
Key = tuple[str, str]  # (schema, table)


# --- the connector and a Fivetran-like client ----------------------------------------------------------------


@dataclass
class Update:
    responses: list[connector_sdk_pb2.UpdateResponse]

    @property
    def kinds(self) -> list[str]:
        return [str(r.WhichOneof("operation")) for r in self.responses]

    @property
    def records(self) -> list[Any]:
        out: list[Any] = []
        for r in self.responses:
            if r.WhichOneof("operation") == "records":
                out.extend(r.records.records)
            elif r.WhichOneof("operation") == "record":
                out.append(r.record)
        return out

    @property
    def checkpoints(self) -> list[str]:
        return [r.checkpoint.state_json for r in self.responses if r.WhichOneof("operation") == "checkpoint"]

    @property
    def task(self) -> str | None:
        tasks = [r.task.message for r in self.responses if r.WhichOneof("operation") == "task"]
        assert len(tasks) <= 1
        if tasks:
            assert self.kinds[-1] == "task", "the stream ends after the Task"
        return tasks[0] if tasks else None

    def events(self) -> list[tuple[str, Any]]:
        """("record", record) and ("checkpoint", state_json) in stream order."""
        out: list[tuple[str, Any]] = []
        for r in self.responses:
            kind = r.WhichOneof("operation")
            if kind == "records":
                out.extend(("record", rec) for rec in r.records.records)
            elif kind == "record":
                out.append(("record", r.record))
            elif kind == "checkpoint":
                out.append(("checkpoint", r.checkpoint.state_json))
        return out


class Connector:
    def __init__(self, url: str, key: str, options: SourceOptions | None = None) -> None:
        self.configuration = {"url": url, "key": key}
        service = SourceConnector(options or SourceOptions())
        self.bound = create_server(ServerSettings(port=0, max_workers=4), register(service), ("127.0.0.1",))
        self.bound.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.bound.port}")
        self.stub = connector_sdk_pb2_grpc.SourceConnectorStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.bound.server.stop(None).wait()

    def update(
        self,
        state_json: str | None = None,
        selection: connector_sdk_pb2.Selection | None = None,
        configuration: Mapping[str, str] | None = None,
    ) -> Update:
        request = connector_sdk_pb2.UpdateRequest(configuration=configuration or self.configuration)
        if state_json is not None:
            request.state_json = state_json
        if selection is not None:
            request.selection.CopyFrom(selection)
        return Update(list(self.stub.Update(request)))

    def schema(self, configuration: Mapping[str, str] | None = None) -> connector_sdk_pb2.SchemaResponse:
        return self.stub.Schema(
            connector_sdk_pb2.SchemaRequest(configuration=configuration or self.configuration)
        )

    def test(self, configuration: Mapping[str, str]) -> common_pb2.TestResponse:
        return self.stub.Test(common_pb2.TestRequest(name="connection", configuration=configuration))


@pytest.fixture
def live(server_factory: ServerFactory) -> LiveServer:
    return server_factory.start(
        DeploymentConfig(background=False, snapshot_page_limit=PAGE, deltas_page_limit=PAGE)
    )


@pytest.fixture
def connector(live: LiveServer) -> Iterator[Connector]:
    c = Connector(live.url, live.export_key)
    yield c
    c.close()


# --- a destination replica with Fivetran's semantics ---------------------------------------------------------


def plain(value: common_pb2.ValueType) -> Any:
    member = value.WhichOneof("inner")
    if member == "utc_datetime":
        return ("utc_datetime", value.utc_datetime.seconds, value.utc_datetime.nanos)
    return (member, getattr(value, member))


@dataclass
class Replica:
    """Live rows per (schema, table): UPSERT replaces, DELETE removes, TRUNCATE removes rows synced before."""

    tables: dict[Key, dict[str, dict[str, Any]]] = field(default_factory=dict)
    truncated: list[Key] = field(default_factory=list)

    def apply(self, records: list[Any]) -> Replica:
        for rec in records:
            key = (rec.schema_name, rec.table_name)
            table = self.tables.setdefault(key, {})
            if rec.type == common_pb2.TRUNCATE:
                assert not rec.data
                table.clear()
                self.truncated.append(key)
            elif rec.type == common_pb2.DELETE:
                assert set(rec.data) == {"_id"}
                table.pop(rec.data["_id"].string, None)
            else:
                assert rec.type == common_pb2.UPSERT
                table[rec.data["_id"].string] = {k: plain(v) for k, v in rec.data.items()}
        return self

    def contents(self) -> dict[Key, dict[str, dict[str, Any]]]:
        return {k: v for k, v in self.tables.items() if v}


def expected(dep: Deployment, tables: list[tuple[str, str]]) -> dict[Key, dict[str, dict[str, Any]]]:
    """What Fivetran must hold: every live document converted by the type map."""
    out: dict[Key, dict[str, dict[str, Any]]] = {}
    for component, table in tables:
        docs = current_documents(dep, table, component)
        if not docs:
            continue
        rows = {}
        for doc_id, doc in docs.items():
            row = {}
            for name, fv in fivetran_row(doc).items():
                v = fv.value
                row[name] = (
                    ("utc_datetime", v.seconds, v.nanos)
                    if isinstance(v, FivetranTimestamp)
                    else (fv.member, v)
                )
            rows[doc_id] = row
        out[(component or "app", table)] = rows
    return out


def seed(dep: Deployment, users: int = 29, entries: int = 31) -> None:
    write(
        dep,
        "users",
        [{"name": f"u{i}", "age": i, "blob": bytes([i]), "tags": [i, "x"]} for i in range(users)],
    )
    write(
        dep, "entries", [{"email": f"e{i}@x", "score": i / 3} for i in range(entries)], component="waitlist"
    )


TABLES = [("", "users"), ("waitlist", "entries"), ("", "posts")]


# --- ConfigurationForm, Test, Schema -------------------------------------------------------------------------


def test_configuration_form(connector: Connector) -> None:
    form = connector.stub.ConfigurationForm(common_pb2.ConfigurationFormRequest())
    assert form.schema_selection_supported and form.table_selection_supported
    url, key = form.fields
    assert (url.name, url.label, url.required, url.text_field) == (
        "url",
        "Deployment URL",
        True,
        common_pb2.PlainText,
    )
    assert url.placeholder == "https://aware-llama-900.convex.cloud"
    assert url.description.startswith("The domain where the deployment is hosted.")
    assert (key.name, key.label, key.required, key.text_field) == (
        "key",
        "Deploy Key",
        True,
        common_pb2.Password,
    )
    assert not key.HasField("placeholder") and not key.HasField("default_value")
    assert [(t.name, t.label) for t in form.tests] == [("connection", "Test connection")]


def test_test_rpc(connector: Connector, live: LiveServer) -> None:
    assert connector.test({"url": live.url, "key": live.export_key}).success
    assert connector.test({"key": "k"}).failure == "Missing url"
    assert (
        connector.test({"url": "aware lalama convex", "key": "k"}).failure == "Invalid url (must be an URL)"
    )
    assert (
        connector.test({"url": live.url + "/api/", "key": "k"}).failure
        == "Invalid deploy URL: must be a root URL."
    )
    assert connector.test({"url": live.url}).failure == "Missing key"
    wrong = connector.test({"url": live.url, "key": "prod:nope|0123456789abcdef"}).failure
    assert wrong.startswith(
        f"Call to test_streaming_export_connection on {live.url}/ returned an unsuccessful response: "
    )
    assert "Check the Deploy Key" in wrong and "0123456789abcdef" not in wrong


def test_schema_components_and_types(connector: Connector, live: LiveServer) -> None:
    seed(live.deployment, 3, 2)
    write(live.deployment, "mixed", [{"v": 1}, {"v": "s"}])
    response = connector.schema()
    assert response.HasField("selection_not_supported") and not response.selection_not_supported
    schemas = {s.name: {t.name: t for t in s.tables} for s in response.with_schema.schemas}
    assert set(schemas) == {"app", "waitlist"}
    users = {c.name: c for c in schemas["app"]["users"].columns}
    assert users["_id"].type == common_pb2.STRING and users["_id"].primary_key
    assert users["_creationTime"].type == common_pb2.UTC_DATETIME and not users["_creationTime"].primary_key
    assert users["name"].type == common_pb2.STRING
    assert users["age"].type == common_pb2.LONG  # Python ints are Int64
    assert users["blob"].type == common_pb2.BINARY
    assert users["tags"].type == common_pb2.JSON
    assert not any(c.HasField("params") for c in users.values())
    assert {c.name: c.type for c in schemas["app"]["mixed"].columns}["v"] == common_pb2.UNSPECIFIED
    entries = {c.name: c.type for c in schemas["waitlist"]["entries"].columns}
    assert entries["email"] == common_pb2.STRING


def test_schema_refuses_a_component_named_app(connector: Connector, live: LiveServer) -> None:
    write(live.deployment, "things", [{"a": 1}], component="app")
    with pytest.raises(grpc.RpcError) as err:
        connector.schema()
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == APP_COMPONENT_MESSAGE


# --- initial sync ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [29, 30, 31])
def test_initial_sync_pages(connector: Connector, live: LiveServer, count: int) -> None:
    seed(live.deployment, users=count, entries=count)
    update = connector.update()
    assert update.task is None
    events = update.events()
    # TRUNCATE before each table's first row; checkpoints only after records of their page.
    first: dict[Key, str] = {}
    for kind, rec in events:
        if kind == "record":
            first.setdefault((rec.schema_name, rec.table_name), common_pb2.RecordType.Name(rec.type))
    assert first == {("app", "users"): "TRUNCATE", ("waitlist", "entries"): "TRUNCATE"}
    assert events[0][0] == "record", "no checkpoint before the first page"
    pages = -(-count // PAGE) * 2  # a full last page may be followed by an empty one
    states = [orjson.loads(s) for s in update.checkpoints]
    assert pages <= len(states) <= pages + 2
    assert all("InitialSync" in s["checkpoint"] for s in states[:-1])
    assert states[-1]["checkpoint"] == {
        "DeltaUpdates": {"cursor": states[-2]["checkpoint"]["InitialSync"]["snapshot"]}
    }
    assert states[-1]["tablesSeen"] == ["users", "waitlist/entries"]
    assert update.kinds[-1] == "checkpoint", "the stream ends after the final checkpoint"
    assert Replica().apply(update.records).contents() == expected(live.deployment, TABLES)
    # Batching: several records per message, never more than 100.
    sizes = [len(r.records.records) for r in update.responses if r.WhichOneof("operation") == "records"]
    assert max(sizes) > 1 and all(n <= 100 for n in sizes)


def test_empty_source(connector: Connector, live: LiveServer) -> None:
    update = connector.update()
    assert update.records == [] and len(update.checkpoints) == 1
    state = fivetran_state.parse(update.checkpoints[0])
    assert state is not None and state.snapshot_done and state.delta_cursor is not None
    assert orjson.loads(update.checkpoints[0])["tablesSeen"] == []


def test_single_records_mode_sends_the_same_records_one_per_message(live: LiveServer) -> None:
    seed(live.deployment, 12, 3)
    batched = Connector(live.url, live.export_key)
    single = Connector(live.url, live.export_key, SourceOptions(single_records=True))
    try:
        a, b = batched.update(), single.update()
    finally:
        batched.close()
        single.close()
    assert set(b.kinds) == {"record", "checkpoint"}
    assert [r.SerializeToString() for r in a.records] == [r.SerializeToString() for r in b.records]
    assert len(a.checkpoints) == len(b.checkpoints)


class CountingRelay:
    """A TCP relay on loopback that counts the bytes the server sends: what goes over the wire, after gRPC's
    compression (a gRPC client only ever sees messages decompressed)."""

    def __init__(self, upstream_port: int) -> None:
        import socket
        import threading

        self.downstream_bytes = 0
        self._upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        accept = threading.Thread(target=self._accept, name="counting-relay", daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._upstream_port))
            self._sockets += [client, server]
            for src, dst, counted in ((client, server, False), (server, client, True)):
                t = threading.Thread(
                    target=self._pump, args=(src, dst, counted), name="relay-pump", daemon=True
                )
                t.start()
                self._threads.append(t)

    def _pump(self, src: Any, dst: Any, counted: bool) -> None:
        import contextlib

        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if counted:
                    with self._lock:
                        self.downstream_bytes += len(data)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(1)  # SHUT_WR: pass the end of the stream on

    def close(self) -> None:
        import contextlib
        import socket

        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in self._threads:
            t.join(timeout=5)


@pytest.mark.parametrize("gzip_update", [False, True])
def test_the_update_stream_is_gzipped_only_when_asked(live: LiveServer, gzip_update: bool) -> None:
    write(live.deployment, "notes", [{"text": "the same words again " * 20, "n": i / 2} for i in range(200)])
    service = SourceConnector(SourceOptions(gzip_update=gzip_update))
    bound = create_server(ServerSettings(port=0, max_workers=4), register(service), ("127.0.0.1",))
    bound.server.start()
    relay = CountingRelay(bound.port)
    try:
        # The request is gzipped either way (Fivetran's v1 tester did that): it is always accepted.
        with grpc.insecure_channel(f"127.0.0.1:{relay.port}", compression=grpc.Compression.Gzip) as channel:
            stub = connector_sdk_pb2_grpc.SourceConnectorStub(channel)
            request = connector_sdk_pb2.UpdateRequest(configuration={"url": live.url, "key": live.export_key})
            responses = list(stub.Update(request))
    finally:
        bound.server.stop(None).wait()
        relay.close()
    update = Update(responses)
    assert update.task is None and len(update.records) == 201  # TRUNCATE and 200 rows
    payload = sum(r.ByteSize() for r in responses)
    if gzip_update:
        assert relay.downstream_bytes < payload // 4
    else:
        assert relay.downstream_bytes > payload


# --- resume, faults, deltas ----------------------------------------------------------------------------------


def test_resume_from_every_checkpoint_loses_nothing(connector: Connector, live: LiveServer) -> None:
    seed(live.deployment, 25, 21)
    full = connector.update()
    events = full.events()
    want = expected(live.deployment, TABLES)
    for index, (kind, state_json) in enumerate(events):
        if kind != "checkpoint" or "DeltaUpdates" in state_json:
            continue
        # Fivetran received everything up to this checkpoint, then the sync failed.
        before = [rec for k, rec in events[:index] if k == "record"]
        resumed = connector.update(state_json)
        assert resumed.task is None
        replica = Replica().apply(before).apply(resumed.records)
        assert replica.contents() == want
        assert resumed.checkpoints[-1] == full.checkpoints[-1]


def test_a_source_failing_half_of_the_calls_converges_by_retrying_from_checkpoints(live: LiveServer) -> None:
    seed(live.deployment, 23, 17)
    with FaultProxy(live.url, [Fault.PASS, Fault.BAD_GATEWAY] * 40) as proxy:
        c = Connector(proxy.url, live.export_key, SourceOptions(client_retries=0))
        try:
            replica, state, tasks = Replica(), None, 0
            for _ in range(60):
                update = c.update(state)
                replica.apply(update.records)
                if update.checkpoints:
                    state = update.checkpoints[-1]
                if update.task is None:
                    break
                assert update.task.startswith("Call to list_snapshot on ")
                tasks += 1
        finally:
            c.close()
    assert tasks > 0 and state is not None and "DeltaUpdates" in state
    assert replica.contents() == expected(live.deployment, TABLES)


def test_deltas_apply_inserts_patches_and_deletes(connector: Connector, live: LiveServer) -> None:
    seed(live.deployment, 12, 5)
    initial = connector.update()
    replica = Replica().apply(initial.records)
    state = initial.checkpoints[-1]
    dep = live.deployment
    users = sorted(current_documents(dep, "users"))
    entries = sorted(current_documents(dep, "entries", "waitlist"))
    with dep.transaction() as tx:
        for i in range(14):
            tx.insert("users", {"name": f"new{i}", "age": 100 + i})
        tx.patch(users[0], {"name": "patched"})
        tx.delete(users[1])
        tx.delete(entries[0], "waitlist")
        tx.insert("entries", {"email": "late@x"}, "waitlist")
    delta = connector.update(state)
    assert delta.task is None
    deletes = [r for r in delta.records if r.type == common_pb2.DELETE]
    assert sorted(r.data["_id"].string for r in deletes) == sorted([users[1], entries[0]])
    assert all(set(r.data) == {"_id"} for r in deletes)
    patched = [r for r in delta.records if r.type == common_pb2.UPSERT and r.data["_id"].string == users[0]]
    assert patched and set(patched[-1].data) >= {"_id", "_creationTime", "name", "age", "tags"}
    assert not any(r.type == common_pb2.TRUNCATE for r in delta.records)
    # A checkpoint after every page (17 changes, 10 per page), each a DeltaUpdates state.
    assert len(delta.checkpoints) >= 2
    assert all("DeltaUpdates" in s for s in delta.checkpoints)
    assert replica.apply(delta.records).contents() == expected(dep, TABLES)
    # A parallel fresh full sync yields the same destination contents.
    assert Replica().apply(connector.update().records).contents() == replica.contents()
    # A quiet deployment: one checkpoint, the cursor never goes back.
    quiet = connector.update(delta.checkpoints[-1])
    assert quiet.records == [] and len(quiet.checkpoints) == 1
    old = orjson.loads(delta.checkpoints[-1])["checkpoint"]["DeltaUpdates"]["cursor"]
    assert orjson.loads(quiet.checkpoints[0])["checkpoint"]["DeltaUpdates"]["cursor"] >= old


def test_new_table_in_deltas_is_truncated_first_and_legacy_state_never_truncates(
    connector: Connector, live: LiveServer
) -> None:
    seed(live.deployment, 3, 2)
    state = connector.update().checkpoints[-1]
    write(live.deployment, "posts", [{"title": "t"}])
    delta = connector.update(state)
    posts = [r for r in delta.records if r.table_name == "posts"]
    assert [r.type for r in posts] == [common_pb2.TRUNCATE, common_pb2.UPSERT]
    assert orjson.loads(delta.checkpoints[-1])["tablesSeen"] == ["posts", "users", "waitlist/entries"]
    legacy = orjson.loads(state)
    del legacy["tablesSeen"]
    again = connector.update(orjson.dumps(legacy).decode())
    assert [r.type for r in again.records if r.table_name == "posts"] == [common_pb2.UPSERT]
    assert orjson.loads(again.checkpoints[-1])["tablesSeen"] is None


def test_resync_from_empty_state_truncates_each_table(connector: Connector, live: LiveServer) -> None:
    seed(live.deployment, 5, 5)
    replica = Replica().apply(connector.update().records)
    dep = live.deployment
    for doc_id in list(current_documents(dep, "users"))[:3]:
        with dep.transaction() as tx:
            tx.delete(doc_id)
    resync = connector.update()
    replica.apply(resync.records)
    assert sorted(replica.truncated) == sorted([("app", "users"), ("waitlist", "entries")] * 2)
    assert replica.contents() == expected(dep, TABLES)


# --- selection --------------------------------------------------------------------------------------------


def selection(
    *schemas: connector_sdk_pb2.SchemaSelection, new_schemas: bool = False
) -> connector_sdk_pb2.Selection:
    return connector_sdk_pb2.Selection(
        with_schema=connector_sdk_pb2.TablesWithSchema(schemas=list(schemas), include_new_schemas=new_schemas)
    )


def test_table_column_and_component_selection(connector: Connector, live: LiveServer) -> None:
    seed(live.deployment, 4, 3)
    write(live.deployment, "posts", [{"title": "t"}])
    only_users = selection(
        connector_sdk_pb2.SchemaSelection(
            schema_name="app",
            included=True,
            tables=[
                connector_sdk_pb2.TableSelection(
                    table_name="users", included=True, columns={"age": False}, include_new_columns=True
                ),
                connector_sdk_pb2.TableSelection(table_name="posts", included=False),
            ],
        )
    )
    update = connector.update(selection=only_users)
    assert {(r.schema_name, r.table_name) for r in update.records} == {("app", "users")}
    assert all(
        "age" not in r.data and "name" in r.data for r in update.records if r.type == common_pb2.UPSERT
    )
    # Root excluded, new schemas included: only component tables.
    components = selection(
        connector_sdk_pb2.SchemaSelection(schema_name="app", included=False), new_schemas=True
    )
    update = connector.update(selection=components)
    assert {(r.schema_name, r.table_name) for r in update.records} == {("waitlist", "entries")}
    without = connector_sdk_pb2.Selection(without_schema=connector_sdk_pb2.TablesWithNoSchema())
    assert (
        connector.update(selection=without).task
        == "Fivetran unexpectedly sent a selection setting without a schema."
    )


def test_selection_changes_are_not_retroactive(connector: Connector, live: LiveServer) -> None:
    seed(live.deployment, 4, 3)
    narrow = selection(
        connector_sdk_pb2.SchemaSelection(
            schema_name="app",
            included=True,
            tables=[
                connector_sdk_pb2.TableSelection(table_name="users", included=True, include_new_columns=True)
            ],
        )
    )
    initial = connector.update(selection=narrow)
    replica = Replica().apply(initial.records)
    assert set(replica.contents()) == {("app", "users")}
    wide = selection(
        connector_sdk_pb2.SchemaSelection(schema_name="app", included=True, include_new_tables=True),
        new_schemas=True,
    )
    quiet = connector.update(initial.checkpoints[-1], selection=wide)
    assert quiet.records == [], "widening does not backfill"
    write(live.deployment, "entries", [{"email": "after@x"}], component="waitlist")
    later = connector.update(quiet.checkpoints[-1], selection=wide)
    assert [(r.table_name, r.type) for r in later.records] == [
        ("entries", common_pb2.TRUNCATE),
        ("entries", common_pb2.UPSERT),
    ]
    # Narrowing again: nothing is deleted for the tables no longer selected.
    write(live.deployment, "entries", [{"email": "ignored@x"}], component="waitlist")
    narrowed = connector.update(later.checkpoints[-1], selection=narrow)
    assert narrowed.records == []


# --- errors as one Task -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state_json", "start"),
    [
        ("{not json", "The connector state is not valid JSON"),
        ('{"a":"b"}', "Unknown key 'a' in the state"),
        (
            '{"version":1,"checkpoint":{"InitialSync":{"snapshot":42,"cursor":"abc123"}}}',
            "This Fivetran connection was created with an old version of the Convex connector. To continue "
            "syncing, a full historical resync is required.",
        ),
        ('{"version":2,"checkpoint":{"InitialSync":{"snapshot":1,"cursor":"c","x":1}}}', "Unknown key 'x'"),
    ],
)
def test_bad_state_is_a_task(connector: Connector, state_json: str, start: str) -> None:
    update = connector.update(state_json)
    assert update.kinds == ["task"]
    assert update.task is not None and update.task.startswith(start)


def test_expired_cursors_are_one_task_asking_for_a_resync(connector: Connector, live: LiveServer) -> None:
    seed(live.deployment, 3, 0)
    old_snapshot = '{"version":2,"checkpoint":{"InitialSync":{"snapshot":1000,"cursor":"x"}},"tablesSeen":[]}'
    update = connector.update(old_snapshot)
    assert update.kinds == ["task"] and update.task is not None and update.task.endswith(EXPIRED_CURSOR_HINT)
    old_cursor = '{"version":2,"checkpoint":{"DeltaUpdates":{"cursor":1000}},"tablesSeen":[]}'
    update = connector.update(old_cursor)
    assert update.kinds == ["task"] and update.task is not None and update.task.endswith(EXPIRED_CURSOR_HINT)


def test_configuration_errors_are_a_task(connector: Connector) -> None:
    assert connector.update(configuration={"url": "ftp://x/", "key": "k"}).task == (
        "Invalid deploy URL: must be a root URL."
    )


# --- the local sync runner -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".duckdb", ".sqlite"])
def test_runner_warehouse_equals_the_deployment(live: LiveServer, tmp_path: Any, suffix: str) -> None:
    dep = live.deployment
    seed(dep, 14, 6)
    path = tmp_path / f"out{suffix}"
    runner = SyncRunner(url=live.url, key=live.export_key, warehouse=path)
    first = runner.run()
    assert sum(first.rows.values()) == 20 and first.truncates == 2
    users = sorted(current_documents(dep, "users"))
    with dep.transaction() as tx:
        tx.patch(users[0], {"name": "patched", "age": "now a string"})
        tx.delete(users[1])
        tx.insert("users", {"name": "new", "extra": True})
    runner.run()  # the change sync, from the saved state
    second = runner.run()  # nothing changed: nothing applied
    assert sum(second.rows.values()) == 0 and second.deletes == 0
    warehouse = Warehouse(path, {})
    try:
        rows = {r["_id"]: r for r in warehouse.rows("app", "users")}
        entries = warehouse.rows("waitlist", "entries")
    finally:
        warehouse.close()
    live_docs = current_documents(dep, "users")
    assert {i for i, r in rows.items() if not r["_fivetran_deleted"]} == set(live_docs)
    assert rows[users[1]]["_fivetran_deleted"]
    assert len(entries) == 6 and not any(r["_fivetran_deleted"] for r in entries)
    assert rows[users[0]]["name"] == "patched" and rows[users[0]]["age"] == "now a string"
    new = next(r for r in rows.values() if r["name"] == "new")
    assert new["extra"] in (True, 1) and new["age"] is None
    for doc_id, doc in live_docs.items():
        row = rows[doc_id]
        assert row["name"] == doc["name"]
        created = row["_creationTime"]
        created = created if not isinstance(created, str) else datetime.fromisoformat(created)
        assert created.timestamp() == pytest.approx(doc["_creationTime"] / 1000, abs=1e-6)
        if "tags" in doc:
            assert orjson.loads(row["tags"]) == [str(t) if isinstance(t, int) else t for t in doc["tags"]]
        if "blob" in doc:
            assert bytes(row["blob"]) == doc["blob"]


def test_runner_syncs_only_the_chosen_tables_and_components(live: LiveServer, tmp_path: Any) -> None:
    from fivetran_source.runner import RunnerError

    dep = live.deployment
    seed(dep, 5, 4)
    write(dep, "users", [{"name": "in a component"}], component="waitlist")

    def synced(name: str, **choice: tuple[str, ...]) -> dict[str, int]:
        summary = SyncRunner(url=live.url, key=live.export_key, warehouse=tmp_path / name, **choice).run()
        return summary.rows

    assert synced("all.sqlite") == {"app.users": 5, "waitlist.entries": 4, "waitlist.users": 1}
    assert synced("users.sqlite", tables=("users",)) == {"app.users": 5, "waitlist.users": 1}
    assert synced("app_users.sqlite", tables=("app.users",)) == {"app.users": 5}
    assert synced("waitlist.sqlite", components=("waitlist",)) == {"waitlist.entries": 4, "waitlist.users": 1}
    assert synced("both.sqlite", components=("waitlist",), tables=("users",)) == {"waitlist.users": 1}
    with pytest.raises(RunnerError, match="No table 'nope' in the chosen components"):
        synced("bad.sqlite", tables=("nope",))
    with pytest.raises(RunnerError, match="No table 'entries' in component 'app'"):
        synced("bad.sqlite", tables=("app.entries",))
    with pytest.raises(RunnerError, match="No component 'elsewhere'.*'app', 'waitlist'"):
        synced("bad.sqlite", components=("elsewhere",))


# --- state compatibility with Convex's connector ---------------------------------------------------------------


def reference_state(checkpoint: dict[str, Any], tables_seen: list[str] | None) -> str:
    """The state JSON as Convex's connector (serde, struct field order, compact) writes it."""
    if "InitialSync" in checkpoint:
        inner = checkpoint["InitialSync"]
        body = (
            f'{{"InitialSync":{{"snapshot":{inner["snapshot"]},'
            f'"cursor":{orjson.dumps(inner["cursor"]).decode()}}}}}'
        )
    else:
        body = f'{{"DeltaUpdates":{{"cursor":{checkpoint["DeltaUpdates"]["cursor"]}}}}}'
    seen = "null" if tables_seen is None else orjson.dumps(sorted(tables_seen)).decode()
    return f'{{"version":2,"checkpoint":{body},"tablesSeen":{seen}}}'


def test_states_move_between_our_connector_and_convexs(connector: Connector, live: LiveServer) -> None:
    seed(live.deployment, 12, 4)
    full = connector.update()
    for state_json in full.checkpoints:
        parsed = orjson.loads(state_json)
        assert set(parsed) == {"version", "checkpoint", "tablesSeen"}
        # Byte-identical to what the reference writes for the same position.
        assert state_json == reference_state(parsed["checkpoint"], parsed["tablesSeen"])
    # The reverse: a state written by the reference (here: its exact layout, and its legacy form without
    # tablesSeen) resumes in ours without a re-sync.
    middle = orjson.loads(full.checkpoints[0])
    resumed = connector.update(reference_state(middle["checkpoint"], middle["tablesSeen"]))
    assert resumed.task is None and "DeltaUpdates" in resumed.checkpoints[-1]
    cursor = orjson.loads(full.checkpoints[-1])["checkpoint"]["DeltaUpdates"]["cursor"]
    legacy = f'{{"version":2,"checkpoint":{{"DeltaUpdates":{{"cursor":{cursor}}}}}}}'
    delta = connector.update(legacy)
    assert delta.task is None and orjson.loads(delta.checkpoints[-1])["tablesSeen"] is None


def test_a_cancelled_update_stops_its_producer(connector: Connector, live: LiveServer) -> None:
    import threading
    import time

    seed(live.deployment, 60, 0)
    request = connector_sdk_pb2.UpdateRequest(configuration=connector.configuration)
    stream = connector.stub.Update(request)
    first = next(stream)
    assert first.WhichOneof("operation") == "records"
    stream.cancel()
    deadline = time.monotonic() + 10
    while any(t.name == "fivetran-update" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "fivetran-update" for t in threading.enumerate())

    # Nor may the gRPC worker that served the call stay parked in Update waiting for the producer (seen in CI:
    # it kept the test process from exiting).
    def serving_update() -> bool:
        for frame in sys._current_frames().values():
            while frame is not None:
                if frame.f_code.co_name == "Update" and frame.f_code.co_filename.endswith("service.py"):
                    return True
                frame = frame.f_back
        return False

    while serving_update() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not serving_update()
