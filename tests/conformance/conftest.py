"""Fixtures for the conformance suite: real servers (SQLite and PostgreSQL) reused from the integration suite.

``tests/integration/conftest.py`` defines ``ServerFactory``; its fixtures are directory-scoped, so the same
ones are declared here over the shared ``deployment_factory`` (``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import DeploymentFactory
from tests.integration.conftest import LiveServer, ServerFactory


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
