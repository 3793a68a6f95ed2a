"""Names and numbers of the wire contracts, defined once.

The server, the client, the storage engine and every connector import these instead of spelling them
again. Dependency-free on purpose (standard library only, no ``connectors`` imports), so any module can
import it without an import cycle. Sources: ``shared/spec/values-and-ids.md``, ``streaming-export.md``,
``streaming-import.md``, ``fivetran-sdk.md``.
"""

from __future__ import annotations

from importlib import metadata
from typing import Final, Literal


def _package_version() -> str:
    try:
        return metadata.version("convex-connectors")
    except metadata.PackageNotFoundError:
        # A source checkout that is not installed; keep in step with pyproject.toml.
        return "0.1.0"


PACKAGE_VERSION: Final = _package_version()
PACKAGE_NAME: Final = "convex-connectors"

# --- documents (values-and-ids.md §5-7) ------------------------------------------------------------------

ID_FIELD: Final = "_id"
CREATION_TIME_FIELD: Final = "_creationTime"
# The only "_" fields a document carries; any other "_" key is reserved.
SYSTEM_FIELDS: Final = frozenset({ID_FIELD, CREATION_TIME_FIELD})
SYSTEM_FIELDS_ORDERED: Final = (ID_FIELD, CREATION_TIME_FIELD)

MAX_DOCUMENT_SIZE: Final = 1 << 20
MAX_NESTING: Final = 16
MAX_OBJECT_FIELDS: Final = 1024
MAX_ARRAY_LEN: Final = 8192
MAX_IDENTIFIER_LEN: Final = 64
MAX_FIELD_NAME_LEN: Final = 1024
MAX_INDEXES_PER_TABLE: Final = 64
MAX_FIELDS_PER_INDEX: Final = 16
FIRST_USER_TABLE_NUMBER: Final = 10001

# --- export metadata keys (streaming-export.md §5) --------------------------------------------------------

COMPONENT_KEY: Final = "_component"
TABLE_KEY: Final = "_table"
TS_KEY: Final = "_ts"
DELETED_KEY: Final = "_deleted"
EXPORT_METADATA_KEYS: Final = frozenset({COMPONENT_KEY, TABLE_KEY, TS_KEY, DELETED_KEY})

# --- value formats (values-and-ids.md §2) -----------------------------------------------------------------

FORMAT_JSON: Final = "json"
FORMAT_CLEAN_JSON: Final = "convex_clean_json"
FORMAT_ENCODED_JSON: Final = "convex_encoded_json"
FORMAT_CONVEX_JSON: Final = "convex_json"
FORMAT_EXPORT_JSON: Final = "export_json"
ExportFormat = Literal["json", "convex_clean_json", "convex_encoded_json", "convex_json", "export_json"]
# Every accepted spelling -> its canonical name.
FORMAT_ALIASES: Final = {
    FORMAT_JSON: FORMAT_JSON,
    FORMAT_CLEAN_JSON: FORMAT_JSON,
    FORMAT_ENCODED_JSON: FORMAT_ENCODED_JSON,
    FORMAT_CONVEX_JSON: FORMAT_ENCODED_JSON,
    FORMAT_EXPORT_JSON: FORMAT_EXPORT_JSON,
}
CLEAN_FORMATS: Final = frozenset({FORMAT_JSON, FORMAT_CLEAN_JSON})
ENCODED_FORMATS: Final = frozenset({FORMAT_ENCODED_JSON, FORMAT_CONVEX_JSON})
EXPORT_FORMATS: Final = frozenset({FORMAT_EXPORT_JSON})

# --- export error codes a sync reacts to (streaming-export.md §5.4-5.5, §12) ------------------------------

SNAPSHOT_TOO_OLD: Final = "SnapshotTooOld"
INVALID_WINDOW: Final = "InvalidWindowToReadDocuments"
INVALID_LIST_SNAPSHOT_CURSOR: Final = "InvalidListSnapshotCursor"
# Only these mean "the stored cursor can no longer be used: restart from a snapshot".
CURSOR_EXPIRED_CODES: Final = frozenset({SNAPSHOT_TOO_OLD, INVALID_WINDOW})

# --- streaming import (streaming-import.md) ---------------------------------------------------------------

AIRBYTE_PRIMARY_KEY_INDEX: Final = "_by_airbyte_primary_key"
FIVETRAN_PRIMARY_KEY_INDEX: Final = "_fivetran_by_primary_key"
FIVETRAN_SYNCED_INDEX: Final = "_fivetran_by_synced"
IDENTIFIER_PREFIX: Final = "source_"

MiB: Final = 1024 * 1024
# AIRBYTE_STREAMING_IMPORT_REQUEST_SIZE_LIMIT = 10 * (2 << 20) (streaming-import.md §2.5).
AIRBYTE_IMPORT_BODY_LIMIT: Final = 20_971_520
# The Rust Fivetran destination sends 500-row chunks that exceed 2 MiB with wide rows.
FIVETRAN_OPERATIONS_BODY_LIMIT: Final = 32 * MiB
DEFAULT_BODY_LIMIT: Final = 8 * MiB
# Rows per apply_fivetran_operations call, as Convex's destination sends them (fivetran-destination.md).
FIVETRAN_OPERATIONS_CHUNK_ROWS: Final = 500

FIVETRAN_UPSERT: Final = "Upsert"
FIVETRAN_UPDATE: Final = "Update"
FIVETRAN_HARD_DELETE: Final = "HardDelete"
FivetranOperationType = Literal["Upsert", "Update", "HardDelete"]
FIVETRAN_OPERATIONS: Final = frozenset({FIVETRAN_UPSERT, FIVETRAN_UPDATE, FIVETRAN_HARD_DELETE})
TRUNCATE_SOFT: Final = "SoftDelete"
TRUNCATE_HARD: Final = "HardDelete"
TruncateDeleteType = Literal["SoftDelete", "HardDelete"]
TRUNCATE_DELETE_TYPES: Final = frozenset({TRUNCATE_SOFT, TRUNCATE_HARD})

# --- Fivetran column names (fivetran-destination.md) ------------------------------------------------------

FIVETRAN_OBJECT: Final = "fivetran"
FIVETRAN_SYNCED_COLUMN: Final = "_fivetran_synced"
FIVETRAN_DELETED_COLUMN: Final = "_fivetran_deleted"
FIVETRAN_ID_COLUMN: Final = "_fivetran_id"
FIVETRAN_START_COLUMN: Final = "_fivetran_start"
FIVETRAN_END_COLUMN: Final = "_fivetran_end"
FIVETRAN_ACTIVE_COLUMN: Final = "_fivetran_active"

# --- Fivetran connector processes (fivetran-sdk.md §5.1-5.2) -----------------------------------------------

FIVETRAN_SOURCE_PORT: Final = 50051
FIVETRAN_DESTINATION_PORT: Final = 50052
FIVETRAN_GRPC_MAX_MESSAGE_BYTES: Final = 134_217_728
FIVETRAN_LOG_ORIGIN_SOURCE: Final = "sdk_connector"
FIVETRAN_LOG_ORIGIN_DESTINATION: Final = "sdk_destination"

# --- Airbyte CDC columns (airbyte.md §1.5) ----------------------------------------------------------------

AB_CDC_LSN: Final = "_ab_cdc_lsn"
AB_CDC_UPDATED_AT: Final = "_ab_cdc_updated_at"
AB_CDC_DELETED_AT: Final = "_ab_cdc_deleted_at"
AB_CDC_COLUMNS: Final = (AB_CDC_LSN, AB_CDC_UPDATED_AT, AB_CDC_DELETED_AT)

# --- HTTP --------------------------------------------------------------------------------------------------

AUTH_SCHEME: Final = "Convex"
CLIENT_HEADER: Final = "Convex-Client"
JSON_MEDIA_TYPE: Final = "application/json"
