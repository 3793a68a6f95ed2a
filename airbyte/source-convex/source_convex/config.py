"""The source's configuration, validated once, with errors that name the key and what to put there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from connectors.client import ClientConfig, InvalidClientConfigError

CLIENT_NAME: Final = "airbyte-export"
"""``Convex-Client: airbyte-export-<version>``: what the published connector sends (with its own version)."""


class SourceConfigError(ValueError):
    """An unusable configuration; the text names the key and what to fix (never the key's value)."""


@dataclass(frozen=True)
class SourceConfig:
    deployment_url: str
    access_key: str
    components: tuple[str, ...] | None = None  # None: every component

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> SourceConfig:
        url = raw.get("deployment_url")
        key = raw.get("access_key")
        if not isinstance(url, str) or not url.strip():
            raise SourceConfigError(
                "`deployment_url` is missing: set it to the deployment's URL, e.g. https://murky-swan-635.convex.cloud"
            )
        if not isinstance(key, str) or not key.strip():
            raise SourceConfigError("`access_key` is missing: set it to a deploy key of the deployment")
        components = raw.get("components")
        if components is not None and (
            not isinstance(components, list) or not all(isinstance(c, str) for c in components)
        ):
            raise SourceConfigError('`components` must be a list of component paths (strings; "" = the app)')
        config = cls(url.strip(), key, tuple(c.strip("/") for c in components) if components else None)
        config.client_config()  # the URL and key rules live in ClientConfig
        return config

    def client_config(self, *, max_retries: int = 6) -> ClientConfig:
        from source_convex import __version__

        try:
            return ClientConfig(
                self.deployment_url,
                self.access_key,
                client_name=CLIENT_NAME,
                client_version=__version__,
                max_retries=max_retries,
            )
        except InvalidClientConfigError as exc:
            where = "`access_key`" if "key" in exc.message.lower() else "`deployment_url`"
            raise SourceConfigError(f"{where}: {exc.message}") from None

    def includes_component(self, path: str) -> bool:
        return self.components is None or path in self.components
