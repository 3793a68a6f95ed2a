"""Deploy keys, authentication, the ``Convex-Client`` header, routing errors, logging hygiene and the CLI.

Auth rules: streaming-export.md §2.1 and streaming-import.md §2.1.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from click.testing import CliRunner

from connectors import keys
from connectors.backend import export
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.cli import StoreLocation, main
from connectors.keys import KeyKind, Operation
from connectors.server.app import ServerConfig
from tests.integration.conftest import LiveServer, ServerFactory

INTERNAL = {"code": "InternalServerError", "message": "Your request couldn't be completed. Try again later."}
BAD_DEPLOY_KEY = (
    "The provided deploy key was invalid for this deployment. Double check that the environment this key was "
    "generated for matches the desired deployment."
)
BAD_ADMIN_KEY = "The provided admin key was invalid for this instance"
NOW_ISH = 1_900_000_000_000_000_000  # a cursor inside retention (the server clamps nothing for it)

TABLE_DEFINITION = {
    "tableName": "books",
    "indexes": [{"indexDescriptor": "_fivetran_by_primary_key", "fields": ["id"]}],
}

# (method, path, request kwargs) for every export and import call, each valid when authorized.
EXPORT_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/test_streaming_export_connection", {}),
    ("GET", "/api/list_snapshot", {"params": {"format": "json"}}),
    ("POST", "/api/list_snapshot", {"json": {}}),
    ("GET", "/api/json_schemas", {"params": {"deltaSchema": "true"}}),
    ("GET", "/api/get_table_column_names", {}),
    ("GET", "/api/get_tables_and_columns", {}),
]
IMPORT_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/streaming_import/import_airbyte_records", {"json": {"tables": {}, "messages": []}}),
    ("PUT", "/api/streaming_import/clear_tables", {"json": {"tableNames": []}}),
    ("PUT", "/api/streaming_import/add_primary_key_indexes", {"json": {"indexes": {}}}),
    ("GET", "/api/streaming_import/primary_key_indexes_ready", {"json": {"tables": []}}),
    ("POST", "/api/streaming_import/apply_fivetran_operations", {"json": []}),
    ("POST", "/api/streaming_import/fivetran_create_table", {"json": {"tableDefinition": TABLE_DEFINITION}}),
    (
        "POST",
        "/api/streaming_import/fivetran_truncate_table",
        {"json": {"tableName": "missing", "deleteBefore": None, "deleteType": "SoftDelete"}},
    ),
    ("GET", "/api/streaming_import/get_schema", {}),
]


def raw(
    live: LiveServer, method: str, path: str, headers: dict[str, Any] | None = None, **kwargs: Any
) -> requests.Response:
    """A request with exactly these headers (no default Authorization)."""
    return requests.request(method, live.url + path, headers=headers or {}, timeout=30, **kwargs)


def assert_error(resp: requests.Response, status: int, code: str, message: str | None = None) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    err = orjson.loads(resp.content)
    assert err["code"] == code, err
    if message is not None:
        assert err["message"] == message, err


def deltas_calls(live: LiveServer) -> list[tuple[str, str, dict[str, Any]]]:
    now = live.deployment.read_timestamp()
    return [
        ("GET", "/api/document_deltas", {"params": {"cursor": str(now)}}),
        ("POST", "/api/document_deltas", {"json": {"cursor": now}}),
    ]


# --- keys (domain) -------------------------------------------------------------------------------------------


def test_keys_issue_and_verify() -> None:
    secret = b"s" * 32
    for kind in KeyKind:
        key = keys.issue_key(secret, kind)
        assert key.startswith(f"{kind.value}:local|")
        assert keys.verify_key(secret, key) is kind
        assert keys.issue_key(secret, kind) != key  # random nonce
    admin = keys.issue_key(secret, "admin", name="ci-runner")
    payload = admin.rpartition("|")[2]
    # A real-looking type prefix, no prefix, or surrounding whitespace: the payload decides.
    for spelling in (f"prod:happy-animal-123|{payload}", payload, f"export:x|{payload}", f" {admin} "):
        assert keys.verify_key(secret, spelling) is KeyKind.ADMIN
    # Tampering with any payload character, or another secret, fails.
    for i in range(len(payload)):
        flipped = "A" if payload[i] != "A" else "B"
        assert keys.verify_key(secret, payload[:i] + flipped + payload[i + 1 :]) is None
    assert keys.verify_key(b"t" * 32, admin) is None
    for garbage in (
        "",
        "|",
        "admin|",
        "admin:local|" + "A" * 67,
        payload + "=",
        payload[:-1],
        payload + "A",
        "x" * 500,
    ):
        assert keys.verify_key(secret, garbage) is None
    assert keys.verify_key(secret, None) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        keys.issue_key(secret, "admin", name="has space")
    with pytest.raises(ValueError):
        keys.issue_key(secret, "root")


def test_key_permissions() -> None:
    assert keys.allows(KeyKind.ADMIN, Operation.VIEW_DATA) and keys.allows(
        KeyKind.ADMIN, Operation.IMPORT_BACKUPS
    )
    assert keys.allows(KeyKind.EXPORT, Operation.VIEW_DATA) and not keys.allows(
        KeyKind.EXPORT, Operation.IMPORT_BACKUPS
    )
    assert keys.allows(KeyKind.IMPORT, Operation.IMPORT_BACKUPS) and not keys.allows(
        KeyKind.IMPORT, Operation.VIEW_DATA
    )


def test_instance_secret_is_created_once_and_persisted(deployment_factory: Any) -> None:
    dep: Deployment = deployment_factory.open()
    secret = keys.instance_secret(dep)
    assert len(secret) == 32 and keys.instance_secret(dep) == secret
    dep.close()
    again = deployment_factory.open()
    assert keys.instance_secret(again) == secret


# --- the auth matrix -----------------------------------------------------------------------------------------


def test_auth_matrix(live_server: LiveServer) -> None:
    live = live_server
    other_secret_key = keys.issue_key(b"x" * 32, KeyKind.ADMIN)
    groups = [
        (EXPORT_CALLS + deltas_calls(live), "ViewData", live.export_key, live.import_key),
        (IMPORT_CALLS, "ImportBackups", live.import_key, live.export_key),
    ]
    for calls, action, right_key, wrong_key in groups:
        for method, path, kwargs in calls:
            where = f"{method} {path}"
            assert_error(raw(live, method, path, **kwargs), 403, "BadDeployKey", BAD_DEPLOY_KEY)
            for bad in (other_secret_key, "garbage", live.admin_key[:-2]):
                resp = raw(live, method, path, {"Authorization": f"Convex {bad}"}, **kwargs)
                assert_error(resp, 401, "BadAdminKey", BAD_ADMIN_KEY)
            resp = raw(live, method, path, {"Authorization": f"Convex {wrong_key}"}, **kwargs)
            assert_error(
                resp,
                403,
                "OperationNotPermitted",
                f"You do not have permission to perform this operation ({action}).",
            )
            for key in (right_key, live.admin_key):
                resp = raw(live, method, path, {"Authorization": f"Convex {key}"}, **kwargs)
                assert resp.status_code == 200, (where, resp.text)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "api"),
    [
        ("POST", "/api/list_snapshot", {"json": {}}, "export"),
        ("GET", "/api/json_schemas", {}, "export"),
        ("PUT", "/api/streaming_import/clear_tables", {"json": {"tableNames": []}}, "import"),
    ],
)
def test_authorization_header_forms(
    live_server: LiveServer, method: str, path: str, kwargs: dict[str, Any], api: str
) -> None:
    live = live_server
    payload = live.admin_key.rpartition("|")[2]

    def call(header: str | bytes) -> requests.Response:
        return raw(live, method, path, {"Authorization": header}, **kwargs)

    # The scheme is compared case-insensitively; a real-looking type prefix is stripped.
    for header in (
        f"Convex {live.admin_key}",
        f"CONVEX {live.admin_key}",
        f"cOnVeX {live.admin_key}",
        f"Convex prod:happy-animal-123|{payload}",
    ):
        assert call(header).status_code == 200, header
    assert_error(call("Conv"), 400, "InvalidHeaderFailure")
    assert_error(call("Convex"), 400, "InvalidHeaderFailure")
    assert_error(call(b"Convex \xff\xfe\x80"), 400, "HeaderParseFailure")
    # Trailing whitespace is not part of a header value (HTTP strips it), so this is "Convex": too short.
    assert_error(call("Convex "), 400, "InvalidHeaderFailure")
    assert_error(call("Convex x"), 401, "BadAdminKey")
    assert_error(
        call(f"Convex{live.admin_key}"),
        403 if api == "export" else 400,
        "BadDeployKey" if api == "export" else "InvalidAdminKey",
    )
    # Bearer is a user identity: never accepted here.
    assert_error(call("Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"), 403, "BadDeployKey", BAD_DEPLOY_KEY)
    if api == "export":
        assert_error(call("Basic dXNlcjpwYXNz"), 403, "BadDeployKey", BAD_DEPLOY_KEY)
    else:
        assert_error(call("Basic dXNlcjpwYXNz"), 400, "InvalidAdminKey", "Invalid admin key")


def test_admin_key_query_parameter(live_server: LiveServer) -> None:
    live = live_server
    resp = raw(live, "GET", "/api/list_snapshot", params={"adminKey": live.export_key, "format": "json"})
    assert resp.status_code == 200 and orjson.loads(resp.content)["values"] == []
    resp = raw(live, "POST", "/api/list_snapshot", params={"adminKey": live.admin_key}, json={})
    assert resp.status_code == 200
    resp = raw(
        live,
        "PUT",
        "/api/streaming_import/clear_tables",
        params={"adminKey": live.import_key},
        json={"tableNames": []},
    )
    assert resp.status_code == 200 and resp.content == b""
    assert_error(
        raw(live, "GET", "/api/list_snapshot", params={"adminKey": live.import_key}),
        403,
        "OperationNotPermitted",
    )
    assert_error(raw(live, "GET", "/api/list_snapshot", params={"adminKey": "nope"}), 401, "BadAdminKey")
    assert_error(raw(live, "GET", "/api/list_snapshot", params={"adminKey": ""}), 403, "BadDeployKey")
    # Only camelCase, and only without an Authorization header (the header wins).
    assert_error(
        raw(live, "GET", "/api/list_snapshot", params={"admin_key": live.admin_key}), 403, "BadDeployKey"
    )
    resp = raw(
        live,
        "GET",
        "/api/list_snapshot",
        {"Authorization": "Convex nope"},
        params={"adminKey": live.admin_key},
    )
    assert_error(resp, 401, "BadAdminKey")


def test_deployment_name_in_bad_deploy_key(server_factory: ServerFactory) -> None:
    live = server_factory.start(server_config=ServerConfig(deployment_name="happy-animal-123"))
    resp = raw(live, "GET", "/api/streaming_import/get_schema")
    assert_error(
        resp,
        403,
        "BadDeployKey",
        "The provided deploy key was invalid for deployment 'happy-animal-123'. Double check that the environment "
        "this key was generated for matches the desired deployment.",
    )


def test_replace_tables_needs_no_key_but_a_valid_body(live_server: LiveServer) -> None:
    live = live_server
    path = "/api/streaming_import/replace_tables"
    overwrite = "Overwrite sync mode is not supported. Please use a different sync mode."
    for headers in ({}, {"Authorization": "Convex garbage"}, {"Authorization": f"Convex {live.export_key}"}):
        resp = raw(live, "POST", path, headers, json={"tableNames": {"tmp_users": "users"}})
        assert_error(resp, 400, "OverwriteNotSupported", overwrite)
    assert_error(raw(live, "POST", path, json={"tableNames": {"a": 1}}), 400, "BadJsonBody")
    assert_error(raw(live, "POST", path, json={}), 400, "BadJsonBody")
    assert_error(raw(live, "POST", path, data=b'{"tableNames": {}}'), 400, "BadJsonBody")
    assert_error(raw(live, "PUT", path, json={"tableNames": {}}), 405, "MethodNotAllowed")


def test_version_needs_no_key(live_server: LiveServer) -> None:
    for headers in (
        {},
        {"Authorization": "Convex garbage"},
        {"Authorization": f"Convex {live_server.import_key}"},
    ):
        resp = raw(live_server, "GET", "/version", headers)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain")
        assert resp.text == ServerConfig().version and resp.text
    custom = ServerConfig(version="1.2.3-test")
    assert custom.version == "1.2.3-test"


def test_custom_version_string(server_factory: ServerFactory) -> None:
    live = server_factory.start(server_config=ServerConfig(version="9.9.9"))
    assert raw(live, "GET", "/version").text == "9.9.9"


# --- Convex-Client header ------------------------------------------------------------------------------------


def test_convex_client_header(live_server: LiveServer) -> None:
    live = live_server
    targets = [
        ("GET", "/api/list_snapshot", {}),
        ("PUT", "/api/streaming_import/clear_tables", {"json": {"tableNames": []}}),
        ("GET", "/version", {}),
        ("GET", "/api/no_such_route", {}),
    ]
    for method, path, kwargs in targets:
        # Checked before anything else, with or without a key.
        for auth in ({}, live.auth()):
            resp = raw(live, method, path, {**auth, "Convex-Client": "nodash"}, **kwargs)
            assert_error(resp, 400, "InvalidClientVersion")
    for value in (
        "fivetran-export-2.0.2",
        "airbyte-export-0.4.0",
        "airbyte-export-0.2.0",
        "streaming-import-0.1.0",
        "fivetran-import-0.0.1",
        "x-1",
        "some-client-unparsable",
    ):
        resp = raw(live, "GET", "/api/list_snapshot", {**live.auth(), "convex-client": value})
        assert resp.status_code == 200, value
    assert raw(live, "GET", "/api/list_snapshot", live.auth()).status_code == 200  # header absent


# --- routing -------------------------------------------------------------------------------------------------


def test_unknown_routes_and_methods(live_server: LiveServer) -> None:
    live = live_server
    for path in (
        "/api/nope",
        "/api/ingress/import_airbyte_records",
        "/",
        "/api/v1/data/sync",
        "/api/streaming_import/",
    ):
        resp = raw(live, "GET", path, live.auth())
        assert_error(resp, 404, "NotFound")
    for method, path in [
        ("POST", "/api/test_streaming_export_connection"),
        ("POST", "/api/json_schemas"),
        ("PUT", "/api/list_snapshot"),
        ("DELETE", "/api/document_deltas"),
        ("POST", "/api/get_table_column_names"),
        ("GET", "/api/streaming_import/import_airbyte_records"),
        ("GET", "/api/streaming_import/clear_tables"),
        ("POST", "/api/streaming_import/clear_tables"),
        ("POST", "/api/streaming_import/add_primary_key_indexes"),
        ("POST", "/api/streaming_import/primary_key_indexes_ready"),
        ("PUT", "/api/streaming_import/apply_fivetran_operations"),
        ("GET", "/api/streaming_import/fivetran_create_table"),
        ("GET", "/api/streaming_import/fivetran_truncate_table"),
        ("POST", "/api/streaming_import/get_schema"),
        ("POST", "/version"),
    ]:
        resp = raw(live, method, path, live.auth(), json={})
        assert_error(resp, 405, "MethodNotAllowed")
        assert resp.headers["allow"], (method, path)


# --- logging hygiene -----------------------------------------------------------------------------------------


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (the client's own urllib3 debug lines do show the URL it requested)."""
    return "\n".join(
        r.getMessage() + (r.exc_text or "")
        for r in caplog.records
        if r.name.startswith(("connectors", "uvicorn", "starlette"))
    )


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def test_access_log_has_no_query_string(live_server: LiveServer, captured: pytest.LogCaptureFixture) -> None:
    live = live_server
    assert raw(live, "GET", "/api/list_snapshot", params={"adminKey": live.admin_key}).status_code == 200
    assert (
        raw(live, "GET", "/api/list_snapshot", {"Authorization": f"Convex {live.admin_key}x"}).status_code
        == 401
    )
    # The access line is written after the response went out: give the server thread a moment.
    deadline = time.monotonic() + 5
    while True:
        access = [r.getMessage() for r in captured.records if r.name == "connectors.server.access"]
        if len(access) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    text = server_log(captured)
    assert any(line.startswith("GET /api/list_snapshot 200 ") for line in access), access
    assert any(line.startswith("GET /api/list_snapshot 401 ") for line in access), access
    payload = live.admin_key.rpartition("|")[2]
    assert payload not in text and "adminKey" not in text


def test_unexpected_errors_are_generic_and_logged_without_data(
    live_server: LiveServer, captured: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_value = "-".join(("123", "45", "6789"))  # not in any source line a traceback could show

    def boom(_: Deployment) -> Any:
        raise RuntimeError(f"document data: ssn={secret_value}")

    monkeypatch.setattr(export, "table_column_names", boom)
    resp = raw(live_server, "GET", "/api/get_table_column_names", params={"adminKey": live_server.admin_key})
    assert resp.status_code == 500 and orjson.loads(resp.content) == INTERNAL
    text = server_log(captured)
    assert "RuntimeError" in text and "/api/get_table_column_names" in text
    assert "123-45-6789" not in text and live_server.admin_key.rpartition("|")[2] not in text
    assert "Exception in ASGI application" not in text  # nothing escaped to uvicorn


# --- CLI -----------------------------------------------------------------------------------------------------


def test_keygen_prints_keys_that_the_server_accepts(tmp_path: Path) -> None:
    runner = CliRunner()
    data_dir = tmp_path / "data"
    Deployment.open(data_dir=data_dir, config=DeploymentConfig(background=False)).close()  # as `serve` would
    printed = {}
    for kind in ("admin", "export", "import"):
        result = runner.invoke(main, ["keygen", "--data-dir", str(data_dir), "--kind", kind])
        assert result.exit_code == 0, result.output
        printed[kind] = result.output.strip()
        assert re.fullmatch(rf"{kind}:{kind}-[0-9a-f]{{8}}\|[A-Za-z0-9_-]{{67}}", printed[kind])
    default = runner.invoke(main, ["keygen", "--data-dir", str(data_dir)])
    assert default.output.startswith("admin:admin-")
    named = runner.invoke(main, ["keygen", "--data-dir", str(data_dir), "--name", "ci-runner"])
    assert named.output.startswith("admin:ci-runner|")
    dep = Deployment.open(data_dir=data_dir, config=DeploymentConfig(background=False))
    try:
        ring = keys.KeyRing(keys.KeyRegistry(dep))
        assert {k: ring.verify(v) for k, v in printed.items()} == {k: KeyKind(k) for k in printed}
    finally:
        dep.close()


def test_cli_option_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    both = runner.invoke(main, ["keygen", "--data-dir", str(tmp_path), "--db", "postgresql://u@h/db"])
    assert both.exit_code == 2 and "either --data-dir or --db" in both.output
    wrong = runner.invoke(main, ["keygen", "--db", "mysql://h/db"])
    assert wrong.exit_code == 2 and "postgresql://" in wrong.output
    kind = runner.invoke(main, ["keygen", "--data-dir", str(tmp_path), "--kind", "root"])
    assert kind.exit_code == 2
    unreachable = runner.invoke(main, ["keygen", "--db", "postgresql://u:hunter2@127.0.0.1:1/db"])
    assert (
        unreachable.exit_code == 1 and "hunter2" not in unreachable.output and "u:***@" in unreachable.output
    )
    port = runner.invoke(main, ["serve", "--data-dir", str(tmp_path), "--port", "70000"])
    assert port.exit_code == 2
    days = runner.invoke(main, ["serve", "--data-dir", str(tmp_path), "--retention-days", "0"])
    assert days.exit_code == 2
    assert StoreLocation.from_options(None, None).data_dir == Path("convex_data")


def _serve_once(data_dir: Path) -> tuple[str, str | None, list[str]]:
    """Run ``convex-connectors serve --port 0`` until it prints its banner: (url, admin key, lines)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connectors.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            "--log-level",
            "warning",
        ],  # noqa: E501
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Make deploy keys"):
                break
        url = lines[0].rpartition(" ")[2]
        key = next((line.strip() for line in lines if line.startswith("  admin:")), None)
        if key is not None:
            resp = requests.get(
                f"{url}/api/test_streaming_export_connection",
                headers={"Authorization": f"Convex {key}"},
                timeout=10,
            )  # noqa: E501
            assert resp.status_code == 200 and resp.content == b"null"
        assert requests.get(f"{url}/version", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0  # SIGTERM is a graceful shutdown, the deployment closed cleanly
    return url, key, lines


def test_serve_shows_the_admin_key_on_first_start_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "served"
    url, key, lines = _serve_once(data_dir)
    assert url.startswith("http://127.0.0.1:") and key is not None, lines
    _, second_key, second_lines = _serve_once(data_dir)
    assert second_key is None, second_lines
    assert any("keygen --data-dir" in line for line in second_lines)
