"""The one typed HTTP client every connector and the CLI use to talk to a Convex deployment.

One concern a module:

* ``config``: ``ClientConfig`` (validated connection settings) and ``InvalidClientConfigError``;
* ``wire``: the wire types (``ExportedValue``, pages, ``AirbyteStream``/``AirbyteMessage``,
  ``FivetranOperation``, ``encode_row``);
* ``errors``: ``ConvexApiError`` and friends, each also the shared status/reaction class of
  ``connectors.errors``; ``AmbiguousWriteError`` for a non-idempotent write that may have been applied;
* ``transport``: the pooled session and the retry policy (retries that never write twice);
* ``pipeline``: export page pipelining;
* ``api``: ``ConvexClient``, the typed calls and response parsing.
"""

from __future__ import annotations

from connectors.client.api import ConvexClient
from connectors.client.config import ClientConfig, InvalidClientConfigError
from connectors.client.errors import (
    AmbiguousWriteError,
    ConvexApiError,
    ConvexConnectionError,
    IndexWaitTimeoutError,
    UnexpectedResponseError,
)
from connectors.client.transport import MAX_RETRY_AFTER_S
from connectors.client.wire import (
    AirbyteMessage,
    AirbyteStream,
    DeltaPage,
    ExportedValue,
    FivetranOperation,
    FivetranOperationType,
    SnapshotPage,
    TableColumns,
    TruncateDeleteType,
    encode_row,
)
from connectors.constants import PACKAGE_VERSION, ExportFormat

__all__ = [
    "MAX_RETRY_AFTER_S",
    "PACKAGE_VERSION",
    "AirbyteMessage",
    "AirbyteStream",
    "AmbiguousWriteError",
    "ClientConfig",
    "ConvexApiError",
    "ConvexClient",
    "ConvexConnectionError",
    "DeltaPage",
    "ExportFormat",
    "ExportedValue",
    "FivetranOperation",
    "FivetranOperationType",
    "IndexWaitTimeoutError",
    "InvalidClientConfigError",
    "SnapshotPage",
    "TableColumns",
    "TruncateDeleteType",
    "UnexpectedResponseError",
    "encode_row",
]
