"""Who is calling: credentials from the ``Authorization`` header or the ``adminKey`` query parameter, checked
against the deployment's keys (streaming-export.md §2.1, streaming-import.md §2.1).

The checks, in order: header syntax (400), presence and scheme (403 ``BadDeployKey``; on the import API a
non-``Bearer`` foreign scheme is 400 ``InvalidAdminKey``), key validity (401 ``BadAdminKey``), permission
(403 ``OperationNotPermitted``). A revoked key, or any key after the secret was rotated, is an invalid key
(401). No message quotes the credentials.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from connectors.errors import BadRequestError, ForbiddenError, UnauthenticatedError
from connectors.keys import KeyKind, KeyRing, Operation, allows

CONVEX_SCHEME: Final = "convex "
BEARER_SCHEME: Final = "bearer "
ADMIN_KEY_PARAM: Final = "adminKey"

BAD_DEPLOY_KEY_SUFFIX: Final = (
    "Double check that the environment this key was generated for matches the desired deployment."
)


class Api(enum.Enum):
    """Which API a route belongs to; they differ only in how a foreign auth scheme is reported."""

    EXPORT = "export"
    IMPORT = "import"


def bad_deploy_key(deployment_name: str | None) -> ForbiddenError:
    where = "this deployment" if deployment_name is None else f"deployment '{deployment_name}'"
    return ForbiddenError(
        "BadDeployKey", f"The provided deploy key was invalid for {where}. {BAD_DEPLOY_KEY_SUFFIX}"
    )


def bad_admin_key() -> UnauthenticatedError:
    return UnauthenticatedError("BadAdminKey", "The provided admin key was invalid for this instance")


def not_permitted(operation: Operation) -> ForbiddenError:
    return ForbiddenError(
        "OperationNotPermitted", f"You do not have permission to perform this operation ({operation.value})."
    )


@dataclass(frozen=True)
class Authenticator:
    """Verifies credentials against the deployment's current secret and key registry (kept out of the repr)."""

    keyring: KeyRing = field(repr=False)
    deployment_name: str | None = None

    def authorize(
        self,
        raw_headers: Iterable[tuple[bytes, bytes]],
        query: Mapping[str, str],
        operation: Operation,
        api: Api,
    ) -> KeyKind:
        """The caller's key kind if it may perform ``operation``; raises the wire error otherwise."""
        key = self._extract_key(raw_headers, query, api)
        kind = self.keyring.verify(key)
        if kind is None:
            raise bad_admin_key()
        if not allows(kind, operation):
            raise not_permitted(operation)
        return kind

    def _extract_key(
        self, raw_headers: Iterable[tuple[bytes, bytes]], query: Mapping[str, str], api: Api
    ) -> str:
        raw = next((value for name, value in raw_headers if name.lower() == b"authorization"), None)
        if raw is None:
            key = query.get(ADMIN_KEY_PARAM)
            if not key:
                raise bad_deploy_key(self.deployment_name)
            return key
        try:
            # Optional whitespace around a field value is not part of it (RFC 9110 §5.5); not every HTTP
            # parser strips it (httptools keeps trailing spaces), so strip it here.
            header = raw.decode("utf-8").strip(" \t")
        except UnicodeDecodeError:
            raise BadRequestError(
                "HeaderParseFailure", "Failed to parse the Authorization header: it is not valid UTF-8"
            ) from None
        if len(header) < len(CONVEX_SCHEME):
            raise BadRequestError(
                "InvalidHeaderFailure", "The Authorization header is too short to hold a scheme and a token"
            )
        scheme = header[: len(CONVEX_SCHEME)].lower()
        if scheme == CONVEX_SCHEME:
            return header[len(CONVEX_SCHEME) :]
        # Anything else would be a user (OIDC) identity, which these endpoints never accept. The import
        # API reports a scheme that is not even Bearer as a malformed admin key (§2.1).
        if api is Api.IMPORT and scheme != BEARER_SCHEME:
            raise BadRequestError("InvalidAdminKey", "Invalid admin key")
        raise bad_deploy_key(self.deployment_name)
