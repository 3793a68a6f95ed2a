"""What the Fivetran source and destination servers share (Convex's Rust code calls it ``fivetran_common``).

- ``config``: ``parse_configuration(map) -> ConnectorConfig`` with the contract's exact error texts;
- ``jsonlog``: ``configure_logging(origin)``, JSON lines on stdout with deploy keys redacted;
- ``server``: ``serve(ServerSettings, register, name)``, the gRPC process (IPv6 + IPv4, 128 MB messages,
  gzip, graceful SIGTERM/SIGINT).
"""
