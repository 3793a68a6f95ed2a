"""The shared gRPC server bootstrap: real servers on loopback, IPv4 and IPv6, messages over 4 MB both ways,
gzip on the wire, and a graceful SIGTERM of a server process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from connectors.constants import FIVETRAN_GRPC_MAX_MESSAGE_BYTES
from connectors.fivetran.server import (
    IPV4_WILDCARD,
    IPV6_WILDCARD,
    BoundServer,
    PortUnavailableError,
    ServerSettings,
    create_server,
    parse_port_argument,
)
from protos import common_pb2, connector_sdk_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]
BIG = 5 * 1024 * 1024  # over grpcio's 4 MB default receive limit
CLIENT_OPTIONS = [
    ("grpc.max_send_message_length", FIVETRAN_GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", FIVETRAN_GRPC_MAX_MESSAGE_BYTES),
]


class EchoSource(connector_sdk_pb2_grpc.SourceConnectorServicer):
    """ConfigurationForm answers a one-field form; Test answers `failure` = the `payload` entry."""

    def ConfigurationForm(self, request, context):  # noqa: N802  (gRPC method name)
        return common_pb2.ConfigurationFormResponse(
            schema_selection_supported=True,
            fields=[
                common_pb2.FormField(name="url", label="Deployment URL", text_field=common_pb2.PlainText)
            ],
            tests=[common_pb2.ConfigurationTest(name="connection", label="Test connection")],
        )

    def Test(self, request, context):  # noqa: N802
        return common_pb2.TestResponse(failure=request.configuration["payload"])


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def server() -> Iterator[BoundServer]:
    bound = create_server(
        ServerSettings(port=0, max_workers=4, grace_seconds=1),
        lambda s: connector_sdk_pb2_grpc.add_SourceConnectorServicer_to_server(EchoSource(), s),
    )
    bound.server.start()
    try:
        yield bound
    finally:
        bound.server.stop(0).wait()


def stub(target: str, compression: grpc.Compression | None = None):
    channel = grpc.insecure_channel(target, options=CLIENT_OPTIONS, compression=compression)
    return channel, connector_sdk_pb2_grpc.SourceConnectorStub(channel)


def test_binds_the_wildcards(server: BoundServer) -> None:
    assert server.port > 0
    assert server.addresses in ((IPV6_WILDCARD, IPV4_WILDCARD), (IPV4_WILDCARD,))


def test_configuration_form_over_ipv4(server: BoundServer) -> None:
    channel, client = stub(f"127.0.0.1:{server.port}")
    with channel:
        form = client.ConfigurationForm(common_pb2.ConfigurationFormRequest(), timeout=10)
    assert form.fields[0].name == "url"
    assert form.fields[0].WhichOneof("type") == "text_field"
    assert form.tests[0].name == "connection"


def test_configuration_form_over_ipv6(server: BoundServer) -> None:
    if not has_ipv6_loopback():
        pytest.skip("this host has no IPv6 loopback")
    assert server.addresses == (IPV6_WILDCARD, IPV4_WILDCARD)
    channel, client = stub(f"[::1]:{server.port}")
    with channel:
        form = client.ConfigurationForm(common_pb2.ConfigurationFormRequest(), timeout=10)
    assert form.schema_selection_supported


def test_messages_over_4_mb_both_ways(server: BoundServer) -> None:
    payload = os.urandom(BIG // 2).hex()  # incompressible, 5 MiB of text
    channel, client = stub(f"127.0.0.1:{server.port}")
    with channel:
        response = client.Test(common_pb2.TestRequest(name="connection", configuration={"payload": payload}))
    assert response.failure == payload


class ByteCountingProxy:
    """A loopback TCP proxy counting the bytes each way, to see what really crosses the wire."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.to_server = 0
        self.to_client = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, "to_server"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "to_client"), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, counter: str) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def test_gzip_requests_are_accepted_and_responses_compressed(server: BoundServer) -> None:
    payload = "convex " * (BIG // 7)  # highly compressible, 5 MB
    proxy = ByteCountingProxy(server.port)
    try:
        channel, client = stub(f"127.0.0.1:{proxy.port}", compression=grpc.Compression.Gzip)
        with channel:
            response = client.Test(common_pb2.TestRequest(configuration={"payload": payload}), timeout=30)
        assert response.failure == payload
    finally:
        proxy.close()
    # Uncompressed each direction would carry over 5 MB.
    assert proxy.to_server < BIG // 20
    assert proxy.to_client < BIG // 20


def test_a_port_in_use_is_a_clear_error(server: BoundServer) -> None:
    with pytest.raises(PortUnavailableError, match=rf"port {server.port} .*--port"):
        create_server(ServerSettings(port=server.port), lambda s: None)


def test_falls_back_to_the_next_address_when_one_cannot_be_bound() -> None:
    """What happens on a host without IPv6: the IPv6 wildcard fails, the IPv4 one serves."""
    bound = create_server(
        ServerSettings(port=0, max_workers=2, grace_seconds=0),
        lambda s: connector_sdk_pb2_grpc.add_SourceConnectorServicer_to_server(EchoSource(), s),
        hosts=("[::ffff:not-an-address]", "127.0.0.1"),
    )
    bound.server.start()
    try:
        assert bound.addresses == ("127.0.0.1",)
        channel, client = stub(f"127.0.0.1:{bound.port}")
        with channel:
            assert client.ConfigurationForm(common_pb2.ConfigurationFormRequest(), timeout=10).tests
    finally:
        bound.server.stop(0).wait()


def test_port_argument() -> None:
    assert parse_port_argument([], 50051, "x") == 50051
    assert parse_port_argument(["--port", "6000"], 50051, "x") == 6000
    with pytest.raises(SystemExit):
        parse_port_argument(["--port", "70000"], 50051, "x")


SERVER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from connectors.fivetran.jsonlog import configure_logging
    from connectors.fivetran.server import ServerSettings, parse_port_argument, serve
    from protos import common_pb2, connector_sdk_pb2_grpc
    import logging

    class SlowSource(connector_sdk_pb2_grpc.SourceConnectorServicer):
        def Test(self, request, context):
            logging.getLogger("test").info("handling Test")
            time.sleep(1.5)
            return common_pb2.TestResponse(success=True)

    configure_logging("sdk_connector")
    port = parse_port_argument(sys.argv[1:], 50051, "test server")
    settings = ServerSettings(port=port, max_workers=2, grace_seconds=10)
    register = lambda s: connector_sdk_pb2_grpc.add_SourceConnectorServicer_to_server(SlowSource(), s)
    sys.exit(serve(settings, register, "Test source"))
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_log_line(process: subprocess.Popen[str], deadline: float) -> dict[str, str]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"server exited early: {process.poll()}"
    assert time.monotonic() < deadline
    return json.loads(line)


def test_sigterm_lets_a_running_call_finish_and_exits_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        started = read_log_line(process, deadline)
        assert (
            started
            == {
                "level": "INFO",
                "message": f"Test source listening on port {port} ([::], 0.0.0.0)",
                "message-origin": "sdk_connector",
            }
            or started["message"] == f"Test source listening on port {port} (0.0.0.0)"
        )
        channel, client = stub(f"127.0.0.1:{port}")
        with channel:
            call = client.Test.future(common_pb2.TestRequest(name="connection"), timeout=30)
            assert read_log_line(process, deadline)["message"] == "handling Test"
            process.send_signal(signal.SIGTERM)
            assert call.result().success is True  # the running call finished during the grace period
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    messages = [json.loads(line)["message"] for line in stdout.splitlines()]
    assert messages[0].startswith("Test source received SIGTERM: refusing new calls")
    assert messages[-1] == "Test source stopped"
