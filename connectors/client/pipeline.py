"""Page pipelining for the export iterators: the next page is requested *before* the current one is
decoded, so the server builds page k+1 while the client decodes page k (a measured optimisation: HTTP/1.1
allows a request to be sent before the previous response was read). Single-threaded, so no GIL contention.

Only an optimization: on any failure or non-200 answer the pager discards the pipeline and repeats the
request through the regular path (``Transport``), which has the retries and the error reporting. Export
calls are reads, so repeating one is always safe.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import certifi

from connectors.client.config import ClientConfig

if TYPE_CHECKING:
    from connectors.client.api import ConvexClient

__all__ = ["PagePipeline", "Pager", "PipelinedResponse"]


class PipelinedResponse:
    """What error reporting needs from a response that came over the page pipeline."""

    class _Request:
        method = "POST"

    request = _Request()

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class PagePipeline:
    """A keep-alive connection on which requests are sent ahead of reading their answers."""

    def __init__(self, config: ClientConfig, path: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(config.deployment_url + path)
        self._path = parts.path
        self._headers = dict(headers)
        self._gzip = config.gzip
        self._headers["Accept-Encoding"] = "gzip" if self._gzip else "identity"
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=certifi.where())
            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=config.timeout_s, context=context
            )
        else:
            self._conn = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=config.timeout_s
            )

    def send(self, body: bytes) -> None:
        self._conn.request("POST", self._path, body=body, headers=self._headers)

    def receive(self) -> tuple[int, bytes]:
        resp = self._conn.getresponse()
        data = resp.read()
        if resp.getheader("Content-Encoding", "").lower() == "gzip":
            data = gzip.decompress(data)
        return resp.status, data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


class Pager:
    """Drives a paging loop over a ``PagePipeline``: the current page comes from the pipeline when the
    next request was already sent and answered 200, else from the regular (retrying) request."""

    def __init__(self, client: ConvexClient, endpoint: str) -> None:
        self._client = client
        self._endpoint = endpoint
        self._pipe = client._open_pipeline(endpoint)
        self._sent = False

    def current(
        self, fetch: Callable[..., tuple[Any, dict[str, Any]]], *args: Any
    ) -> tuple[Any, dict[str, Any]]:
        if self._sent and self._pipe is not None:
            self._sent = False
            try:
                status, data = self._pipe.receive()
            except (OSError, http.client.HTTPException, EOFError, gzip.BadGzipFile):
                status, data = 0, b""
            if status == 200:
                return self._client._pipelined_result(self._endpoint, status, data)
            self.close()  # broken, or an error answer: the regular path repeats it with retries
        return fetch(*args)

    def request_next(self, body: bytes) -> None:
        if self._pipe is None:
            return
        try:
            self._pipe.send(body)
            self._sent = True
        except (OSError, http.client.HTTPException):
            self.close()

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        self._sent = False
