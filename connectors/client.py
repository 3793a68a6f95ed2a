"""The one typed HTTP client every connector uses to talk to a Convex deployment.

Covers streaming export (``shared/spec/streaming-export.md``) and streaming import
(``shared/spec/streaming-import.md``). Wire behaviour follows the real clients: the export calls send what
Convex's Rust Fivetran source sends (POST JSON bodies with every key present, ``format:
"convex_encoded_json"``), the import calls what Airbyte's ``destination-convex`` sends (including the GET
with a JSON body on ``primary_key_indexes_ready``).

Transport policy: one pooled ``requests.Session``; bodies serialized and parsed with ``orjson`` (timestamps
are integers above 2^53 and must never pass through a float); retries with exponential backoff and full
jitter on 429, 5xx and connection failures, never on other 4xx. The deploy key is only ever placed in the
``Authorization`` header: it is masked in reprs and scrubbed from error texts.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import http.client
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Final, Literal, NamedTuple, NoReturn
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from connectors.errors import ConvexError
from connectors.perf import gc_paused
from connectors.selection import Selection

__all__ = [
    "PACKAGE_VERSION",
    "AirbyteMessage",
    "AirbyteStream",
    "ClientConfig",
    "ConvexApiError",
    "ConvexClient",
    "ConvexConnectionError",
    "DeltaPage",
    "ExportFormat",
    "ExportedValue",
    "FivetranOperation",
    "IndexWaitTimeoutError",
    "InvalidClientConfigError",
    "SnapshotPage",
    "TableColumns",
    "UnexpectedResponseError",
    "encode_row",
]

_log = logging.getLogger(__name__)


def _package_version() -> str:
    try:
        return metadata.version("convex-connectors")
    except metadata.PackageNotFoundError:
        # Running from a source checkout without an install; keep in step with pyproject.toml.
        return "0.1.0"


PACKAGE_VERSION: Final = _package_version()

ExportFormat = Literal["json", "convex_clean_json", "convex_encoded_json", "convex_json", "export_json"]
FivetranOperationType = Literal["Upsert", "Update", "HardDelete"]
TruncateDeleteType = Literal["SoftDelete", "HardDelete"]

_CLEAN_FORMATS: Final = frozenset({"json", "convex_clean_json"})
_ENCODED_FORMATS: Final = frozenset({"convex_encoded_json", "convex_json"})
_EXPORT_FORMATS: Final = frozenset({"export_json"})
# Document fields kept besides user fields; any other "_" key is reserved metadata (spec §8).
_SYSTEM_FIELDS: Final = frozenset({"_id", "_creationTime"})

_EVERYTHING: Final = Selection.everything()
_POOL_MAXSIZE: Final = 8
# Upper bound for a server-sent Retry-After so a misbehaving proxy cannot park a sync for hours.
MAX_RETRY_AFTER_S: Final = 300.0
# Error bodies from proxies can be whole HTML pages; keep messages readable.
_MAX_BODY_TEXT: Final = 2000
_REDACTED: Final = "<redacted>"


# --- configuration -------------------------------------------------------------------------------------


class InvalidClientConfigError(ValueError):
    """The client configuration is unusable. The message never contains the deploy key."""


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
    client_name: str = "convex-connectors"
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


# --- errors --------------------------------------------------------------------------------------------


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
        super().__init__(code, message, status=status)
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


class ConvexConnectionError(ConvexApiError):
    """The deployment could not be reached (refused, reset, timed out), after retries. ``status`` is 0."""

    def __init__(self, *, endpoint: str, method: str, message: str, attempts: int, retriable: bool = True):
        super().__init__(endpoint=endpoint, method=method, status=0, code="ConnectionFailed", message=message)
        self.attempts = attempts
        self._retriable = retriable

    @property
    def retriable(self) -> bool:
        return self._retriable

    def __str__(self) -> str:
        return f"{self.endpoint}: could not reach the deployment after {self.attempts} attempt(s): {self.message}"


class UnexpectedResponseError(ConvexApiError):
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


class IndexWaitTimeoutError(ConvexError):
    """``wait_for_primary_key_indexes`` gave up; the indexes are still backfilling."""

    def __init__(self, tables: Sequence[str], timeout_s: float) -> None:
        super().__init__(
            "PrimaryKeyIndexesNotReady",
            f"Primary key indexes of {', '.join(tables)} were still backfilling after {timeout_s:g} s",
            status=504,
        )
        self.tables = tuple(tables)
        self.timeout_s = timeout_s


# --- wire types: export --------------------------------------------------------------------------------


class ExportedValue(NamedTuple):
    """One exported document revision.

    ``document`` holds the document fields only (``_id``, ``_creationTime``, user fields). For the encoded
    formats the fields are decoded into Python Convex values (int = Int64, float = Float64, bytes = Bytes);
    for the clean ``json`` format they are the JSON as received. ``deleted`` is always False in snapshots.
    (A named tuple: pages hold thousands of these, and tuples are the cheapest immutable record.)
    """

    component: str
    table: str
    ts: int
    deleted: bool
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    values: list[ExportedValue]
    snapshot: int
    cursor: str | None
    has_more: bool


@dataclass(frozen=True, slots=True)
class DeltaPage:
    values: list[ExportedValue]
    cursor: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class TableColumns:
    name: str
    columns: tuple[str, ...]


# --- wire types: import --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AirbyteStream:
    """A ``tables`` entry of import_airbyte_records; ``primary_key`` None = append mode, else dedup."""

    primary_key: list[list[str]] | None
    json_schema: Any

    def to_json(self) -> dict[str, Any]:
        return {"primaryKey": self.primary_key, "jsonSchema": self.json_schema}


@dataclass(frozen=True, slots=True)
class AirbyteMessage:
    table_name: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"tableName": self.table_name, "data": self.data}


@dataclass(frozen=True, slots=True)
class FivetranOperation:
    """One BatchWriteRow; ``row`` is already Convex internal JSON (use ``encode_row`` to build it)."""

    table: str
    operation: FivetranOperationType
    row: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "operation": self.operation, "row": self.row}


def encode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Encode a row of Python Convex values into Convex internal JSON (values-and-ids.md §2.4)."""
    from connectors import values  # lazy: written concurrently, and only import paths need it

    return {key: values.to_encoded_json(value) for key, value in row.items()}


# --- the client ----------------------------------------------------------------------------------------


class _ConvexKeyAuth(AuthBase):
    """Sets ``Authorization: Convex <key>``. Using session auth (rather than a default header) also stops
    requests from replacing it with ``~/.netrc`` credentials."""

    def __init__(self, key: str) -> None:
        self._header = f"Convex {key}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._header
        return r

    def __repr__(self) -> str:
        return "_ConvexKeyAuth('***')"


class _PipelinedResponse:
    """What error reporting needs from a response that came over the page pipeline."""

    class _Request:
        method = "POST"

    request = _Request()

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class _PagePipeline:
    """A keep-alive connection on which the next export page is requested *before* the current one is
    decoded, so the server builds page k+1 while the client decodes page k (HTTP/1.1 allows a request to be
    sent before the previous response was read). Single-threaded, so no GIL contention.

    Only an optimization: on any failure or non-200 answer the caller discards the pipeline and repeats
    the request through the regular path, which has the retries and the error reporting.
    """

    def __init__(self, config: ClientConfig, path: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(config.deployment_url + path)
        self._path = parts.path
        self._headers = dict(headers)
        self._gzip = config.gzip
        self._headers["Accept-Encoding"] = "gzip" if self._gzip else "identity"
        if parts.scheme == "https":
            import ssl

            context = ssl.create_default_context(cafile=requests.certs.where())
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


class _Pager:
    """Drives a paging loop over a ``_PagePipeline``: the current page comes from the pipeline when the
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


class ConvexClient:
    """Typed client for one deployment. Thread-safe for concurrent calls (pooled connections).

    ``sleep``, ``rand`` and ``clock`` are injectable so tests neither wait nor depend on randomness.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._secrets = _secret_variants(config.deploy_key)
        session = requests.Session()
        # Our own retry loop decides what to retry; urllib3 must not retry underneath it.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=_POOL_MAXSIZE, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.auth = _ConvexKeyAuth(config.deploy_key)
        session.headers["Convex-Client"] = config.client_header
        session.headers["Accept-Encoding"] = "gzip, deflate" if config.gzip else "identity"
        self._session = session

    @property
    def config(self) -> ClientConfig:
        return self._config

    def __repr__(self) -> str:
        return f"ConvexClient({self._config.deployment_url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ConvexClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- streaming export ------------------------------------------------------------------------------

    def test_streaming_export_connection(self) -> None:
        """Checks plan and credentials; the contract's success body is exactly JSON ``null`` (§9)."""
        endpoint = "test_streaming_export_connection"
        resp = self._request("GET", endpoint, f"api/{endpoint}")
        body = self._parse_json(endpoint, resp)
        if body is not None:
            self._unexpected(endpoint, resp, f"expected the JSON body `null`, got {_describe(body)}")

    def list_snapshot(
        self,
        *,
        snapshot: int | None = None,
        cursor: str | None = None,
        selection: Selection = _EVERYTHING,
        fmt: ExportFormat = "convex_encoded_json",
    ) -> SnapshotPage:
        """One page of a consistent snapshot. First call: snapshot and cursor None."""
        resp, raw = self._fetch_snapshot(snapshot, cursor, selection, fmt)
        return self._snapshot_page(resp, raw, fmt)

    def _fetch_snapshot(
        self, snapshot: int | None, cursor: str | None, selection: Selection, fmt: ExportFormat
    ) -> tuple[requests.Response, dict[str, Any]]:
        endpoint = "list_snapshot"
        body = {
            "snapshot": snapshot,
            "cursor": cursor,
            "selection": selection.to_json(short=self._config.short_selection_spelling),
            "format": fmt,
        }
        resp = self._request("POST", endpoint, f"api/{endpoint}", json_body=body)
        return resp, self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))

    def _snapshot_body(
        self, snapshot: int | None, cursor: str | None, selection: Selection, fmt: ExportFormat
    ) -> bytes:
        return orjson.dumps(
            {
                "snapshot": snapshot,
                "cursor": cursor,
                "selection": selection.to_json(short=self._config.short_selection_spelling),
                "format": fmt,
            }
        )

    def _deltas_body(self, cursor: int, selection: Selection, fmt: ExportFormat) -> bytes:
        return orjson.dumps(
            {
                "cursor": cursor,
                "selection": selection.to_json(short=self._config.short_selection_spelling),
                "format": fmt,
            }
        )

    # -- page pipelining ---------------------------------------------------------------------------------

    def _open_pipeline(self, endpoint: str) -> _PagePipeline | None:
        url = self._config.deployment_url + f"api/{endpoint}"
        # http.client knows no proxies: use the pipeline only where requests would connect directly.
        if self._session.trust_env and requests.utils.get_environ_proxies(url):
            return None
        headers = {
            "Authorization": f"Convex {self._config.deploy_key}",
            "Convex-Client": self._config.client_header,
            "Content-Type": "application/json",
        }
        return _PagePipeline(self._config, f"api/{endpoint}", headers)

    def _pipelined_result(self, endpoint: str, status: int, data: bytes) -> tuple[Any, dict[str, Any]]:
        resp: Any = _PipelinedResponse(status)
        try:
            with gc_paused():
                body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._unexpected(endpoint, resp, f"Failed to deserialize query result: {exc}")
        return resp, self._expect_object(endpoint, resp, body)

    def _snapshot_header(
        self, resp: requests.Response, raw: Mapping[str, Any]
    ) -> tuple[int, str | None, bool]:
        endpoint = "list_snapshot"
        snap = raw.get("snapshot")
        if not _is_int(snap):
            self._unexpected(endpoint, resp, f"`snapshot` must be an integer, got {_describe(snap)}")
        next_cursor = raw.get("cursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            self._unexpected(
                endpoint, resp, f"`cursor` must be a string or null, got {_describe(next_cursor)}"
            )
        has_more = self._expect_bool(endpoint, resp, raw, "hasMore")
        if has_more and next_cursor is None:
            self._unexpected(endpoint, resp, "Missing cursor when has_more was set")
        return snap, next_cursor, has_more

    def _snapshot_page(self, resp: requests.Response, raw: dict[str, Any], fmt: ExportFormat) -> SnapshotPage:
        snap, next_cursor, has_more = self._snapshot_header(resp, raw)
        values = self._parse_values("list_snapshot", resp, raw, fmt, is_delta=False)
        return SnapshotPage(values=values, snapshot=snap, cursor=next_cursor, has_more=has_more)

    def iter_snapshot_pages(
        self,
        *,
        selection: Selection = _EVERYTHING,
        snapshot: int | None = None,
        cursor: str | None = None,
        fmt: ExportFormat = "convex_encoded_json",
    ) -> Iterator[SnapshotPage]:
        """Every page until ``hasMore`` is false. Empty pages with ``hasMore`` true are normal (a page
        never spans two tables) and are yielded so callers can checkpoint their cursor. After the first
        page the snapshot is pinned, and every page must report that same snapshot.

        The next page is requested before this one is decoded and consumed (see ``_PagePipeline``)."""
        pinned = snapshot
        endpoint = "list_snapshot"
        pager = _Pager(self, endpoint)
        try:
            while True:
                resp, raw = pager.current(self._fetch_snapshot, pinned, cursor, selection, fmt)
                snap, next_cursor, has_more = self._snapshot_header(resp, raw)
                if pinned is not None and snap != pinned:
                    raise UnexpectedResponseError(
                        endpoint=endpoint,
                        method="POST",
                        status=200,
                        message=f"snapshot changed between pages: requested {pinned}, got {snap}",
                    )
                pinned = snap
                if has_more:
                    if next_cursor == cursor:
                        # A server that does not advance would make us loop forever.
                        raise UnexpectedResponseError(
                            endpoint=endpoint, method="POST", status=200, message="cursor did not advance"
                        )
                    pager.request_next(self._snapshot_body(pinned, next_cursor, selection, fmt))
                page = self._snapshot_page(resp, raw, fmt)
                del resp, raw  # let the parsed page go before the next one is built
                yield page
                del page
                if not has_more:
                    return
                cursor = next_cursor
        finally:
            pager.close()

    def document_deltas(
        self,
        *,
        cursor: int,
        selection: Selection = _EVERYTHING,
        fmt: ExportFormat = "convex_encoded_json",
    ) -> DeltaPage:
        """One page of the change log after ``cursor`` (exclusive, ns)."""
        resp, raw = self._fetch_deltas(cursor, selection, fmt)
        return self._delta_page(resp, raw, fmt)

    def _fetch_deltas(
        self, cursor: int, selection: Selection, fmt: ExportFormat
    ) -> tuple[requests.Response, dict[str, Any]]:
        endpoint = "document_deltas"
        body = {
            "cursor": cursor,
            "selection": selection.to_json(short=self._config.short_selection_spelling),
            "format": fmt,
        }
        resp = self._request("POST", endpoint, f"api/{endpoint}", json_body=body)
        return resp, self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))

    def _delta_header(self, resp: requests.Response, raw: Mapping[str, Any]) -> tuple[int, bool]:
        next_cursor = raw.get("cursor")
        if not _is_int(next_cursor):
            self._unexpected(
                "document_deltas", resp, f"`cursor` must be an integer, got {_describe(next_cursor)}"
            )
        return next_cursor, self._expect_bool("document_deltas", resp, raw, "hasMore")

    def _delta_page(self, resp: requests.Response, raw: dict[str, Any], fmt: ExportFormat) -> DeltaPage:
        next_cursor, has_more = self._delta_header(resp, raw)
        values = self._parse_values("document_deltas", resp, raw, fmt, is_delta=True)
        return DeltaPage(values=values, cursor=next_cursor, has_more=has_more)

    def iter_delta_pages(
        self,
        cursor: int,
        *,
        selection: Selection = _EVERYTHING,
        fmt: ExportFormat = "convex_encoded_json",
    ) -> Iterator[DeltaPage]:
        """Every page until ``hasMore`` is false; the last page's cursor is where the next sync starts.
        The next page is requested before this one is decoded and consumed (see ``_PagePipeline``)."""
        endpoint = "document_deltas"
        pager = _Pager(self, endpoint)
        try:
            while True:
                resp, raw = pager.current(self._fetch_deltas, cursor, selection, fmt)
                next_cursor, has_more = self._delta_header(resp, raw)
                if next_cursor < cursor or (has_more and next_cursor == cursor):
                    raise UnexpectedResponseError(
                        endpoint=endpoint,
                        method="POST",
                        status=200,
                        message=f"cursor did not advance: requested {cursor}, got {next_cursor}",
                    )
                if has_more:
                    pager.request_next(self._deltas_body(next_cursor, selection, fmt))
                page = self._delta_page(resp, raw, fmt)
                del resp, raw  # let the parsed page go before the next one is built
                yield page
                del page
                if not has_more:
                    return
                cursor = next_cursor
        finally:
            pager.close()

    def json_schemas(
        self, *, delta_schema: bool = False, fmt: ExportFormat = "json", by_component: bool = False
    ) -> dict[str, Any]:
        """JSON Schemas per table (flat), or per component then table with ``by_component``."""
        endpoint = "json_schemas"
        params = {"deltaSchema": _bool_param(delta_schema), "format": fmt}
        if by_component:
            # Only sent when asked, so the request matches Airbyte's on servers without the flag.
            params["byComponent"] = "true"
        resp = self._request("GET", endpoint, f"api/{endpoint}", params=params)
        return self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))

    def get_table_column_names(self) -> dict[str, list[TableColumns]]:
        """Tables and top-level columns per component path (root = ``""``)."""
        endpoint = "get_table_column_names"
        resp = self._request("GET", endpoint, f"api/{endpoint}")
        raw = self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))
        by_component = raw.get("byComponent")
        if not isinstance(by_component, dict):
            self._unexpected(endpoint, resp, "`byComponent` must be an object")
        out: dict[str, list[TableColumns]] = {}
        for component, tables in by_component.items():
            if not isinstance(tables, list):
                self._unexpected(endpoint, resp, f"tables of component {component!r} must be a list")
            parsed: list[TableColumns] = []
            for entry in tables:
                name = entry.get("name") if isinstance(entry, dict) else None
                columns = entry.get("columns") if isinstance(entry, dict) else None
                if (
                    not isinstance(name, str)
                    or not isinstance(columns, list)
                    or not all(isinstance(c, str) for c in columns)
                ):
                    self._unexpected(endpoint, resp, f"invalid table entry in component {component!r}")
                parsed.append(TableColumns(name=name, columns=tuple(columns)))
            out[component] = parsed
        return out

    # --- streaming import ------------------------------------------------------------------------------

    def import_airbyte_records(
        self, tables: Mapping[str, AirbyteStream], messages: Sequence[AirbyteMessage]
    ) -> None:
        """One batch. An empty ``messages`` list is valid (Airbyte flushes on every state message)."""
        body = {
            "tables": {name: stream.to_json() for name, stream in tables.items()},
            "messages": [message.to_json() for message in messages],
        }
        self._import_call("POST", "import_airbyte_records", body)

    def clear_tables(self, names: Sequence[str]) -> None:
        """Atomically replace the tables by empty ones (created when missing), keeping their indexes."""
        self._import_call("PUT", "clear_tables", {"tableNames": list(names)})

    def replace_tables(self, mapping: Mapping[str, str]) -> None:
        """Legacy overwrite call; current servers always answer 400 ``OverwriteNotSupported``."""
        self._import_call("POST", "replace_tables", {"tableNames": dict(mapping)})

    def add_primary_key_indexes(self, indexes: Mapping[str, Sequence[Sequence[str]]]) -> None:
        """Create ``_by_airbyte_primary_key`` on each table; each inner list is one field path."""
        body = {"indexes": {table: [list(path) for path in paths] for table, paths in indexes.items()}}
        self._import_call("PUT", "add_primary_key_indexes", body)

    def primary_key_indexes_ready(self, tables: Sequence[str]) -> bool:
        # GET with a JSON body, exactly like Airbyte's destination (streaming-import.md §1).
        endpoint = "streaming_import/primary_key_indexes_ready"
        resp = self._request("GET", endpoint, f"api/{endpoint}", json_body={"tables": list(tables)})
        raw = self._expect_object(endpoint, resp, self._parse_json(endpoint, resp))
        return self._expect_bool(endpoint, resp, raw, "indexesReady")

    def wait_for_primary_key_indexes(
        self, tables: Sequence[str], timeout_s: float, poll_interval_s: float = 1.0
    ) -> None:
        """Poll until the indexes are backfilled; unlike Airbyte's destination this gives up after
        ``timeout_s`` with ``IndexWaitTimeoutError``."""
        deadline = self._clock() + timeout_s
        while True:
            if self.primary_key_indexes_ready(tables):
                return
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise IndexWaitTimeoutError(tables, timeout_s)
            self._sleep(min(poll_interval_s, remaining))

    def apply_fivetran_operations(self, rows: Sequence[FivetranOperation]) -> None:
        """Apply a batch of Upsert/Update/HardDelete rows in order (the body is a bare JSON array)."""
        self._import_call("POST", "apply_fivetran_operations", [row.to_json() for row in rows])

    def fivetran_create_table(self, table_definition: Mapping[str, Any]) -> None:
        """Create the table's system indexes; blocks server-side until the primary-key index is ready."""
        self._import_call("POST", "fivetran_create_table", {"tableDefinition": table_definition})

    def fivetran_truncate_table(
        self, table_name: str, delete_before: datetime | None, delete_type: TruncateDeleteType
    ) -> None:
        body = {
            "tableName": table_name,
            "deleteBefore": None if delete_before is None else _rfc3339_utc(delete_before),
            "deleteType": delete_type,
        }
        self._import_call("POST", "fivetran_truncate_table", body)

    def get_schema(self) -> dict[str, Any] | None:
        """The active ``DatabaseSchemaJson``, or None when the deployment has no schema."""
        endpoint = "streaming_import/get_schema"
        resp = self._request("GET", endpoint, f"api/{endpoint}")
        body = self._parse_json(endpoint, resp)
        if body is None:
            return None
        return self._expect_object(endpoint, resp, body)

    def version(self) -> str:
        """``GET /version`` (outside ``/api``): the server version as plain text."""
        resp = self._request("GET", "version", "version")
        return resp.content.decode("utf-8", errors="replace").strip()

    # --- transport -------------------------------------------------------------------------------------

    def _import_call(self, method: str, name: str, body: Any) -> None:
        # Import endpoints answer 200 with an empty body; any body content is ignored.
        endpoint = f"streaming_import/{name}"
        self._request(method, endpoint, f"api/{endpoint}", json_body=body)

    def _request(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send with retries. ``json_body`` None means no body (no endpoint takes a bare ``null``)."""
        url = self._config.deployment_url + path
        data: bytes | None = None
        headers: dict[str, str] = {}
        if json_body is not None:
            data = orjson.dumps(json_body, default=_orjson_default)
            headers["Content-Type"] = "application/json"
        max_retries = self._config.max_retries
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._session.request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=self._config.timeout_s,
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                detail = self._redact(f"{type(exc).__name__}: {exc}")
                if attempt > max_retries:
                    # `from None`: the requests exception holds the prepared request, headers included.
                    raise ConvexConnectionError(
                        endpoint=endpoint, method=method, message=detail, attempts=attempt
                    ) from None
                delay = self._backoff(attempt)
                reason = type(exc).__name__
            except requests.RequestException as exc:
                raise ConvexConnectionError(
                    endpoint=endpoint,
                    method=method,
                    message=self._redact(f"{type(exc).__name__}: {exc}"),
                    attempts=attempt,
                    retriable=False,
                ) from None
            else:
                if 200 <= resp.status_code < 300:
                    return resp
                error = self._api_error(endpoint, method, resp)
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
        ceiling = min(self._config.backoff_max_s, self._config.backoff_base_s * (2 ** (attempt - 1)))
        return self._rand() * ceiling

    def _api_error(self, endpoint: str, method: str, resp: requests.Response) -> ConvexApiError:
        text = self._redact(resp.content.decode("utf-8", errors="replace"))
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
            code, message = self._redact(parsed["code"]), self._redact(parsed["message"])
        return ConvexApiError(
            endpoint=endpoint,
            method=method,
            status=resp.status_code,
            code=code,
            message=_truncate(message),
            body_text=_truncate(text),
        )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    # --- response parsing ------------------------------------------------------------------------------

    def _unexpected(self, endpoint: str, resp: requests.Response, message: str) -> NoReturn:
        raise UnexpectedResponseError(
            endpoint=endpoint, method=resp.request.method or "", status=resp.status_code, message=message
        )

    def _parse_json(self, endpoint: str, resp: requests.Response) -> Any:
        try:
            with gc_paused():
                return orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            self._unexpected(endpoint, resp, f"Failed to deserialize query result: {exc}")

    def _expect_object(self, endpoint: str, resp: requests.Response, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            self._unexpected(
                endpoint,
                resp,
                f"Failed to deserialize query result: expected an object, got {_describe(body)}",
            )
        return body

    def _expect_bool(self, endpoint: str, resp: requests.Response, raw: Mapping[str, Any], key: str) -> bool:
        value = raw.get(key)
        if not isinstance(value, bool):
            self._unexpected(endpoint, resp, f"`{key}` must be a boolean, got {_describe(value)}")
        return value

    def _parse_values(
        self,
        endpoint: str,
        resp: requests.Response,
        raw: Mapping[str, Any],
        fmt: ExportFormat,
        *,
        is_delta: bool,
    ) -> list[ExportedValue]:
        items = raw.get("values")
        if not isinstance(items, list):
            self._unexpected(endpoint, resp, f"`values` must be a list, got {_describe(items)}")
        if not items:
            return []
        with gc_paused():
            return self._decode_values(endpoint, resp, items, fmt, is_delta=is_delta)

    def _decode_values(
        self, endpoint: str, resp: requests.Response, items: list[Any], fmt: ExportFormat, *, is_delta: bool
    ) -> list[ExportedValue]:
        decode = _decoder(fmt)
        out: list[ExportedValue] = []
        append = out.append
        system = _SYSTEM_FIELDS
        for item in items:
            if type(item) is not dict:
                self._unexpected(endpoint, resp, f"each value must be an object, got {_describe(item)}")
            # The parsed page is ours: metadata is popped and fields are decoded in place (the hot loop
            # of every export; scalars, the common case, are left where they are).
            component = item.pop("_component", None)
            table = item.pop("_table", None)
            ts = item.pop("_ts", None)
            if type(component) is not str or type(table) is not str or not _is_int(ts):
                self._unexpected(
                    endpoint, resp, "each value needs string `_component`, `_table` and integer `_ts`"
                )
            deleted = item.pop("_deleted", None if is_delta else False)
            if type(deleted) is not bool:
                # Required on deltas (the Rust client has no default); absent on snapshots.
                self._unexpected(endpoint, resp, f"`_deleted` must be a boolean in {table!r}")
            reserved: list[str] | None = None
            key = ""
            try:
                for key, value in item.items():
                    if key[:1] == "_" and key not in system:
                        # Reserved for future metadata (spec §8): ignored.
                        reserved = [*(reserved or ()), key]
                        continue
                    t = type(value)
                    if decode is not None and (t is dict or t is list or t is int):
                        item[key] = decode(value)
            except (ConvexError, ValueError, TypeError) as exc:
                self._unexpected(
                    endpoint, resp, f"Invalid Convex value in field {key!r} of table {table!r}: {exc}"
                )
            if reserved:
                for key in reserved:
                    del item[key]
            append(ExportedValue(component, table, ts, deleted, item))
        return out


# --- helpers -------------------------------------------------------------------------------------------


def _decoder(fmt: str) -> Callable[[Any], Any] | None:
    """The decoder of one exported field value, or None for the clean format (kept as JSON)."""
    if fmt in _CLEAN_FORMATS:
        return None
    from connectors import values

    if fmt in _ENCODED_FORMATS:
        return values.decode_encoded_value
    if fmt in _EXPORT_FORMATS:
        return values.from_export_json
    raise ValueError(f"unknown export format {fmt!r}")


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


def _rfc3339_utc(dt: datetime) -> str:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("delete_before must be timezone-aware (naive datetimes are ambiguous)")
    utc = dt.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def _bool_param(value: bool) -> str:
    return "true" if value else "false"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _orjson_default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return list(obj)
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return type(value).__name__


def _truncate(text: str) -> str:
    if len(text) <= _MAX_BODY_TEXT:
        return text
    return text[:_MAX_BODY_TEXT] + f"… ({len(text) - _MAX_BODY_TEXT} more characters)"
