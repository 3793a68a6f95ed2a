"""Where the destination keeps each table's Fivetran definition: the deployment's
``fivetran_destination_tables`` table (one document per Convex table).

Convex stores no validator for tables created through ``fivetran_create_table`` (streaming-import.md §10.4),
so without this DescribeTable could only answer ``not_found`` (the original connector's behaviour) and the
column types (SHORT vs INT vs DOUBLE, NAIVE_DATE vs STRING, ...) could not be given back. A plain user table
works against any Convex deployment and travels with every export and backup of the deployment.

Documents: ``{table: "<convex table>", definition: "<JSON text>", fivetran: {synced: <ms>}}``; written with
``apply_fivetran_operations`` Upsert (primary key ``table``), read through the sync engine's snapshot reader.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson

from connectors.client import ConvexApiError, ConvexClient
from connectors.client.wire import FivetranOperation
from connectors.constants import (
    FIVETRAN_HARD_DELETE,
    FIVETRAN_PRIMARY_KEY_INDEX,
    FIVETRAN_SYNCED_INDEX,
    FIVETRAN_UPSERT,
)
from connectors.sync import HttpReader, Rows, SyncMode, SyncSelection, SyncState, TableRef, run_sync
from fivetran_destination.model import METADATA_TABLE, TableDef

_TABLE_DEFINITION: dict[str, Any] = {
    "tableName": METADATA_TABLE,
    "indexes": [
        {"indexDescriptor": FIVETRAN_PRIMARY_KEY_INDEX, "fields": ["table"]},
        {"indexDescriptor": FIVETRAN_SYNCED_INDEX, "fields": ["fivetran.synced"]},
    ],
    "searchIndexes": [],
    "stagedDbIndexes": [],
    "stagedSearchIndexes": [],
    "vectorIndexes": [],
    "stagedVectorIndexes": [],
    "documentType": {
        "type": "object",
        "value": {
            "table": {"fieldType": {"type": "string"}, "optional": False},
            "definition": {"fieldType": {"type": "string"}, "optional": False},
            "fivetran": {
                "fieldType": {
                    "type": "object",
                    "value": {"synced": {"fieldType": {"type": "number"}, "optional": False}},
                },
                "optional": False,
            },
        },
    },
}


class MetadataStore:
    """Table definitions kept in the deployment. Thread-safe; creates its table's indexes once per URL."""

    _prepared: set[str] = set()
    _lock = threading.Lock()

    def __init__(self, client: ConvexClient) -> None:
        self.client = client

    def _prepare(self) -> None:
        url = self.client.config.deployment_url
        with self._lock:
            if url in self._prepared:
                return
        self.client.fivetran_create_table(_TABLE_DEFINITION)
        with self._lock:
            self._prepared.add(url)

    def _write(self, operation: FivetranOperation) -> None:
        """Apply one operation to the definitions table, creating its indexes first. The process remembers
        which URLs it prepared; a deployment behind the same URL may since have been reset or restored
        without them, so a missing index re-prepares once."""
        self._prepare()
        try:
            self.client.apply_fivetran_operations([operation])
        except ConvexApiError as exc:
            if exc.code != "MissingFivetranPrimaryKeyIndex":
                raise
            with self._lock:
                self._prepared.discard(self.client.config.deployment_url)
            self._prepare()
            self.client.apply_fivetran_operations([operation])

    def get(self, convex_name: str) -> TableDef | None:
        selection = SyncSelection.of_tables([TableRef("", METADATA_TABLE)])
        events = run_sync(HttpReader(self.client), selection, SyncState.fresh(), SyncMode.SNAPSHOT_ONLY)
        try:
            for event in events:
                if isinstance(event, Rows):
                    for doc in event.documents:
                        if doc.get("table") == convex_name and isinstance(doc.get("definition"), str):
                            return TableDef.from_json(convex_name, orjson.loads(doc["definition"]))
        finally:
            events.close()
        return None

    def put(self, table: TableDef) -> None:
        row = {
            "table": table.convex_name,
            "definition": orjson.dumps(table.to_json()).decode(),
            "fivetran": {"synced": time.time() * 1000.0},
        }
        self._write(FivetranOperation(METADATA_TABLE, FIVETRAN_UPSERT, row))

    def delete(self, convex_name: str) -> None:
        row = {"table": convex_name, "fivetran": {}}
        self._write(FivetranOperation(METADATA_TABLE, FIVETRAN_HARD_DELETE, row))
