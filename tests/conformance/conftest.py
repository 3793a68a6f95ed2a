"""Fixtures for the conformance suite: the integration suite's real servers (SQLite and PostgreSQL).

Fixtures are directory-scoped, so the integration ones are imported here to be visible to this folder too.
"""

from __future__ import annotations

from tests.integration.conftest import live_server, server_factory

__all__ = ["live_server", "server_factory"]
