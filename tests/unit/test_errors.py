"""Errors grouped by how the caller reacts: the classification of every status and code, and one
hierarchy for both sides of the wire (``except NotFoundError`` catches the server's and the client's)."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest

from connectors import errors
from connectors.client import (
    AmbiguousWriteError,
    ConvexApiError,
    ConvexConnectionError,
    IndexWaitTimeoutError,
    InvalidClientConfigError,
    UnexpectedResponseError,
)
from connectors.client.errors import api_error
from connectors.constants import CURSOR_EXPIRED_CODES
from connectors.errors import (
    CONFIGURATION_CODES,
    DATA_CODES,
    BadRequestError,
    ConfigurationError,
    CursorExpiredError,
    DataError,
    FatalError,
    NotFoundError,
    Reaction,
    TransientError,
    reaction_for,
)

R = Reaction


@pytest.mark.parametrize(
    ("status", "code", "reaction"),
    [
        (0, "ConnectionFailed", R.TRANSIENT),
        (429, "RateLimited", R.TRANSIENT),
        (500, "InternalServerError", R.TRANSIENT),
        (502, "", R.TRANSIENT),
        (503, "Overloaded", R.TRANSIENT),
        (504, "", R.TRANSIENT),
        (401, "BadAdminKey", R.CONFIGURATION),
        (401, "", R.CONFIGURATION),
        (403, "BadDeployKey", R.CONFIGURATION),
        (403, "OperationNotPermitted", R.CONFIGURATION),
        (403, "StreamingExportNotEnabled", R.CONFIGURATION),
        (404, "NotFound", R.CONFIGURATION),
        (404, "TableNotFound", R.CONFIGURATION),
        (404, "", R.CONFIGURATION),
        (404, "FivetranMissingUpdatedRow", R.DATA),
        (405, "MethodNotAllowed", R.CONFIGURATION),
        (400, "SnapshotTooOld", R.CURSOR_EXPIRED),
        (400, "InvalidWindowToReadDocuments", R.CURSOR_EXPIRED),
        (400, "InvalidClientVersion", R.CONFIGURATION),
        (400, "MissingFivetranPrimaryKeyIndex", R.CONFIGURATION),
        (400, "InvalidValue", R.DATA),
        (400, "MissingValueForFivetranPrimaryKeyIndex", R.DATA),
        (400, "EmptyPrimaryKey", R.DATA),
        (400, "BadJsonBody", R.FATAL),
        (400, "SnapshotTooNew", R.FATAL),
        (400, "InvalidListSnapshotCursor", R.FATAL),  # only SnapshotTooOld/InvalidWindow mean "re-sync"
        (400, "", R.FATAL),
        (409, "Conflict", R.FATAL),
        (413, "PayloadTooLarge", R.FATAL),
    ],
)
def test_reaction_for_status_and_code(status: int, code: str, reaction: Reaction) -> None:
    assert reaction_for(status, code) is reaction
    # The client's error for that answer reacts the same way.
    err = api_error(endpoint="e", method="POST", status=status or 500, code=code, message="m")
    if status:
        assert err.reaction is reaction


def test_every_listed_code_has_its_reaction() -> None:
    for code in CURSOR_EXPIRED_CODES:
        assert reaction_for(400, code) is R.CURSOR_EXPIRED
    for code in CONFIGURATION_CODES:
        assert reaction_for(400, code) is R.CONFIGURATION
    for code in DATA_CODES:
        assert reaction_for(400, code) is R.DATA
    assert not (CONFIGURATION_CODES & DATA_CODES) and not (CURSOR_EXPIRED_CODES & DATA_CODES)


def test_server_side_classes_react_by_kind() -> None:
    assert errors.UnauthenticatedError("BadAdminKey", "m").reaction is R.CONFIGURATION
    assert errors.ForbiddenError("OperationNotPermitted", "m").reaction is R.CONFIGURATION
    assert errors.TableNotFoundError("users").reaction is R.CONFIGURATION
    assert errors.RetriableError("Overloaded", "m").reaction is R.TRANSIENT
    assert errors.InternalError("detail").reaction is R.TRANSIENT
    assert errors.StorageError("disk").reaction is R.TRANSIENT
    assert errors.CursorExpiredError("SnapshotTooOld", "m").reaction is R.CURSOR_EXPIRED
    assert errors.BadRequestError("InvalidWindowToReadDocuments", "m").reaction is R.CURSOR_EXPIRED
    assert errors.BadRequestError("BadJsonBody", "m").reaction is R.FATAL
    assert errors.PlainError("bad name").reaction is R.FATAL
    assert errors.PayloadTooLargeError("PayloadTooLarge", "m").reaction is R.FATAL
    bad = errors.InvalidValueError("NaN is not allowed", "a.b")
    assert bad.reaction is R.DATA and isinstance(bad, DataError) and isinstance(bad, BadRequestError)
    assert bad.field_path == "a.b"
    assert errors.SchemaValidationError("m").reaction is R.DATA
    assert errors.DocumentNotFoundError("x").reaction is R.DATA


def test_data_errors_say_which_record() -> None:
    err = errors.InvalidValueError("must be a string", "profile.name")
    assert err.locate(table="users", record_index=7) is err
    assert (err.table, err.record_index, err.field_path) == ("users", 7, "profile.name")
    assert err.location == "table 'users', record 7, field profile.name"
    err.locate(table="other", record_index=9)  # the first location found is kept
    assert (err.table, err.record_index) == ("users", 7)


def test_user_message_is_separate_from_internal_detail() -> None:
    err = errors.InternalError("psycopg.OperationalError: server closed the connection")
    assert err.user_message == errors.InternalError.PUBLIC_MESSAGE
    assert "psycopg" in err.detail and "psycopg" not in err.user_message
    assert err.to_body() == {"code": "InternalServerError", "message": errors.InternalError.PUBLIC_MESSAGE}
    plain = errors.PlainError("Table name is too long")
    assert plain.detail == "Table name is too long" == str(plain)
    assert plain.user_message == errors.InternalError.PUBLIC_MESSAGE


def server_404() -> None:
    raise errors.TableNotFoundError("users")


def client_404() -> None:
    raise api_error(endpoint="list_snapshot", method="POST", status=404, code="NotFound", message="m")


@pytest.mark.parametrize("raise_it", [server_404, client_404])
def test_except_not_found_catches_both_sides(raise_it: Callable[[], None]) -> None:
    with pytest.raises(NotFoundError) as info:
        raise_it()
    assert info.value.status == 404


@pytest.mark.parametrize(
    ("status", "code", "status_class", "reaction_class"),
    [
        (400, "SnapshotTooOld", BadRequestError, CursorExpiredError),
        (400, "InvalidValue", BadRequestError, DataError),
        (400, "InvalidClientVersion", BadRequestError, ConfigurationError),
        (401, "BadAdminKey", errors.UnauthenticatedError, ConfigurationError),
        (403, "BadDeployKey", errors.ForbiddenError, ConfigurationError),
        (405, "", errors.MethodNotAllowedError, ConfigurationError),
        (413, "", errors.PayloadTooLargeError, FatalError),
        (429, "", errors.RetriableError, TransientError),
        (503, "", errors.RetriableError, TransientError),
        (500, "InternalServerError", errors.InternalError, TransientError),
        (502, "", errors.InternalError, TransientError),
    ],
)
def test_client_errors_are_the_shared_classes(
    status: int, code: str, status_class: type, reaction_class: type
) -> None:
    err = api_error(endpoint="e", method="POST", status=status, code=code, message="m", body_text="b")
    assert isinstance(err, ConvexApiError) and isinstance(err, status_class) and isinstance(err, reaction_class)
    assert (err.status, err.code, err.message, err.body_text, err.endpoint) == (status, code, "m", "b", "e")
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err) and str(clone) == str(err)


def test_client_only_errors() -> None:
    conn = ConvexConnectionError(endpoint="e", method="GET", message="refused", attempts=3)
    assert conn.reaction is R.TRANSIENT and isinstance(conn, TransientError)
    assert ConvexConnectionError(
        endpoint="e", method="GET", message="bad", attempts=1, retriable=False
    ).reaction is R.CONFIGURATION
    unexpected = UnexpectedResponseError(endpoint="e", method="GET", status=200, message="no cursor")
    assert unexpected.reaction is R.FATAL
    ambiguous = AmbiguousWriteError(endpoint="e", method="POST", status=0, code="", cause="dropped")
    assert ambiguous.reaction is R.FATAL and not ambiguous.retriable
    assert "may have committed" in str(ambiguous)
    assert IndexWaitTimeoutError(["t"], 1.0).reaction is R.TRANSIENT
    with pytest.raises(ConfigurationError) as info:
        raise InvalidClientConfigError("The deploy key must be a non-empty string")
    assert isinstance(info.value, ValueError) and info.value.reaction is R.CONFIGURATION


def test_invalid_record_error_names_table_record_and_field() -> None:
    err = errors.InvalidRecordError(
        "Int64 values must be between -2^63 and 2^63-1", table="orders", record_index=3, field_path="total"
    )
    assert err.reaction is R.DATA and isinstance(err, DataError) and err.status == 400
    assert (err.table, err.record_index, err.field_path) == ("orders", 3, "total")
    assert str(err) == "table 'orders', record 3, field total: Int64 values must be between -2^63 and 2^63-1"
    assert err.to_body()["code"] == "InvalidRecord"
