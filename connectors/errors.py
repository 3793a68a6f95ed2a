"""Error types shared by the backend core, the HTTP API and the client: one hierarchy.

Every error carries a short ``code`` and a user-facing ``message`` exactly as the wire contracts
(``shared/spec``) spell them, an HTTP ``status``, an internal ``detail`` (for logs; never sent) and a
machine-readable ``reaction``: what the caller does about it.

* ``Reaction.CONFIGURATION`` (``ConfigurationError``): a bad URL, key or permission, or a deployment that
  lacks what is needed. Never retried; the message says what to fix.
* ``Reaction.TRANSIENT`` (``TransientError``): 429, 5xx, connection failures. Retried with backoff and jitter.
* ``Reaction.CURSOR_EXPIRED`` (``CursorExpiredError``): ``SnapshotTooOld`` or ``InvalidWindowToReadDocuments``;
  the stored cursor can no longer be used, restart from a new snapshot.
* ``Reaction.DATA`` (``DataError``): a bad record; ``table``, ``record_index`` and ``field_path`` say which.
* ``Reaction.FATAL`` (``FatalError``): anything else; stop and report (a bug, a broken contract, or a write
  that may have been applied, ``AmbiguousWriteError`` in the client).

The status classes (``BadRequestError``, ``NotFoundError``, ...) are the same for both sides: the client
raises errors that are both its ``ConvexApiError`` and the status class of the response, so
``except NotFoundError`` catches a server-side 404 error and the client's error for a 404 response alike.
``reaction_for(status, code)`` is the one classification both sides use.

The message never contains keys or customer data beyond the names the user supplied.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Final

from connectors.constants import CURSOR_EXPIRED_CODES


class Reaction(enum.Enum):
    """How a caller reacts to an error; connectors switch on this."""

    CONFIGURATION = "configuration"
    TRANSIENT = "transient"
    CURSOR_EXPIRED = "cursor_expired"
    DATA = "data"
    FATAL = "fatal"


# 4xx codes that mean "fix the setup" (key, permission, URL, deployment features or schema, client version).
CONFIGURATION_CODES: Final = frozenset(
    {
        "BadAdminKey",
        "BadDeployKey",
        "InvalidAdminKey",
        "OperationNotPermitted",
        "StreamingExportNotEnabled",
        "InvalidHeaderFailure",
        "HeaderParseFailure",
        "InvalidClientVersion",
        "BadFormat",
        "NoSchemaForExport",
        "NoTableDefinitionForExport",
        "UnsupportedSchemaForExport",
        "OverwriteNotSupported",
        "MissingIndex",
        "MissingFivetranPrimaryKeyIndex",
        "MissingFivetranSyncedIndex",
        "WrongFieldsInFivetranSyncedIndex",
        "TableNotFound",
        "NotFound",
        "MethodNotAllowed",
    }
)
# 4xx codes that mean "this record is bad": the rest of the data may be fine.
DATA_CODES: Final = frozenset(
    {
        "InvalidValue",
        "InvalidId",
        "InvalidName",
        "InvalidPrimaryKey",
        "EmptyPrimaryKey",
        "MissingStream",
        "MissingPrimaryKeyValue",
        "MissingValueForFivetranPrimaryKeyIndex",
        "FivetranMissingUpdatedRow",
        "SchemaValidationFailed",
        "DocumentNotFound",
        "DuplicateId",
        "InvalidRecord",
    }
)


def reaction_for(status: int, code: str = "") -> Reaction:
    """The reaction to an error answer ``status`` with wire ``code`` (status 0: no answer at all)."""
    if code in CURSOR_EXPIRED_CODES:
        return Reaction.CURSOR_EXPIRED
    if status == 0 or status == 429 or status >= 500:
        return Reaction.TRANSIENT
    if status in (401, 403) or code in CONFIGURATION_CODES:
        return Reaction.CONFIGURATION
    if code in DATA_CODES:
        return Reaction.DATA
    if status in (404, 405):
        # An unknown endpoint or missing object: the URL or the deployment is not what the caller expects.
        return Reaction.CONFIGURATION
    return Reaction.FATAL


class ConvexError(Exception):
    """Base of every error that has a wire representation ``{"code", "message"}``.

    ``message`` is for the user (and the wire); ``detail`` is internal (logs only). ``reaction`` comes
    from the class when it fixes one, else from ``reaction_for(status, code)``."""

    status: int = 500
    detail: str = ""
    _reaction: ClassVar[Reaction | None] = None

    def __init__(self, code: str, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        if detail:
            self.detail = detail

    @property
    def reaction(self) -> Reaction:
        return self._reaction if self._reaction is not None else reaction_for(self.status, self.code)

    @property
    def user_message(self) -> str:
        return self.message

    def to_body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


# --- reaction classes: mixed into the status classes below (and into the client's errors) -----------------


class ConfigurationError(ConvexError):
    """Fix the URL, key, permission or deployment; retrying cannot help."""

    _reaction = Reaction.CONFIGURATION


class TransientError(ConvexError):
    """Overloaded, rate limited, or unreachable: the same request may succeed later."""

    _reaction = Reaction.TRANSIENT


class FatalError(ConvexError):
    """Stop and report: neither a retry nor a configuration change is known to help."""

    _reaction = Reaction.FATAL


class DataError(ConvexError):
    """A bad record. ``table``, ``record_index`` (position in the request) and ``field_path`` say which,
    where known (None otherwise)."""

    _reaction = Reaction.DATA
    table: str | None = None
    record_index: int | None = None
    field_path: str | None = None

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        detail: str = "",
        table: str | None = None,
        record_index: int | None = None,
        field_path: str | None = None,
    ) -> None:
        super().__init__(code, message, status=status, detail=detail)
        if table is not None:
            self.table = table
        if record_index is not None:
            self.record_index = record_index
        if field_path is not None:
            self.field_path = field_path

    def locate(self, *, table: str | None = None, record_index: int | None = None) -> DataError:
        """Record where the bad record is (kept when already known); returns self for ``raise``."""
        if table is not None and self.table is None:
            self.table = table
        if record_index is not None and self.record_index is None:
            self.record_index = record_index
        return self

    @property
    def location(self) -> str:
        parts = []
        if self.table is not None:
            parts.append(f"table {self.table!r}")
        if self.record_index is not None:
            parts.append(f"record {self.record_index}")
        if self.field_path:
            parts.append(f"field {self.field_path}")
        return ", ".join(parts)


class InvalidRecordError(DataError):
    """A connector's record that cannot be written (400 ``InvalidRecord``); the message names the table,
    the record's position and the field, never the record's values."""

    status = 400

    def __init__(
        self, problem: str, *, table: str, record_index: int | None = None, field_path: str | None = None
    ) -> None:
        super().__init__(
            "InvalidRecord", problem, table=table, record_index=record_index, field_path=field_path
        )
        self.problem = problem
        self.message = f"{self.location}: {problem}"
        self.args = (self.message,)


# --- status classes ---------------------------------------------------------------------------------------


class BadRequestError(ConvexError):
    """400: the request or the data is invalid (the reaction follows the code: ``reaction_for``)."""

    status = 400


class CursorExpiredError(BadRequestError):
    """400 ``SnapshotTooOld`` / ``InvalidWindowToReadDocuments``: restart from a new snapshot."""

    _reaction = Reaction.CURSOR_EXPIRED


class UnauthenticatedError(ConfigurationError):
    """401: the credentials did not validate."""

    status = 401


class ForbiddenError(ConfigurationError):
    """403: the credentials are valid but not allowed to do this."""

    status = 403


class NotFoundError(ConvexError):
    """404: the thing addressed does not exist."""

    status = 404


class MethodNotAllowedError(ConfigurationError):
    status = 405


class ConflictError(ConvexError):
    status = 409


class PayloadTooLargeError(FatalError):
    status = 413


class RetriableError(TransientError):
    """429/503: overloaded or rate limited; the same request may succeed later."""

    status = 503


class InternalError(TransientError):
    """500 with the generic public message; ``detail`` is for logs only (never customer data)."""

    status = 500
    PUBLIC_MESSAGE = "Your request couldn't be completed. Try again later."

    def __init__(self, detail: str = "") -> None:
        super().__init__("InternalServerError", self.PUBLIC_MESSAGE, detail=detail)


class PlainError(ConvexError):
    """An upstream "plain error": status 500 whose body is the generic InternalServerError, but whose
    text we keep so local callers (Python API, logs) see what was wrong. Locally it is a validation
    failure (FATAL: the same input fails again); over the wire a client sees a 500 (TRANSIENT)."""

    status = 500
    _reaction = Reaction.FATAL

    def __init__(self, message: str) -> None:
        super().__init__("InternalServerError", InternalError.PUBLIC_MESSAGE, detail=message)

    def __str__(self) -> str:
        return self.detail


# --- Domain errors raised by the core (no I/O modules) -------------------------------------------


class InvalidValueError(BadRequestError, DataError):
    """A value, field name or document violates the Convex value rules. ``path`` names where."""

    def __init__(self, message: str, path: str = "") -> None:
        where = f" at {path}" if path else ""
        super().__init__("InvalidValue", f"{message}{where}")
        self.path = path
        self.field_path = path or None


class InvalidIdError(BadRequestError, DataError):
    def __init__(self, message: str) -> None:
        super().__init__("InvalidId", message)


class InvalidNameError(BadRequestError):
    """A table name, component path, index name or field path breaks the identifier rules."""

    def __init__(self, message: str, code: str = "InvalidName") -> None:
        super().__init__(code, message)


class TableNotFoundError(NotFoundError, ConfigurationError):
    def __init__(self, table: str, component: str = "") -> None:
        where = f" in component '{component}'" if component else ""
        super().__init__(
            "TableNotFound",
            f'Table "{table}"{where} does not exist. Create it first (or check the spelling).',
        )
        self.table = table
        self.component = component


class DocumentNotFoundError(NotFoundError, DataError):
    def __init__(self, document_id: str) -> None:
        super().__init__("DocumentNotFound", f"Document {document_id} does not exist.")
        self.document_id = document_id


class SchemaValidationError(BadRequestError, DataError):
    def __init__(self, message: str) -> None:
        super().__init__("SchemaValidationFailed", message)


class TransactionLimitError(BadRequestError):
    """A transaction limit (writes, bytes written or read) would be exceeded. Streaming import catches
    this, commits what it has and retries the item in a fresh transaction."""

    def __init__(self, message: str) -> None:
        super().__init__("TooManyWrites", message)


class IndexNotReadyError(BadRequestError, TransientError):
    """An index is still backfilling: the same request succeeds once it is ready."""

    def __init__(self, message: str, code: str = "IndexNotReady") -> None:
        super().__init__(code, message)


class StorageError(InternalError):
    """The persistence layer failed (I/O, lost connection). Retriable by the caller."""
