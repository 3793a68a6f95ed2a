"""What the user reads when a call fails (fivetran-source.md §3, §7).

HTTP failures start with the reference connector's exact text (``Call to <endpoint> on <deploy_url> …``) and,
for the failures a user can fix, continue with what to do. Texts never contain the deploy key (the server
never echoes it, and the JSON-line log filter redacts it anyway).
"""

from __future__ import annotations

from typing import Final

from connectors.client import ConvexApiError
from connectors.client.errors import ConvexConnectionError, UnexpectedResponseError
from connectors.errors import ConvexError
from connectors.fivetran.config import ConfigurationError
from connectors.sync.fivetran_state import FivetranStateError
from connectors.sync.selection import SelectionMappingError
from connectors.typemap.tree import TypeMapError

DESERIALIZE_FAILED: Final = "Failed to deserialize query result"

_HINTS: Final[dict[int, str]] = {
    401: "Check the Deploy Key: copy it again from the deployment settings page of the Convex dashboard.",
    403: (
        "Check that the Deploy Key belongs to this deployment and may export data; streaming export needs "
        "the Convex Professional plan."
    ),
    404: (
        "Check the Deployment URL: it must be the deployment's root URL (for example "
        "https://aware-llama-900.convex.cloud), as shown on the deployment settings page."
    ),
}


def http_error_text(error: ConvexApiError, deploy_url: str) -> str:
    """The reference's text for a failed call (``deploy_url`` ends with ``/``), plus a hint when one helps."""
    if isinstance(error, ConvexConnectionError):
        return (
            f"Call to {error.endpoint} on {deploy_url} failed: the deployment could not be reached "
            f"({error.message}). Check the Deployment URL and that the deployment is running."
        )
    if isinstance(error, UnexpectedResponseError):
        return f"{DESERIALIZE_FAILED}: {error.message}"
    body = error.body_text or (f'{{"code":"{error.code}","message":"{error.message}"}}' if error.code else "")
    if error.method == "GET":
        text = (
            f"Call to {error.endpoint} on {deploy_url} returned an unsuccessful response: {body}"
            if body
            else f"Call to {error.endpoint} on {deploy_url} returned no response"
        )
    else:
        text = (
            f"Call to {error.endpoint} on {deploy_url} returned an unsuccessful response ({error.status}): {body}"
            if body
            else (
                f"Call to {error.endpoint} on {deploy_url} returned an unsuccessful response with no content "
                f"({error.status})"
            )
        )
    hint = _HINTS.get(error.status)
    return f"{text} {hint}" if hint else text


def user_error_text(error: BaseException, deploy_url: str | None) -> str | None:
    """The text of an error the user can act on, or None for an internal failure (a bug: log it)."""
    if isinstance(error, ConvexApiError):
        return http_error_text(error, deploy_url or "")
    if isinstance(error, ConfigurationError | SelectionMappingError | FivetranStateError | TypeMapError):
        return str(error)
    if isinstance(error, ConvexError):
        return error.user_message
    return None


def internal_error_text(error: BaseException) -> str:
    return (
        f"The Convex connector failed unexpectedly ({type(error).__name__}). The sync will resume from the "
        "last checkpoint when Fivetran retries it; if this keeps happening, report it with the connector's logs."
    )
