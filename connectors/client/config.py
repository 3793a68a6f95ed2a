"""Client configuration: connection settings validated once, with the deploy key masked in reprs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from connectors.constants import PACKAGE_NAME, PACKAGE_VERSION
from connectors.errors import ConfigurationError

__all__ = ["ClientConfig", "InvalidClientConfigError"]


class InvalidClientConfigError(ConfigurationError, ValueError):
    """The client configuration is unusable. The message never contains the deploy key."""

    status = 0

    def __init__(self, message: str) -> None:
        super().__init__("InvalidClientConfig", message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, repr=False)
class ClientConfig:
    """Connection settings, validated once at construction.

    ``deployment_url`` is normalized to end with ``/`` (like the Rust client's ``Url``), so error texts of
    the form ``Call to <endpoint> on <deploy_url>`` can use it directly. Surrounding whitespace of the key
    is dropped (pasted keys often carry a newline, which is never part of a key).
    ``short_selection_spelling`` sends ``incl``/``excl``, which every server accepts, while deployments
    older than 2026-07-21 may accept only those (fivetran-source.md §6.6).
    """

    deployment_url: str
    deploy_key: str
    client_name: str = PACKAGE_NAME
    client_version: str = PACKAGE_VERSION
    timeout_s: float = 120.0  # above the server's 60 s page budget
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    short_selection_spelling: bool = True
    # None = automatic: ask for gzip except on loopback, where compressing only burns CPU on both ends.
    accept_gzip: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "deployment_url", _normalize_deployment_url(self.deployment_url))
        if not isinstance(self.deploy_key, str) or not self.deploy_key.strip():
            raise InvalidClientConfigError("The deploy key must be a non-empty string")
        key = self.deploy_key.strip()
        if not _is_header_safe(key):
            raise InvalidClientConfigError(
                "The deploy key contains characters that are not allowed (only printable ASCII)"
            )
        object.__setattr__(self, "deploy_key", key)
        for name in ("client_name", "client_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or not _is_header_safe(value) or " " in value:
                raise InvalidClientConfigError(f"{name} must be a non-empty printable ASCII string")
        if not (
            isinstance(self.timeout_s, int | float) and math.isfinite(self.timeout_s) and self.timeout_s > 0
        ):
            raise InvalidClientConfigError("timeout_s must be a positive number")
        if (
            not isinstance(self.max_retries, int)
            or isinstance(self.max_retries, bool)
            or self.max_retries < 0
        ):
            raise InvalidClientConfigError("max_retries must be a non-negative integer")
        if not (self.backoff_base_s >= 0 and math.isfinite(self.backoff_base_s)):
            raise InvalidClientConfigError("backoff_base_s must be a non-negative number")
        if not (self.backoff_max_s >= self.backoff_base_s and math.isfinite(self.backoff_max_s)):
            raise InvalidClientConfigError("backoff_max_s must be a number >= backoff_base_s")

    @property
    def gzip(self) -> bool:
        if self.accept_gzip is not None:
            return self.accept_gzip
        host = (urlsplit(self.deployment_url).hostname or "").lower()
        return not (host == "localhost" or host.startswith("127.") or host == "::1")

    @property
    def client_header(self) -> str:
        """The ``Convex-Client`` value; it always contains a ``-`` as the server requires (§2.2)."""
        return f"{self.client_name}-{self.client_version}"

    def __repr__(self) -> str:
        return (
            f"ClientConfig(deployment_url={self.deployment_url!r}, deploy_key='***', "
            f"client_name={self.client_name!r}, client_version={self.client_version!r}, "
            f"timeout_s={self.timeout_s!r}, max_retries={self.max_retries!r}, "
            f"backoff_base_s={self.backoff_base_s!r}, backoff_max_s={self.backoff_max_s!r}, "
            f"short_selection_spelling={self.short_selection_spelling!r}, accept_gzip={self.accept_gzip!r})"
        )


def _is_header_safe(value: str) -> bool:
    return all(0x20 <= ord(ch) < 0x7F for ch in value)


def _normalize_deployment_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidClientConfigError("The deployment URL must be a non-empty string")
    text = url.strip()
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise InvalidClientConfigError(f"Invalid deployment URL {text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidClientConfigError(
            f"The deployment URL must start with http:// or https://, got {text!r}"
        )
    if not parts.hostname:
        raise InvalidClientConfigError(f"The deployment URL has no host: {text!r}")
    if parts.username is not None or parts.password is not None:
        # Credentials in the URL would leak into every error message that names the URL.
        raise InvalidClientConfigError("The deployment URL must not contain credentials")
    if parts.query or parts.fragment:
        raise InvalidClientConfigError(f"The deployment URL must not have a query or fragment: {text!r}")
    path = parts.path.rstrip("/")
    return f"{scheme}://{parts.netloc}{path}/"
