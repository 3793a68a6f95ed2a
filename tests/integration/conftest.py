"""A real HTTP server (uvicorn on a free 127.0.0.1 port, background thread) over a fresh deployment, on
SQLite and on PostgreSQL (via ``deployment_factory``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import requests

from connectors import keys
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.fivetran.server import ServerSettings, create_server
from connectors.keys import KeyKind
from connectors.server.app import BackgroundServer, ServerConfig
from fivetran_destination.service import register
from protos import destination_sdk_pb2_grpc
from tests.conftest import DeploymentFactory


@dataclass
class LiveServer:
    url: str
    deployment: Deployment
    # Kept out of reprs (and so out of pytest failure output), like keys everywhere else.
    admin_key: str = field(repr=False)
    export_key: str = field(repr=False)
    import_key: str = field(repr=False)
    location: str
    server: BackgroundServer = field(repr=False)
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Convex {key or self.admin_key}"}

    def request(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {**self.auth(key), **kwargs.pop("headers", {})}
        return self.session.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)


class ServerFactory:
    """Starts servers over deployments from a ``DeploymentFactory``; stops them all at the end."""

    def __init__(self, deployments: DeploymentFactory) -> None:
        self._deployments = deployments
        self._running: list[LiveServer] = []

    def start(
        self,
        deployment_config: DeploymentConfig | None = None,
        server_config: ServerConfig | None = None,
        *,
        location: str | None = None,
    ) -> LiveServer:
        location = location or self._deployments.new_location()
        deployment = self._deployments.open(deployment_config, location=location)
        server = BackgroundServer(deployment, config=server_config).start()
        secret = keys.instance_secret(deployment)
        live = LiveServer(
            url=server.url,
            deployment=deployment,
            admin_key=keys.issue_key(secret, KeyKind.ADMIN),
            export_key=keys.issue_key(secret, KeyKind.EXPORT),
            import_key=keys.issue_key(secret, KeyKind.IMPORT),
            location=location,
            server=server,
        )
        self._running.append(live)
        return live

    def restart(self, live: LiveServer, deployment_config: DeploymentConfig | None = None) -> LiveServer:
        """Stop the server, close its deployment, and serve the same storage again (a process restart)."""
        self.stop(live)
        return self.start(deployment_config, location=live.location)

    def stop(self, live: LiveServer) -> None:
        live.session.close()
        live.server.stop()
        live.deployment.close()
        if live in self._running:
            self._running.remove(live)

    def stop_all(self) -> None:
        for live in list(self._running):
            self.stop(live)


@pytest.fixture
def server_factory(deployment_factory: DeploymentFactory) -> Iterator[ServerFactory]:
    factory = ServerFactory(deployment_factory)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def live_server(server_factory: ServerFactory) -> LiveServer:
    return server_factory.start()


@pytest.fixture(scope="module")
def destination_stub() -> Iterator[destination_sdk_pb2_grpc.DestinationConnectorStub]:
    """Our Fivetran destination on a free loopback port, with a gzip channel as Fivetran's tester opens."""
    bound = create_server(ServerSettings(0, grace_seconds=1.0), register, hosts=("127.0.0.1",))
    bound.server.start()
    with grpc.insecure_channel(f"127.0.0.1:{bound.port}", compression=grpc.Compression.Gzip) as channel:
        yield destination_sdk_pb2_grpc.DestinationConnectorStub(channel)
    bound.server.stop(1.0).wait()
