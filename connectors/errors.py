"""Error types shared by the backend core, the HTTP API and the client.

Every error carries a short ``code`` and a user-facing ``message`` exactly as the wire contracts
(``shared/spec``) spell them, and an HTTP ``status``. Errors are grouped by how a caller reacts:

* ``BadRequestError`` and friends (4xx): the input is wrong; retrying the same request cannot help.
* ``RetriableError`` (429/503): try again later.
* ``InternalError`` (500): a fault on our side; the public message is generic, the detail stays internal.

The message never contains keys or customer data beyond the names the user supplied.
"""

from __future__ import annotations


class ConvexError(Exception):
    """Base of every error that has a wire representation ``{"code", "message"}``."""

    status: int = 500

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status

    def to_body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class BadRequestError(ConvexError):
    """400: the request or the data is invalid."""

    status = 400


class UnauthenticatedError(ConvexError):
    """401: the credentials did not validate."""

    status = 401


class ForbiddenError(ConvexError):
    """403: the credentials are valid but not allowed to do this."""

    status = 403


class NotFoundError(ConvexError):
    """404: the thing addressed does not exist."""

    status = 404


class MethodNotAllowedError(ConvexError):
    status = 405


class ConflictError(ConvexError):
    status = 409


class PayloadTooLargeError(ConvexError):
    status = 413


class RetriableError(ConvexError):
    """429/503: overloaded or rate limited; the same request may succeed later."""

    status = 503


class InternalError(ConvexError):
    """500 with the generic public message; ``detail`` is for logs only (never customer data)."""

    status = 500
    PUBLIC_MESSAGE = "Your request couldn't be completed. Try again later."

    def __init__(self, detail: str = "") -> None:
        super().__init__("InternalServerError", self.PUBLIC_MESSAGE)
        self.detail = detail


class PlainError(ConvexError):
    """An upstream "plain error": status 500 whose body is the generic InternalServerError, but whose
    text we keep so local callers (Python API, logs) see what was wrong."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__("InternalServerError", InternalError.PUBLIC_MESSAGE)
        self.detail = message

    def __str__(self) -> str:
        return self.detail


# --- Domain errors raised by the core (no I/O modules) -------------------------------------------


class InvalidValueError(BadRequestError):
    """A value, field name or document violates the Convex value rules. ``path`` names where."""

    def __init__(self, message: str, path: str = "") -> None:
        where = f" at {path}" if path else ""
        super().__init__("InvalidValue", f"{message}{where}")
        self.path = path


class InvalidIdError(BadRequestError):
    def __init__(self, message: str) -> None:
        super().__init__("InvalidId", message)


class InvalidNameError(BadRequestError):
    """A table name, component path, index name or field path breaks the identifier rules."""

    def __init__(self, message: str, code: str = "InvalidName") -> None:
        super().__init__(code, message)


class TableNotFoundError(NotFoundError):
    def __init__(self, table: str, component: str = "") -> None:
        where = f" in component '{component}'" if component else ""
        super().__init__(
            "TableNotFound",
            f'Table "{table}"{where} does not exist. Create it first (or check the spelling).',
        )
        self.table = table
        self.component = component


class DocumentNotFoundError(NotFoundError):
    def __init__(self, document_id: str) -> None:
        super().__init__("DocumentNotFound", f"Document {document_id} does not exist.")
        self.document_id = document_id


class SchemaValidationError(BadRequestError):
    def __init__(self, message: str) -> None:
        super().__init__("SchemaValidationFailed", message)


class TransactionLimitError(BadRequestError):
    """A transaction limit (writes, bytes written or read) would be exceeded. Streaming import catches
    this, commits what it has and retries the item in a fresh transaction."""

    def __init__(self, message: str) -> None:
        super().__init__("TooManyWrites", message)


class IndexNotReadyError(BadRequestError):
    def __init__(self, message: str, code: str = "IndexNotReady") -> None:
        super().__init__(code, message)


class StorageError(InternalError):
    """The persistence layer failed (I/O, lost connection). Retriable by the caller."""
