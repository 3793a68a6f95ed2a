"""The HTTP server: Convex's streaming export and streaming import APIs over one ``Deployment``.

A thin adapter: check credentials, parse the request into a typed object (``wire``), call the domain
(``backend.export``, ``backend.streaming_import``), serialize. Contracts: ``shared/spec/streaming-export.md``
and ``shared/spec/streaming-import.md``.

Per request, in order:

1. ``Convex-Client`` header (global middleware): a value without ``-`` is 400 ``InvalidClientVersion``.
2. Export routes only: 403 ``StreamingExportNotEnabled`` when the feature is off (before authentication, as
   upstream).
3. Credentials and permission (``auth``).
4. Body: content type, then size limit (413, read incrementally, never buffering past the limit), then JSON.
5. Parse and call the domain in the threadpool: every domain call blocks (SQLite/PostgreSQL), and JSON
   parsing, serialization and gzip of multi-megabyte pages must not stall the event loop either.

Authentication comes before the body is read (upstream reads the body first) so that an anonymous client
cannot make the server buffer and parse 20 MiB.

Errors are ``{"code", "message"}`` with the error's status; anything unexpected is the generic 500 and a
log line naming only the exception type, route and stack frames (never keys, query strings or documents).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import logging
import signal
import socket
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.backend import export
from connectors.backend import streaming_import as si
from connectors.backend.engine import Deployment
from connectors.constants import (
    AIRBYTE_IMPORT_BODY_LIMIT,
    DEFAULT_BODY_LIMIT,
    FIVETRAN_OPERATIONS_BODY_LIMIT,
    JSON_MEDIA_TYPE,
    PACKAGE_VERSION,
    MiB,
)
from connectors.errors import (
    BadRequestError,
    ConvexError,
    ForbiddenError,
    InternalError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PlainError,
)
from connectors.keys import KeyRegistry, KeyRing, Operation
from connectors.perf import gc_paused
from connectors.server import wire
from connectors.server.auth import Api, Authenticator
from connectors.values import load_json

__all__ = ["BackgroundServer", "ServerConfig", "create_app", "run"]

log = logging.getLogger("connectors.server")
access_log = logging.getLogger("connectors.server.access")

# After a 413 we still read (and drop) up to this much of the body so the client, which is usually still
# sending, sees the response instead of a connection reset.
_MAX_DRAIN_BYTES: Final = 64 * MiB

EXPORT_NOT_ENABLED_MESSAGE: Final = (
    "Streaming export is not available on your current subscription. "
    "See https://www.convex.dev/plans to upgrade."
)
OVERWRITE_NOT_SUPPORTED: Final = "Overwrite sync mode is not supported. Please use a different sync mode."
BAD_CONTENT_TYPE_MESSAGE: Final = "Expected request with `Content-Type: application/json`"


@dataclass(frozen=True)
class ServerConfig:
    """Server settings. Body limits are per route family (streaming-import.md §2.5, §13.8)."""

    version: str = PACKAGE_VERSION
    streaming_export_enabled: bool = True
    # Named in the `BadDeployKey` message ("invalid for deployment '<name>'") when set.
    deployment_name: str | None = None
    airbyte_import_body_limit: int = AIRBYTE_IMPORT_BODY_LIMIT
    # The Rust Fivetran destination sends 500-row chunks that exceed 2 MiB with wide rows.
    fivetran_operations_body_limit: int = FIVETRAN_OPERATIONS_BODY_LIMIT
    default_body_limit: int = DEFAULT_BODY_LIMIT
    gzip_minimum_size: int = 1024
    # Pages are compressed whole in a worker thread. 5 does ~140 MB/s on export JSON; 9 is ~20x slower
    # for ~15% smaller output.
    gzip_level: int = 1  # fastest: ~4x smaller pages at a fraction of the CPU of higher levels

    def __post_init__(self) -> None:
        for name in ("fivetran_operations_body_limit", "default_body_limit", "airbyte_import_body_limit"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.gzip_level <= 9:
            raise ValueError("gzip_level must be between 0 and 9")


# --- responses ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A successful response before encoding: JSON bytes, or an empty 200 (import endpoints)."""

    body: bytes = b""
    media_type: str | None = None

    @classmethod
    def json(cls, body: bytes) -> Reply:
        return cls(body, JSON_MEDIA_TYPE)

    @classmethod
    def json_value(cls, value: Any) -> Reply:
        return cls(orjson.dumps(value), JSON_MEDIA_TYPE)


EMPTY: Final = Reply()


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: an explicit ``gzip`` (or ``x-gzip``) entry decides, else
    ``*``; ``q=0`` refuses."""
    if not accept_encoding:
        return False
    explicit: float | None = None
    wildcard: float | None = None
    for part in accept_encoding.split(","):
        token, _, params = part.partition(";")
        token = token.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if token in ("gzip", "x-gzip"):
            explicit = q if explicit is None else max(explicit, q)
        elif token == "*":
            wildcard = q
    chosen = explicit if explicit is not None else wildcard
    return chosen is not None and chosen > 0


def error_response(exc: ConvexError, *, close: bool = False) -> Response:
    headers = {"Connection": "close"} if close else None
    if not exc.code and not exc.message:
        return Response(status_code=exc.status, headers=headers)
    return Response(orjson.dumps(exc.to_body()), exc.status, headers, JSON_MEDIA_TYPE)


def _internal_error_response() -> Response:
    return error_response(InternalError())


# --- middleware (plain ASGI, so responses stream through untouched) ------------------------------------


class ClientVersionMiddleware:
    """``Convex-Client: <name>-<semver>``; a value without ``-`` is rejected on every route (§2.2). A
    missing header is fine. The value is not otherwise used by these APIs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"convex-client" and b"-" not in value:
                    exc = BadRequestError(
                        "InvalidClientVersion",
                        "Invalid Convex-Client header: expected `<client name>-<version>`, "
                        "e.g. `fivetran-export-2.0.2`",
                    )
                    await error_response(exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class AccessLogMiddleware:
    """One line per request with the path only: the query string may carry ``adminKey``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app fails before responding, the server answers 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            access_log.info(
                "%s %s %d %.1fms", scope["method"], scope["path"], status, (time.perf_counter() - start) * 1e3
            )


# --- request plumbing ----------------------------------------------------------------------------------


def _is_json_content_type(value: str | None) -> bool:
    """``application/json`` (parameters allowed) or ``application/*+json``."""
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json"))


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        "PayloadTooLarge", f"The request body is larger than the limit of {limit} bytes for this endpoint."
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, read chunk by chunk; past ``limit`` the rest is dropped (up to a cap) and 413 raised."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _MAX_DRAIN_BYTES:
        raise _too_large(limit)  # not worth draining; the connection is closed after the 413
    body = bytearray()
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            if total > limit + _MAX_DRAIN_BYTES:
                break
            continue  # keep draining without buffering
        body += chunk
    if total > limit:
        raise _too_large(limit)
    return bytes(body)


def _parse_json(body: bytes) -> Any:
    try:
        with gc_paused():  # import bodies hold up to tens of thousands of records
            # `-0` is Float64 -0.0; too deep for the parser is 400 InvalidValue (values.load_json).
            return load_json(body)
    except orjson.JSONDecodeError as exc:
        # orjson's message names the position only, never the content.
        raise BadRequestError("BadJsonBody", f"Failed to parse the JSON body: {exc}") from None


Source = Literal["none", "query", "json"]


@dataclass(frozen=True)
class _Endpoint:
    """How to serve one route: which API and permission, where the input comes from, what to run."""

    api: Api | None
    operation: Operation | None  # None: no credentials checked (`replace_tables`)
    source: Source  # no input, the query string (as ``wire.Args``), or a JSON body (parsed)
    work: Callable[[Any], Reply]
    body_limit: int = 0
    # Parse and work with the cyclic GC paused: the bulk writes (their work is bounded by the body limit;
    # not the requests that wait or scan a whole table, which would pause it for the whole process).
    pause_gc: bool = False


class _Server:
    """The request handling shared by every route."""

    def __init__(self, deployment: Deployment, config: ServerConfig) -> None:
        self.deployment = deployment
        self.config = config
        self.auth = Authenticator(KeyRing(KeyRegistry(deployment)), config.deployment_name)

    def endpoint(self, spec: _Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                return await self._handle(request, spec)
            except PayloadTooLargeError as exc:
                return error_response(exc, close=True)
            except ConvexError as exc:
                if isinstance(exc, PlainError | InternalError):
                    detail = getattr(exc, "detail", "")
                    log.warning("%s %s failed: %s", request.method, request.url.path, detail or exc.code)
                return error_response(exc)
            except Exception as exc:
                # Frames only: the exception's text may quote document data.
                log.error(
                    "Unhandled %s in %s %s\n%s",
                    type(exc).__name__,
                    request.method,
                    request.url.path,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )
                return _internal_error_response()

        return handle

    async def _handle(self, request: Request, spec: _Endpoint) -> Response:
        if spec.api is Api.EXPORT and not self.config.streaming_export_enabled:
            raise ForbiddenError("StreamingExportNotEnabled", EXPORT_NOT_ENABLED_MESSAGE)
        if spec.operation is not None and spec.api is not None:
            self.auth.authorize(request.scope["headers"], request.query_params, spec.operation, spec.api)
        raw: Any = None
        if spec.source == "query":
            raw = wire.Args.from_query_string(request.query_params)
        elif spec.source == "json":
            if not _is_json_content_type(request.headers.get("content-type")):
                raise BadRequestError("BadJsonBody", BAD_CONTENT_TYPE_MESSAGE)
            raw = await _read_body(request, spec.body_limit)
        gzip_ok = _accepts_gzip(request.headers.get("accept-encoding"))
        return await run_in_threadpool(self._run, spec, raw, gzip_ok)

    def _run(self, spec: _Endpoint, raw: Any, gzip_ok: bool) -> Response:
        if spec.pause_gc:
            # A bulk write builds and drops its rows, documents and index entries (tens of thousands of
            # acyclic dicts, tuples and lists): collections during it re-scan them, ~10% of its CPU.
            with gc_paused():
                reply = spec.work(_parse_json(raw))
        else:
            reply = spec.work(_parse_json(raw) if spec.source == "json" else raw)
        body = reply.body
        if reply.media_type is None:
            return Response(body, 200)
        headers = {"Vary": "Accept-Encoding"}
        if gzip_ok and len(body) >= self.config.gzip_minimum_size:
            body = gzip.compress(body, compresslevel=self.config.gzip_level, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return Response(body, 200, headers, reply.media_type)

    # -- export -----------------------------------------------------------------------------------------

    def test_connection(self, _: None) -> Reply:
        # Exactly `null`: the Rust client deserializes the body as a unit value (§9).
        return Reply.json(b"null")

    def list_snapshot(self, args: wire.Args) -> Reply:
        req = wire.ListSnapshotRequest.parse(args)
        page = export.list_snapshot(
            self.deployment, snapshot=req.snapshot, cursor=req.cursor, fmt=req.format, selection=req.selection
        )
        return Reply.json(page.to_json())

    def document_deltas(self, args: wire.Args) -> Reply:
        req = wire.DocumentDeltasRequest.parse(args)
        page = export.document_deltas(
            self.deployment, cursor=req.cursor, fmt=req.format, selection=req.selection
        )
        return Reply.json(page.to_json())

    def json_schemas(self, args: wire.Args) -> Reply:
        req = wire.JsonSchemasRequest.parse(args)
        schemas = export.json_schemas(
            self.deployment, delta_schema=req.delta_schema, fmt=req.format, by_component=req.by_component
        )
        return Reply.json_value(schemas)

    def table_column_names(self, _: None) -> Reply:
        return Reply.json_value(export.table_column_names(self.deployment))

    def tables_and_columns(self, _: None) -> Reply:
        return Reply.json_value(export.tables_and_columns(self.deployment))

    # -- import -----------------------------------------------------------------------------------------

    def import_airbyte_records(self, body: Any) -> Reply:
        req = wire.ImportAirbyteRecordsRequest.parse(body)
        si.import_airbyte_records(self.deployment, req.tables, req.messages)
        return EMPTY

    def clear_tables(self, body: Any) -> Reply:
        si.clear_tables(self.deployment, wire.ClearTablesRequest.parse(body).table_names)
        return EMPTY

    def replace_tables(self, body: Any) -> Reply:
        # No permission check, but the body must deserialize before the refusal (§9).
        si.replace_tables(self.deployment, wire.ReplaceTablesRequest.parse(body).table_names)
        raise BadRequestError("OverwriteNotSupported", OVERWRITE_NOT_SUPPORTED)  # in case it returned

    def add_primary_key_indexes(self, body: Any) -> Reply:
        si.add_primary_key_indexes(self.deployment, wire.AddPrimaryKeyIndexesRequest.parse(body).indexes)
        return EMPTY

    def primary_key_indexes_ready(self, body: Any) -> Reply:
        ready = si.primary_key_indexes_ready(
            self.deployment, wire.PrimaryKeyIndexesReadyRequest.parse(body).tables
        )
        return Reply.json_value({"indexesReady": ready})

    def apply_fivetran_operations(self, body: Any) -> Reply:
        si.apply_fivetran_operations(
            self.deployment, wire.ApplyFivetranOperationsRequest.parse(body).operations
        )
        return EMPTY

    def fivetran_create_table(self, body: Any) -> Reply:
        si.fivetran_create_table(
            self.deployment, wire.FivetranCreateTableRequest.parse(body).table_definition
        )
        return EMPTY

    def fivetran_truncate_table(self, body: Any) -> Reply:
        req = wire.FivetranTruncateTableRequest.parse(body)
        si.fivetran_truncate_table(self.deployment, req.table_name, req.delete_before, req.delete_type)
        return EMPTY

    def get_schema(self, _: None) -> Reply:
        return Reply.json_value(si.get_schema(self.deployment))

    # -- routes -----------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        cfg = self.config
        export_ = functools.partial(_Endpoint, Api.EXPORT, Operation.VIEW_DATA)
        import_ = functools.partial(_Endpoint, Api.IMPORT, Operation.IMPORT_BACKUPS)
        limit = cfg.default_body_limit
        si_path = "/api/streaming_import/"
        table: list[tuple[str, str, _Endpoint]] = [
            ("GET", "/api/test_streaming_export_connection", export_("none", self.test_connection)),
            # GET with a query string (Airbyte) and POST with a JSON body (Rust client).
            ("GET", "/api/list_snapshot", export_("query", self.list_snapshot)),
            ("POST", "/api/list_snapshot", export_("json", _from_json(self.list_snapshot), limit)),
            ("GET", "/api/document_deltas", export_("query", self.document_deltas)),
            ("POST", "/api/document_deltas", export_("json", _from_json(self.document_deltas), limit)),
            ("GET", "/api/json_schemas", export_("query", self.json_schemas)),
            ("GET", "/api/get_table_column_names", export_("none", self.table_column_names)),
            # Retired upstream on 2026-06-30; kept for Rust connectors 0.2.0 to 1.x.
            ("GET", "/api/get_tables_and_columns", export_("none", self.tables_and_columns)),
            (
                "POST",
                si_path + "import_airbyte_records",
                import_("json", self.import_airbyte_records, cfg.airbyte_import_body_limit, pause_gc=True),
            ),
            ("PUT", si_path + "clear_tables", import_("json", self.clear_tables, limit)),
            # No permission check at all (streaming-import.md §9).
            ("POST", si_path + "replace_tables", _Endpoint(None, None, "json", self.replace_tables, limit)),
            (
                "PUT",
                si_path + "add_primary_key_indexes",
                import_("json", self.add_primary_key_indexes, limit),
            ),
            # GET with a JSON body: Airbyte sends `requests.request("GET", url, json=...)` (§8.2).
            (
                "GET",
                si_path + "primary_key_indexes_ready",
                import_("json", self.primary_key_indexes_ready, limit),
            ),
            (
                "POST",
                si_path + "apply_fivetran_operations",
                import_(
                    "json", self.apply_fivetran_operations, cfg.fivetran_operations_body_limit, pause_gc=True
                ),
            ),
            ("POST", si_path + "fivetran_create_table", import_("json", self.fivetran_create_table, limit)),
            (
                "POST",
                si_path + "fivetran_truncate_table",
                import_("json", self.fivetran_truncate_table, limit),
            ),
            ("GET", si_path + "get_schema", import_("none", self.get_schema)),
        ]
        by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
        for method, path, spec in table:
            by_path.setdefault(path, {})[method] = self.endpoint(spec)
        routes = [self._route(path, handlers) for path, handlers in by_path.items()]

        async def version(_: Request) -> Response:
            return Response(cfg.version, 200, media_type="text/plain")

        routes.append(Route("/version", version, methods=["GET"]))
        return routes

    @staticmethod
    def _route(path: str, handlers: dict[str, Callable[[Request], Awaitable[Response]]]) -> Route:
        """One route per path so that any other method is a 405 (Starlette adds HEAD to GET)."""
        if len(handlers) == 1:
            ((method, handler),) = handlers.items()
            return Route(path, handler, methods=[method])

        async def dispatch(request: Request) -> Response:
            return await handlers["GET" if request.method == "HEAD" else request.method](request)

        return Route(path, dispatch, methods=list(handlers))


def _from_json(work: Callable[[wire.Args], Reply]) -> Callable[[Any], Reply]:
    """Adapt an export handler taking ``Args`` to a parsed JSON body."""
    return lambda body: work(wire.Args.from_json(body))


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Router-level 404 and 405 as ``{code, message}`` bodies."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: ConvexError = NotFoundError("NotFound", f"No such endpoint: {request.url.path}")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        error = MethodNotAllowedError(
            "MethodNotAllowed",
            f"Method {request.method} is not allowed on {request.url.path}. Allowed: {allowed}",
        )
    else:
        error = ConvexError("HttpError", exc.detail, status=exc.status_code)
    response = error_response(error)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def create_app(deployment: Deployment, *, config: ServerConfig | None = None) -> Starlette:
    """The ASGI app serving ``deployment``. Creates the instance secret on first use."""
    server = _Server(deployment, config or ServerConfig())
    app = Starlette(
        routes=server.routes(),
        middleware=[Middleware(AccessLogMiddleware), Middleware(ClientVersionMiddleware)],
        exception_handlers={HTTPException: _http_exception},
    )
    app.state.deployment = deployment
    return app


# --- running -----------------------------------------------------------------------------------------


def _uvicorn_config(app: ASGIApp, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # its line would include the query string, i.e. `adminKey`
        log_config=None,  # the caller owns logging configuration
        log_level=log_level,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def _url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self.url: str | None = None
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        listening = [s for server in self.servers for s in (server.sockets or ())]
        self.url = _url_of(listening[0]) if listening else None
        self.ready.set()
        if self._on_ready is not None and self.url is not None:
            self._on_ready(self.url)


def run(
    deployment: Deployment,
    host: str = "127.0.0.1",
    port: int = 3210,
    config: ServerConfig | None = None,
    on_ready: Callable[[str], None] | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve until SIGINT/SIGTERM, then return normally once shut down gracefully (so the caller can close
    the deployment). ``on_ready`` gets the URL once the port is listening."""
    app = create_app(deployment, config=config)
    server = _Uvicorn(_uvicorn_config(app, host, port, log_level), on_ready)
    with _signals_handled_by_server():
        server.run()


@contextlib.contextmanager
def _signals_handled_by_server() -> Iterator[None]:
    """uvicorn turns SIGINT/SIGTERM into a graceful shutdown and then re-raises the signal with the handler
    it found. Give it a no-op to find: the shutdown has already happened, and the default handlers would
    kill the process (SIGTERM) or raise KeyboardInterrupt (SIGINT) before the caller's cleanup."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class BackgroundServer:
    """A server in a daemon thread on an already-bound port (0 = any free one); for tests and embedding.

    Binding before the thread starts means ``url`` is known up front and no other process can take the
    port in between.
    """

    def __init__(
        self,
        deployment: Deployment,
        *,
        config: ServerConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
        # without it every keep-alive response stalls ~40 ms (Nagle + delayed ACK).
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.url = _url_of(self._sock)
        app = create_app(deployment, config=config)
        self._server = _Uvicorn(_uvicorn_config(app, host, port, log_level), None)
        self._thread = threading.Thread(target=self._serve, name="convex-http", daemon=True)
        self._error: BaseException | None = None

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._server.ready.set()

    def start(self, timeout_s: float = 10.0) -> BackgroundServer:
        self._thread.start()
        if not self._server.ready.wait(timeout_s) or self._error is not None:
            self.stop()
            raise RuntimeError("The HTTP server did not start") from self._error
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
