"""One writer per deployment: who holds the writer lock, and the errors opening a deployment can raise.

The engine keeps the catalog and the timestamp oracle in memory, so a second process writing the same
storage would commit behind the first one's back (acknowledged writes lost, stale catalogs). Opening a
deployment for writing therefore takes an exclusive lock held for the life of the process: ``flock`` on a
lock file next to the SQLite database (``FileWriterLock``), a session advisory lock per schema on
PostgreSQL (``postgres.py``). The holder's PID, host and start time are recorded so that the process that is
refused can say who holds the deployment. Read-only opens take no lock and share with the writer.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

LOCK_FILE: Final = "convex.lock"
PRIVATE_DIR_MODE: Final = 0o700
PRIVATE_FILE_MODE: Final = 0o600


@dataclass(frozen=True)
class LockHolder:
    """The process holding a deployment's writer lock, as it recorded itself."""

    pid: int
    host: str
    since: str  # ISO 8601 UTC, seconds
    command: str

    @classmethod
    def this_process(cls) -> LockHolder:
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        command = " ".join(os.path.basename(arg) if i == 0 else arg for i, arg in enumerate(sys.argv[:2]))
        return cls(os.getpid(), socket.gethostname(), now.isoformat(), command)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"pid": self.pid, "host": self.host, "since": self.since, "command": self.command}
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> LockHolder | None:
        """The recorded holder, or None if the record is missing or unreadable (e.g. being written)."""
        try:
            data = orjson.loads(raw)
            return cls(int(data["pid"]), str(data["host"]), str(data["since"]), str(data.get("command", "")))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        what = f" ({self.command})" if self.command else ""
        return f"process {self.pid} on host {self.host}{what}, since {self.since}"


class DeploymentLockedError(Exception):
    """Another process has the deployment open for writing."""

    def __init__(self, location: str, holder: LockHolder | None) -> None:
        self.location = location
        self.holder = holder
        who = holder.describe() if holder is not None else "another process (it did not record its PID)"
        super().__init__(
            f"The deployment at {location} is in use by {who}. Only one process may write to a deployment: "
            "stop the server first, or import over HTTP (the streaming import API) while it runs. "
            "Read-only commands (export, keygen, keys) work alongside it."
        )


class DeploymentNotFoundError(Exception):
    """A command that needs an existing deployment was pointed at storage that holds none."""

    def __init__(self, location: str, what: str) -> None:
        self.location = location
        super().__init__(
            f"There is no deployment in {location} ({what}). Check --data-dir / --db; only `serve` and "
            "`import` create a new deployment."
        )


class ReadOnlyDeploymentError(Exception):
    """A write was attempted on a deployment opened read-only."""

    def __init__(self) -> None:
        super().__init__("This deployment was opened read-only; open it for writing to change it.")


class FileWriterLock:
    """An exclusive ``flock`` on ``path``, held until ``release`` (or the process's death: the kernel drops
    it, so a crashed server never leaves a stale lock behind)."""

    def __init__(self, path: Path, location: str) -> None:
        self.path = path
        self._location = location
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = LockHolder.from_json(os.pread(fd, 4096, 0))
            os.close(fd)
            raise DeploymentLockedError(self._location, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, LockHolder.this_process().to_json() + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale holder record once released
        os.close(fd)  # closing the descriptor drops the flock
