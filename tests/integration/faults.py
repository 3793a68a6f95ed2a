"""A fault-injecting TCP proxy on loopback (threads + sockets) for retry tests against the live server.

Each client connection carries one HTTP request: the proxy forwards it to the real server (with
``Connection: close``, so the server's answer ends at EOF), reads the whole answer — so the server has
committed whatever the request writes — and then does what the next scripted fault says: ``PASS`` relays
the answer, ``DROP`` closes the client connection without a byte of it, ``BAD_GATEWAY`` answers 502
instead. When the script runs out, requests pass.
"""

from __future__ import annotations

import contextlib
import enum
import re
import socket
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit


class Fault(enum.Enum):
    PASS = "pass"
    DROP = "drop"
    BAD_GATEWAY = "502"


_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CONNECTION_HEADER = re.compile(rb"\r\nconnection:[^\r]*", re.IGNORECASE)


class FaultProxy:
    def __init__(self, upstream_url: str, faults: Iterable[Fault] = (), *, port: int = 0) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._faults = list(faults)
        self._lock = threading.Lock()
        self.request_lines: list[str] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _next_fault(self, request_line: str) -> Fault:
        with self._lock:
            self.request_lines.append(request_line)
            return self._faults.pop(0) if self._faults else Fault.PASS

    def _serve(self, client: socket.socket) -> None:
        with client:
            request = _read_request(client)
            if request is None:
                return
            head, body = request
            fault = self._next_fault(head.split(b"\r\n", 1)[0].decode("latin-1"))
            head = _CONNECTION_HEADER.sub(b"", head) + b"\r\nConnection: close"
            with socket.create_connection(self._upstream, timeout=30) as upstream:
                upstream.sendall(head + b"\r\n\r\n" + body)
                answer = _read_to_eof(upstream)
            if fault is Fault.PASS:
                client.sendall(answer)
            elif fault is Fault.BAD_GATEWAY:
                client.sendall(_BAD_GATEWAY)
            # DROP: close without answering (the `with` closes the socket)


def _read_request(sock: socket.socket) -> tuple[bytes, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    length = int(match.group(1)) if match else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return head, rest[:length]


def _read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
