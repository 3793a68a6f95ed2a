"""JSON-line logging on stdout for the Fivetran connectors (fivetran-sdk.md §5.2).

Every record becomes one line ``{"level": "INFO"|"WARNING"|"SEVERE", "message": ..., "message-origin": ...}``.
Deploy keys are registered with ``register_secret`` (``parse_configuration`` does it) and a filter replaces
them wherever they appear in a message or a traceback, so a key can never reach Fivetran's log view.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Final, Literal, TextIO

import orjson

from connectors.constants import FIVETRAN_LOG_ORIGIN_DESTINATION, FIVETRAN_LOG_ORIGIN_SOURCE

LogOrigin = Literal["sdk_connector", "sdk_destination"]
LOG_ORIGINS: Final = frozenset({FIVETRAN_LOG_ORIGIN_SOURCE, FIVETRAN_LOG_ORIGIN_DESTINATION})
REDACTED: Final = "[REDACTED]"
# Shorter values are not treated as secrets: replacing every occurrence of a 3-letter word would garble logs
# and protects nothing (such a key could not be a real deploy key).
MIN_SECRET_LENGTH: Final = 8
LOGGER_NAME: Final = "convex_fivetran"


class SecretRegistry:
    """The secrets to redact from logs; thread-safe, shared by every handler of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add(self, secret: str) -> None:
        candidates = {secret}
        # Deploy keys look like "prod:<deployment>|<secret>": the part after "|" is the secret on its own.
        _, bar, tail = secret.partition("|")
        if bar:
            candidates.add(tail)
        new = {c for c in candidates if len(c) >= MIN_SECRET_LENGTH}
        if new - self._secrets:
            with self._lock:
                self._secrets = self._secrets | new

    def redact(self, text: str) -> str:
        # Longest first, so a full key is replaced before the secret part it contains.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


SECRETS: Final = SecretRegistry()


def register_secret(secret: str) -> None:
    """Never let ``secret`` appear in a log line of this process."""
    SECRETS.add(secret)


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record's message and exception text with every registered secret replaced."""

    def __init__(self, registry: SecretRegistry = SECRETS) -> None:
        super().__init__()
        self._registry = registry
        self._plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._registry.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._registry.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._registry.redact(record.stack_info)
        return True


def fivetran_level(levelno: int) -> str:
    """Fivetran knows three levels; ERROR and CRITICAL are SEVERE, DEBUG is INFO."""
    if levelno >= logging.ERROR:
        return "SEVERE"
    if levelno >= logging.WARNING:
        return "WARNING"
    return "INFO"


class JsonLineFormatter(logging.Formatter):
    def __init__(self, origin: LogOrigin) -> None:
        if origin not in LOG_ORIGINS:
            raise ValueError(f"unknown message-origin {origin!r}; use one of {sorted(LOG_ORIGINS)}")
        super().__init__()
        self._origin = origin

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{record.stack_info}"
        line = {"level": fivetran_level(record.levelno), "message": message, "message-origin": self._origin}
        return orjson.dumps(line).decode()


def json_line_handler(origin: LogOrigin, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing Fivetran JSON lines to ``stream`` (stdout by default) with secrets redacted."""
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(JsonLineFormatter(origin))
    handler.addFilter(RedactSecretsFilter())
    return handler


def configure_logging(origin: LogOrigin, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Route every log record of the process (root logger) to one JSON-line handler on stdout."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(json_line_handler(origin, stream))
    root.setLevel(level)
