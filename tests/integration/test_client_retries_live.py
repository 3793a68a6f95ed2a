"""Retries that never write twice, against the real server (SQLite and PostgreSQL) behind a proxy that
lets the server commit and then loses or replaces its answer (``faults.FaultProxy``)."""

from __future__ import annotations

import socket

import pytest

from connectors.client import (
    AirbyteMessage,
    AirbyteStream,
    AmbiguousWriteError,
    ClientConfig,
    ConvexClient,
)
from connectors.errors import FatalError, Reaction
from tests.integration.conftest import LiveServer
from tests.integration.faults import Fault, FaultProxy

APPEND = {"events": AirbyteStream(primary_key=None, json_schema={})}
DEDUP = {"events": AirbyteStream(primary_key=[["key"]], json_schema={})}
RECORDS = [AirbyteMessage("events", {"key": k, "v": i}) for i, k in enumerate("abc")]


def client_via(url: str, live: LiveServer, sleeps: list[float] | None = None) -> ConvexClient:
    config = ClientConfig(deployment_url=url, deploy_key=live.import_key, max_retries=3, timeout_s=10)
    record = sleeps.append if sleeps is not None else (lambda _s: None)
    return ConvexClient(config, sleep=record, rand=lambda: 0.0)


def keys_in_table(live: LiveServer) -> list[str]:
    dep = live.deployment
    return sorted(str(doc.value()["key"]) for doc in dep.iter_snapshot(dep.table("events")))


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.BAD_GATEWAY])
def test_append_import_is_not_retried_after_the_server_committed(live_server: LiveServer, fault: Fault) -> None:
    with client_via(live_server.url, live_server) as direct:
        direct.clear_tables(["events"])
    with FaultProxy(live_server.url, [fault]) as proxy, client_via(proxy.url, live_server) as client:
        with pytest.raises(AmbiguousWriteError) as info:
            client.import_airbyte_records(APPEND, RECORDS)
        assert len(proxy.request_lines) == 1  # not retried
    assert keys_in_table(live_server) == ["a", "b", "c"]  # each record exactly once
    err = info.value
    assert "may have committed some of these records" in str(err)
    assert "dedup mode" in str(err)
    assert err.reaction is Reaction.FATAL and isinstance(err, FatalError) and not err.retriable
    assert err.status == (502 if fault is Fault.BAD_GATEWAY else 0)
    assert live_server.import_key not in str(err)


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.BAD_GATEWAY])
def test_dedup_import_retry_converges(live_server: LiveServer, fault: Fault) -> None:
    with client_via(live_server.url, live_server) as direct:
        direct.clear_tables(["events"])
        direct.add_primary_key_indexes({"events": [["key"]]})
        direct.wait_for_primary_key_indexes(["events"], timeout_s=10, poll_interval_s=0.05)
    sleeps: list[float] = []
    with FaultProxy(live_server.url, [fault]) as proxy, client_via(proxy.url, live_server, sleeps) as client:
        client.import_airbyte_records(DEDUP, RECORDS)
        assert len(proxy.request_lines) == 2  # the lost answer, then the retry
    assert len(sleeps) == 1
    assert keys_in_table(live_server) == ["a", "b", "c"]


def test_append_import_is_retried_after_connection_refused(live_server: LiveServer) -> None:
    with client_via(live_server.url, live_server) as direct:
        direct.clear_tables(["events"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on `port` at the first attempt (refused before a byte was sent); the proxy starts
    # listening there during the backoff sleep, so the retry reaches the server.
    proxies: list[FaultProxy] = []

    def start_proxy(_delay: float) -> None:
        if not proxies:
            proxies.append(FaultProxy(live_server.url, port=port))

    config = ClientConfig(
        deployment_url=f"http://127.0.0.1:{port}", deploy_key=live_server.import_key, max_retries=3
    )
    try:
        with ConvexClient(config, sleep=start_proxy, rand=lambda: 0.0) as client:
            client.import_airbyte_records(APPEND, RECORDS)
        assert len(proxies) == 1 and len(proxies[0].request_lines) == 1
    finally:
        for proxy in proxies:
            proxy.close()
    assert keys_in_table(live_server) == ["a", "b", "c"]
