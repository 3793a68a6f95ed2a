"""The client's errors: each is a ``ConvexApiError`` (endpoint, method, status, code, message) and, for an
error answer, also the shared status and reaction class of ``connectors.errors`` (``api_error`` picks it),
so ``except NotFoundError`` or ``except TransientError`` works the same on both sides of the wire."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from connectors.errors import (
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConvexError,
    CursorExpiredError,
    DataError,
    FatalError,
    ForbiddenError,
    InternalError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    Reaction,
    RetriableError,
    TransientError,
    UnauthenticatedError,
    reaction_for,
)

__all__ = [
    "AmbiguousWriteError",
    "ConvexApiError",
    "ConvexConnectionError",
    "IndexWaitTimeoutError",
    "UnexpectedResponseError",
    "api_error",
]


class ConvexApiError(ConvexError):
    """A request failed. ``status``/``code``/``message`` come from the server's ``{code, message}`` body;
    when the body is not that JSON, ``code`` is ``""`` and ``message`` is the body text. ``body_text``
    keeps the raw (redacted) body for callers that must reproduce upstream error texts."""

    def __init__(
        self,
        *,
        endpoint: str,
        method: str,
        status: int,
        code: str,
        message: str,
        body_text: str = "",
    ) -> None:
        # Explicitly the base initializer: the status classes mixed in below have other signatures.
        ConvexError.__init__(self, code, message, status=status)
        self.endpoint = endpoint
        self.method = method
        self.body_text = body_text

    @property
    def retriable(self) -> bool:
        return self.status == 429 or self.status >= 500

    def __str__(self) -> str:
        if self.code:
            return f"{self.endpoint}: {self.status}: {self.code}: {self.message}"
        return f"{self.endpoint}: {self.status}: {self.message or '(no content)'}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, status={self.status!r}, "
            f"code={self.code!r}, message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__ breaks default exception pickling (multiprocessing, logging handlers).
        return (_restore_error, (type(self), dict(self.__dict__)))


def _restore_error(cls: type[ConvexApiError], state: dict[str, Any]) -> ConvexApiError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


# --- one class per (status, reaction) an answer can have; module level so they pickle ----------------------


class ApiBadRequestError(ConvexApiError, BadRequestError):
    """400 whose code the shared classification does not know: FATAL."""


class ApiCursorExpiredError(ConvexApiError, CursorExpiredError):
    """400 ``SnapshotTooOld`` / ``InvalidWindowToReadDocuments``."""


class ApiConfigurationError(ConvexApiError, BadRequestError, ConfigurationError):
    """400 with a code that means the setup is wrong (client version, format, schema, indexes)."""


class ApiDataError(ConvexApiError, BadRequestError, DataError):
    """400 with a code that means a record is bad; the server does not say which in a structured way."""


class ApiUnauthenticatedError(ConvexApiError, UnauthenticatedError):
    """A 401 answer: the deploy key did not validate (``except UnauthenticatedError`` catches it)."""


class ApiForbiddenError(ConvexApiError, ForbiddenError):
    """A 403 answer: the key is valid but may not do this (``except ForbiddenError`` catches it)."""


class ApiNotFoundError(ConvexApiError, NotFoundError):
    """A 404 answer (``except NotFoundError`` catches it, as it catches the server's own)."""


class ApiMethodNotAllowedError(ConvexApiError, MethodNotAllowedError):
    """A 405 answer (``except MethodNotAllowedError`` catches it)."""


class ApiConflictError(ConvexApiError, ConflictError):
    """A 409 answer (``except ConflictError`` catches it)."""


class ApiPayloadTooLargeError(ConvexApiError, PayloadTooLargeError):
    """A 413 answer: the request body was over the server's limit (``except PayloadTooLargeError``)."""


class ApiRetriableError(ConvexApiError, RetriableError):
    """429 and 503."""


class ApiServerError(ConvexApiError, InternalError):
    """500 and other 5xx."""


_BY_STATUS: Final[dict[int, type[ConvexApiError]]] = {
    401: ApiUnauthenticatedError,
    403: ApiForbiddenError,
    404: ApiNotFoundError,
    405: ApiMethodNotAllowedError,
    409: ApiConflictError,
    413: ApiPayloadTooLargeError,
    429: ApiRetriableError,
    503: ApiRetriableError,
}
_BAD_REQUEST_BY_REACTION: Final[dict[Reaction, type[ConvexApiError]]] = {
    Reaction.CURSOR_EXPIRED: ApiCursorExpiredError,
    Reaction.CONFIGURATION: ApiConfigurationError,
    Reaction.DATA: ApiDataError,
}


def api_error_class(status: int, code: str) -> type[ConvexApiError]:
    """The ``ConvexApiError`` subclass for an error answer: its status class and its reaction."""
    if status == 400:
        return _BAD_REQUEST_BY_REACTION.get(reaction_for(status, code), ApiBadRequestError)
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ApiServerError
    return ConvexApiError


def api_error(
    *, endpoint: str, method: str, status: int, code: str, message: str, body_text: str = ""
) -> ConvexApiError:
    cls = api_error_class(status, code)
    return cls(
        endpoint=endpoint, method=method, status=status, code=code, message=message, body_text=body_text
    )


class ConvexConnectionError(ConvexApiError, TransientError):
    """The deployment could not be reached (refused, reset, timed out), after retries. ``status`` is 0.
    TRANSIENT, except for failures no retry can fix (an unusable URL: CONFIGURATION)."""

    def __init__(self, *, endpoint: str, method: str, message: str, attempts: int, retriable: bool = True):
        super().__init__(endpoint=endpoint, method=method, status=0, code="ConnectionFailed", message=message)
        self.attempts = attempts
        self._retriable = retriable

    @property
    def retriable(self) -> bool:
        return self._retriable

    @property
    def reaction(self) -> Reaction:
        return Reaction.TRANSIENT if self._retriable else Reaction.CONFIGURATION

    def __str__(self) -> str:
        return f"{self.endpoint}: could not reach the deployment after {self.attempts} attempt(s): {self.message}"


class UnexpectedResponseError(ConvexApiError, FatalError):
    """A 2xx response that breaks the contract (unparseable body, missing keys, paging invariants).
    Not retriable: the same request would get the same answer."""

    def __init__(self, *, endpoint: str, method: str, status: int, message: str) -> None:
        super().__init__(
            endpoint=endpoint, method=method, status=status, code="UnexpectedResponse", message=message
        )

    @property
    def retriable(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"{self.endpoint}: {self.message}"


AMBIGUOUS_WRITE_ADVICE: Final = (
    "the server may have committed some of these records; re-running the sync in dedup mode "
    "or checking the table is needed"
)


class AmbiguousWriteError(ConvexApiError, FatalError):
    """A non-idempotent write (an append-mode import) failed after the request may have reached the
    server (a 5xx, a read timeout, a dropped connection). Never retried: a retry could write the records
    twice. ``status`` is the answer's (0 without one); ``cause`` says what happened."""

    def __init__(self, *, endpoint: str, method: str, status: int, code: str, cause: str) -> None:
        message = f"{cause}; {AMBIGUOUS_WRITE_ADVICE}"
        super().__init__(
            endpoint=endpoint, method=method, status=status, code=code or "AmbiguousWrite", message=message
        )
        self.cause = cause

    @property
    def retriable(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"{self.endpoint}: {self.message}"


class IndexWaitTimeoutError(ConvexError):
    """``wait_for_primary_key_indexes`` gave up; the indexes are still backfilling (TRANSIENT)."""

    _reaction = Reaction.TRANSIENT

    def __init__(self, tables: Sequence[str], timeout_s: float) -> None:
        super().__init__(
            "PrimaryKeyIndexesNotReady",
            f"Primary key indexes of {', '.join(tables)} were still backfilling after {timeout_s:g} s",
            status=504,
        )
        self.tables = tuple(tables)
        self.timeout_s = timeout_s
