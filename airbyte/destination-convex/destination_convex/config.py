"""The destination's configuration: ``deployment_url`` and ``access_key`` (spec.json), validated once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.client import ClientConfig, InvalidClientConfigError
from connectors.constants import PACKAGE_VERSION
from connectors.errors import ConfigurationError

__all__ = ["CLIENT_NAME", "DestinationConfig", "InvalidDestinationConfigError"]

# The published destination sends ``Convex-Client: streaming-import-0.1.0``; the server knows the type.
CLIENT_NAME = "streaming-import"


class InvalidDestinationConfigError(ConfigurationError):
    def __init__(self, message: str) -> None:
        super().__init__("InvalidConfig", message, status=400)


@dataclass(frozen=True, repr=False)
class DestinationConfig:
    deployment_url: str
    access_key: str

    def __repr__(self) -> str:
        return f"DestinationConfig(deployment_url={self.deployment_url!r}, access_key='***')"

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> DestinationConfig:
        missing = [k for k in ("deployment_url", "access_key") if not raw.get(k)]
        if missing:
            raise InvalidDestinationConfigError(
                f"The configuration is missing {' and '.join(missing)}: set deployment_url to the deployment's"
                " URL (e.g. https://happy-animal-123.convex.cloud) and access_key to a deploy key with the"
                " deployment:backups:import permission"
            )
        url, key = raw["deployment_url"], raw["access_key"]
        if not isinstance(url, str) or not isinstance(key, str):
            raise InvalidDestinationConfigError("deployment_url and access_key must be strings")
        config = cls(deployment_url=url.strip(), access_key=key)
        config.client_config()  # validates both now, with the client's messages
        return config

    def client_config(self, *, max_retries: int = 6) -> ClientConfig:
        try:
            return ClientConfig(
                deployment_url=self.deployment_url,
                deploy_key=self.access_key,
                client_name=CLIENT_NAME,
                client_version=PACKAGE_VERSION,
                max_retries=max_retries,
            )
        except InvalidClientConfigError as exc:
            what = "access_key" if "key" in exc.message.lower() else "deployment_url"
            raise InvalidDestinationConfigError(f"{what}: {exc.message}") from None
