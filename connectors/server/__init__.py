"""The HTTP server for Convex's streaming export and streaming import APIs."""

from connectors.server.app import BackgroundServer, ServerConfig, create_app, run

__all__ = ["BackgroundServer", "ServerConfig", "create_app", "run"]
