"""The client's HTTP transport: one pooled ``requests.Session``, retries that never write twice, and error
answers turned into the shared error classes.

Retry policy: exponential backoff with full jitter (and ``Retry-After`` on 429/503) on 429, 5xx and
connection failures, never on other 4xx. That holds for idempotent calls (exports, dedup imports,
``apply_fivetran_operations``, ``clear_tables``, index and table calls, ``get_schema``): repeating them
converges. A non-idempotent call (an append-mode import, ``idempotent=False``) is repeated only when the
request provably did not reach the server (the connection was refused or never opened) or the server
answered 429 (rate limited before doing anything). After a 5xx, a read timeout or a dropped connection the
server may have committed part of it, so ``AmbiguousWriteError`` is raised instead of a retry.

The deploy key is only ever placed in the ``Authorization`` header: it is masked in reprs and scrubbed from
error texts.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from connectors.client.config import ClientConfig
from connectors.client.errors import (
    AmbiguousWriteError,
    ConvexApiError,
    ConvexConnectionError,
    api_error,
)
from connectors.client.wire import orjson_default
from connectors.constants import AUTH_SCHEME, CLIENT_HEADER, JSON_MEDIA_TYPE

__all__ = ["MAX_RETRY_AFTER_S", "Transport"]

_log = logging.getLogger("connectors.client")

_POOL_MAXSIZE: Final = 8
# Upper bound for a server-sent Retry-After so a misbehaving proxy cannot park a sync for hours.
MAX_RETRY_AFTER_S: Final = 300.0
# Error bodies from proxies can be whole HTML pages; keep messages readable.
_MAX_BODY_TEXT: Final = 2000
_REDACTED: Final = "<redacted>"
# Connection failures after which a request may have been sent (and processed) in part or in whole.
_CONNECTION_FAILURES: Final = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class _ConvexKeyAuth(AuthBase):
    """Sets ``Authorization: Convex <key>``. Using session auth (rather than a default header) also stops
    requests from replacing it with ``~/.netrc`` credentials."""

    def __init__(self, key: str) -> None:
        self._header = f"{AUTH_SCHEME} {key}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._header
        return r

    def __repr__(self) -> str:
        return "_ConvexKeyAuth('***')"


class Transport:
    """Sends one call with the retry policy above; thread-safe (pooled connections)."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        sleep: Callable[[float], None],
        rand: Callable[[], float],
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._rand = rand
        self._secrets = _secret_variants(config.deploy_key)
        session = requests.Session()
        # Our own retry loop decides what to retry; urllib3 must not retry underneath it.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=_POOL_MAXSIZE, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.auth = _ConvexKeyAuth(config.deploy_key)
        session.headers[CLIENT_HEADER] = config.client_header
        session.headers["Accept-Encoding"] = "gzip, deflate" if config.gzip else "identity"
        # The environment (proxies, NO_PROXY, CA bundle) is read once here: requests would otherwise read it
        # again on every call (~0.3 ms each). Every call goes to the one deployment URL, so one answer serves.
        session.proxies.update(requests.utils.get_environ_proxies(config.deployment_url))
        env_settings = session.merge_environment_settings(config.deployment_url, {}, None, None, None)
        session.verify = env_settings["verify"]
        session.trust_env = False
        self.session = session

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> requests.Response:
        """Send with retries. ``json_body`` None means no body (no endpoint takes a bare ``null``)."""
        url = self.config.deployment_url + path
        data: bytes | None = None
        headers: dict[str, str] = {}
        if json_body is not None:
            data = orjson.dumps(json_body, default=orjson_default)
            headers["Content-Type"] = JSON_MEDIA_TYPE
        max_retries = self.config.max_retries
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self.session.request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=self.config.timeout_s,
                )
            except _CONNECTION_FAILURES as exc:
                detail = self.redact(f"{type(exc).__name__}: {exc}")
                if not idempotent and not _provably_unsent(exc):
                    # `from None`: the requests exception holds the prepared request, headers included.
                    raise AmbiguousWriteError(
                        endpoint=endpoint,
                        method=method,
                        status=0,
                        code="",
                        cause=f"the connection failed after the request was sent ({detail})",
                    ) from None
                if attempt > max_retries:
                    raise ConvexConnectionError(
                        endpoint=endpoint, method=method, message=detail, attempts=attempt
                    ) from None
                delay = self._backoff(attempt)
                reason = type(exc).__name__
            except requests.RequestException as exc:
                raise ConvexConnectionError(
                    endpoint=endpoint,
                    method=method,
                    message=self.redact(f"{type(exc).__name__}: {exc}"),
                    attempts=attempt,
                    retriable=False,
                ) from None
            else:
                if 200 <= resp.status_code < 300:
                    return resp
                error = self._api_error(endpoint, method, resp)
                if not idempotent and resp.status_code >= 500:
                    raise AmbiguousWriteError(
                        endpoint=endpoint,
                        method=method,
                        status=resp.status_code,
                        code=error.code,
                        cause=f"the server answered {resp.status_code} {error.code or error.message}".rstrip(),
                    ) from None
                if not error.retriable or attempt > max_retries:
                    raise error
                retry_after = _retry_after_s(resp) if resp.status_code in (429, 503) else None
                delay = retry_after if retry_after is not None else self._backoff(attempt)
                reason = f"HTTP {resp.status_code} {error.code}".rstrip()
            _log.warning(
                "Convex %s %s failed (%s); retry %d/%d in %.2f s",
                method,
                endpoint,
                reason,
                attempt,
                max_retries,
                delay,
            )
            self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^(attempt-1))].
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * (2 ** (attempt - 1)))
        return self._rand() * ceiling

    def _api_error(self, endpoint: str, method: str, resp: requests.Response) -> ConvexApiError:
        text = self.redact(resp.content.decode("utf-8", errors="replace"))
        code, message = "", text
        try:
            parsed = orjson.loads(resp.content) if resp.content else None
        except orjson.JSONDecodeError:
            parsed = None
        if (
            isinstance(parsed, dict)
            and isinstance(parsed.get("code"), str)
            and isinstance(parsed.get("message"), str)
        ):
            code, message = self.redact(parsed["code"]), self.redact(parsed["message"])
        return api_error(
            endpoint=endpoint,
            method=method,
            status=resp.status_code,
            code=code,
            message=_truncate(message),
            body_text=_truncate(text),
        )

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if len(secret) >= _MIN_SUBSTRING_SECRET:
                text = text.replace(secret, _REDACTED)
            else:
                # A key this short is no real deploy key (a typo, a placeholder), and masking every occurrence
                # of its few letters would garble the message: mask it where it stands as a whole token.
                text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])", _REDACTED, text)
        return text


def _provably_unsent(exc: requests.RequestException) -> bool:
    """True when no byte of the request can have reached the server: the TCP connection was never
    established (refused, unresolvable host, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    reason = exc.args[0]
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


# Secrets at least this long are masked wherever they appear, even inside other text.
_MIN_SUBSTRING_SECRET: Final = 8


def _secret_variants(key: str) -> tuple[str, ...]:
    # Keys may carry a type prefix ("prod:name|secret"); the server may echo either part.
    variants = {key}
    if "|" in key:
        tail = key.split("|", 1)[1]
        if len(tail) >= 8:
            variants.add(tail)
    return tuple(sorted(variants, key=len, reverse=True))


def _retry_after_s(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _truncate(text: str) -> str:
    if len(text) <= _MAX_BODY_TEXT:
        return text
    return text[:_MAX_BODY_TEXT] + f"… ({len(text) - _MAX_BODY_TEXT} more characters)"
