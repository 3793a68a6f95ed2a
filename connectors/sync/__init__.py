"""One sync engine for every connector that reads a deployment (``shared/design.md``).

``run_sync`` drives a ``SyncState`` through an initial snapshot and the change feed and yields typed events;
it reads through an ``ExportReader`` (``HttpReader`` for any deployment, ``LocalReader`` for a local
``Deployment``). ``fivetran_state`` and ``airbyte_state`` serialize the one state in each connector's format.
"""

from connectors.sync.engine import (
    Checkpoint,
    CursorExpired,
    Deletes,
    Rows,
    SnapshotComplete,
    SyncEvent,
    SyncMode,
    TableStarted,
    run_sync,
)
from connectors.sync.readers import ExportReader, HttpReader, LocalReader
from connectors.sync.selection import (
    FivetranSchemaChoice,
    FivetranSelection,
    FivetranTableChoice,
    FivetranTablesWithSchema,
    FivetranWithoutSchema,
    SelectionMappingError,
    SyncSelection,
    from_fivetran_selection,
)
from connectors.sync.state import Phase, SyncState, TableRef

__all__ = [
    "Checkpoint",
    "CursorExpired",
    "Deletes",
    "ExportReader",
    "FivetranSchemaChoice",
    "FivetranSelection",
    "FivetranTableChoice",
    "FivetranTablesWithSchema",
    "FivetranWithoutSchema",
    "HttpReader",
    "LocalReader",
    "Phase",
    "Rows",
    "SelectionMappingError",
    "SnapshotComplete",
    "SyncEvent",
    "SyncMode",
    "SyncSelection",
    "SyncState",
    "TableRef",
    "TableStarted",
    "from_fivetran_selection",
    "run_sync",
]
