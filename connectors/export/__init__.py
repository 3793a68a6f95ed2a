"""The snapshot export (``convex-connectors export``): Parquet, Avro, JSON Lines or the Convex backup ZIP, a
full snapshot or the changes after a cursor, from a deployment over HTTP or a local one.

:func:`run_export` (in :mod:`.core`) takes an ``ExportReader`` of the sync engine and :class:`ExportOptions`;
:mod:`.writers` holds the per-format part writers, :mod:`.fit` the page check against the decided types,
:mod:`.output` the pyarrow filesystem and temporary names, :mod:`.cli` the command.
"""

from typing import Any

__all__ = [
    "MANIFEST_NAME",
    "ExportError",
    "ExportFormat",
    "ExportOptions",
    "ExportResult",
    "TableResult",
    "build_selection",
    "read_manifest_cursor",
    "run_export",
    "table_directory",
]


def __getattr__(name: str) -> Any:
    """The names of :mod:`.core`, imported on first use (so the CLI starts without pyarrow and fastavro)."""
    if name in __all__:
        from connectors.export import core

        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
