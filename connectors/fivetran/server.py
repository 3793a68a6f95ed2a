"""The gRPC server process both Fivetran connectors run (fivetran-sdk.md §5.1).

Plaintext gRPC on every interface, IPv6 and IPv4, 128 MB messages both ways, gzip accepted and sent, a
thread pool for the handlers, and a graceful stop on SIGTERM/SIGINT: new calls are refused, calls in
flight get ``grace_seconds`` to finish, then the process logs a final line and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType

import grpc

from connectors.constants import FIVETRAN_GRPC_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

# gRPC core expands a wildcard host to every wildcard listener it can open (one dual-stack socket, or an
# IPv6 and an IPv4 socket), so "[::]" also serves 0.0.0.0; "0.0.0.0" alone is the fallback for a host
# without IPv6.
IPV6_WILDCARD = "[::]"
IPV4_WILDCARD = "0.0.0.0"

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", FIVETRAN_GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", FIVETRAN_GRPC_MAX_MESSAGE_BYTES),
    # Refuse to start on a port another process holds instead of silently sharing it.
    ("grpc.so_reuseport", 0),
)

RegisterServicers = Callable[[grpc.Server], None]


class PortUnavailableError(RuntimeError):
    """Neither the IPv6 nor the IPv4 wildcard address could be bound."""


@dataclass(frozen=True)
class ServerSettings:
    port: int
    max_workers: int = 8
    grace_seconds: float = 30.0


@dataclass(frozen=True)
class BoundServer:
    """A created (not yet started) server, the port it bound and the wildcard addresses it listens on."""

    server: grpc.Server
    port: int
    addresses: tuple[str, ...]


def create_server(
    settings: ServerSettings,
    register: RegisterServicers,
    hosts: tuple[str, ...] = (IPV6_WILDCARD, IPV4_WILDCARD),
) -> BoundServer:
    """Build the server, let ``register`` add the servicers, and bind the port (0 picks a free one).

    ``hosts`` are tried in order and the first that binds is used: the IPv6 wildcard (which covers IPv4
    too), else the IPv4 wildcard on a host without IPv6.
    """
    executor = ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="fivetran-grpc")
    server = grpc.server(executor, options=list(SERVER_OPTIONS), compression=grpc.Compression.Gzip)
    register(server)
    failures: list[str] = []
    for host in hosts:
        try:
            port = server.add_insecure_port(f"{host}:{settings.port}")
        except RuntimeError as error:
            failures.append(f"{host}: {error}")
            continue
        addresses = (IPV6_WILDCARD, IPV4_WILDCARD) if host == IPV6_WILDCARD else (host,)
        return BoundServer(server=server, port=port, addresses=addresses)
    executor.shutdown(wait=False)
    raise PortUnavailableError(
        f"Could not listen on port {settings.port} ({'; '.join(failures)}). "
        "Another process probably uses it: stop it or start this connector with another --port."
    )


def wait_for_stop_signal(stop: threading.Event | None = None) -> str:
    """Block until SIGTERM or SIGINT (or ``stop`` is set); return the signal's name.

    Must run in the main thread (Python delivers signals there). The previous handlers are restored.
    """
    stop = stop or threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0] if received else "stop request"


def serve(settings: ServerSettings, register: RegisterServicers, name: str) -> int:
    """Run a connector server until SIGTERM/SIGINT, then stop gracefully; return the exit code (0).

    ``name`` names the connector in the log lines (e.g. "Convex Fivetran source").
    """
    bound = create_server(settings, register)
    bound.server.start()
    log.info("%s listening on port %d (%s)", name, bound.port, ", ".join(bound.addresses))
    reason = wait_for_stop_signal()
    log.info(
        "%s received %s: refusing new calls, letting running calls finish (up to %g s)",
        name,
        reason,
        settings.grace_seconds,
    )
    bound.server.stop(settings.grace_seconds).wait()
    log.info("%s stopped", name)
    return 0


def parse_port_argument(argv: Sequence[str] | None, default_port: int, description: str) -> int:
    """The ``--port <int>`` argument every Fivetran connector binary accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=default_port, help=f"gRPC port (default {default_port})")
    args = parser.parse_args(argv)
    port: int = args.port
    if not 0 <= port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {port}")
    return port
