"""Deploy keys: who may call the streaming export and import APIs.

A key is ``<kind>:<name>|<payload>``, shaped like a real Convex deploy key (``prod:happy-animal-123|…``):

* the part before the last ``|`` is a label for humans and is ignored when verifying, so a key pasted
  with any ``<type>:<deployment>|`` prefix (streaming-export.md §2.1) still verifies;
* ``payload`` is base64url (no padding) of ``version ‖ kind ‖ id ‖ HMAC-SHA256(secret, …)``. The kind
  that counts is the one inside the MAC, never the label, so editing the label cannot widen a key.

Registered keys (version 2, made by ``KeyRegistry.issue``: ``keygen``, the server's first start) embed a
16-byte key id. The deployment stores only ``(id, name, kind, created, revoked)`` per key — never the key
text — and a version-2 key verifies only if its MAC is genuine *and* its id is registered and not revoked.
``KeyRegistry.rotate_secret`` replaces the instance secret, which invalidates every key at once.

Legacy keys (version 1, no id: made before key ids existed, or by ``issue_key`` without ``key_id``) cannot
be listed or revoked one by one; they stay valid until the secret is rotated.

The I/O here is the instance secret and the key registry, both in the deployment (``globals`` and
``deploy_keys``), written by short metadata transactions that work alongside a running server (they are no
part of the writer's in-memory state). A running server sees changes on its next request: ``KeyRing``
checks one version counter per request and reloads the registry only when it moved.

Kinds and what they may do:

========  ==========================================================
``admin``   everything
``export``  the streaming export endpoints (operation ``ViewData``)
``import``  the streaming import endpoints (operation ``ImportBackups``)
========  ==========================================================

Keys and the secret never appear in reprs, logs or error messages: functions here return ``None`` or
raise errors that do not quote their input.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import enum
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

__all__ = [
    "KeyKind",
    "KeyRecord",
    "KeyRegistry",
    "KeyRing",
    "Operation",
    "VerifiedKey",
    "allows",
    "instance_secret",
    "issue_key",
    "verify",
    "verify_key",
]

SECRET_META_KEY: Final = "instance_secret"
_SECRET_BYTES: Final = 32
_VERSION: Final = 1  # legacy: no key id (the 16 bytes are a random nonce)
_VERSION_WITH_ID: Final = 2
_NONCE_BYTES: Final = 16  # the key id in version 2
_MAC_BYTES: Final = 32
_PAYLOAD_BYTES: Final = 2 + _NONCE_BYTES + _MAC_BYTES
_PAYLOAD_CHARS: Final = (_PAYLOAD_BYTES * 8 + 5) // 6  # base64 without padding
# Domain separation: the secret may one day sign other things; a key MAC must never be reusable there.
_MAC_CONTEXT: Final = b"convex-connectors/deploy-key/v1\x00"
_PAYLOAD_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class KeyKind(enum.Enum):
    ADMIN = "admin"
    EXPORT = "export"
    IMPORT = "import"


class Operation(enum.Enum):
    """Operations checked by the HTTP API; the value is the name upstream puts in
    ``You do not have permission to perform this operation (<name>).``"""

    VIEW_DATA = "ViewData"
    IMPORT_BACKUPS = "ImportBackups"


_KIND_BYTE: Final = {KeyKind.ADMIN: 1, KeyKind.EXPORT: 2, KeyKind.IMPORT: 3}
_BYTE_KIND: Final = {b: k for k, b in _KIND_BYTE.items()}
_GRANTS: Final = {
    KeyKind.ADMIN: frozenset(Operation),
    KeyKind.EXPORT: frozenset({Operation.VIEW_DATA}),
    KeyKind.IMPORT: frozenset({Operation.IMPORT_BACKUPS}),
}


def allows(kind: KeyKind, operation: Operation) -> bool:
    return operation in _GRANTS[kind]


class _MetaStore(Protocol):
    def get_meta(self, key: str) -> str | None: ...

    def set_meta_if_absent(self, key: str, value: str) -> str: ...


def instance_secret(deployment: _MetaStore) -> bytes:
    """The deployment's key-signing secret, created on first use. Stored in the deployment so that keys
    stay valid across restarts and across servers sharing one PostgreSQL database."""
    stored = deployment.get_meta(SECRET_META_KEY)
    if stored is None:
        # First writer wins, so concurrent first starts agree on one secret.
        stored = deployment.set_meta_if_absent(SECRET_META_KEY, secrets.token_bytes(_SECRET_BYTES).hex())
    try:
        secret = bytes.fromhex(stored)
    except ValueError:
        raise ValueError("The stored instance secret is corrupt (not hex)") from None
    if len(secret) < 16:
        raise ValueError("The stored instance secret is too short")
    return secret


def _mac(secret: bytes, signed: bytes) -> bytes:
    return hmac.new(secret, _MAC_CONTEXT + signed, hashlib.sha256).digest()


def issue_key(secret: bytes, kind: KeyKind | str, name: str = "local", *, key_id: bytes | None = None) -> str:
    """A new key of ``kind``. ``name`` only labels it (e.g. the deployment or the key's purpose).

    With ``key_id`` (16 bytes) the key is a registered-format key that verifies only while that id is
    registered (use ``KeyRegistry.issue``); without it, a legacy key valid until the secret is rotated."""
    kind = KeyKind(kind)
    if not _NAME_RE.fullmatch(name):
        raise ValueError("A key name must be 1-64 letters, digits, '_', '.' or '-', starting alphanumeric")
    if key_id is None:
        signed = bytes((_VERSION, _KIND_BYTE[kind])) + secrets.token_bytes(_NONCE_BYTES)
    else:
        if len(key_id) != _NONCE_BYTES:
            raise ValueError(f"A key id is {_NONCE_BYTES} bytes")
        signed = bytes((_VERSION_WITH_ID, _KIND_BYTE[kind])) + key_id
    payload = base64.urlsafe_b64encode(signed + _mac(secret, signed)).rstrip(b"=").decode("ascii")
    return f"{kind.value}:{name}|{payload}"


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """What a genuine key says about itself: its kind, and its id (hex) or None for a legacy key."""

    kind: KeyKind
    key_id: str | None


def verify(secret: bytes, key: str) -> VerifiedKey | None:
    """The kind and id of a key whose MAC is genuine, or None. Any label before the last ``|`` is ignored.
    Whether the id is still registered is the caller's check (``KeyRing``)."""
    if not isinstance(key, str):
        return None
    payload = key.rpartition("|")[2].strip()
    # Exact length and alphabet first: b64decode silently skips stray characters, which would make
    # many spellings of one key verify.
    if len(payload) != _PAYLOAD_CHARS or not _PAYLOAD_RE.fullmatch(payload):
        return None
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    # Canonical spelling only: the last character carries unused bits that decoding ignores.
    if len(raw) != _PAYLOAD_BYTES or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != payload:
        return None
    signed, mac = raw[: 2 + _NONCE_BYTES], raw[2 + _NONCE_BYTES :]
    # Always compute and compare the MAC, even for an unknown version or kind, to keep timing uniform.
    genuine = hmac.compare_digest(mac, _mac(secret, signed))
    kind = _BYTE_KIND.get(signed[1])
    if not genuine or signed[0] not in (_VERSION, _VERSION_WITH_ID) or kind is None:
        return None
    return VerifiedKey(kind, signed[2:].hex() if signed[0] == _VERSION_WITH_ID else None)


def verify_key(secret: bytes, key: str) -> KeyKind | None:
    """The kind of a key whose MAC is genuine, or None (the registry is not consulted)."""
    verified = verify(secret, key)
    return None if verified is None else verified.kind


# The key registry ----------------------------------------------------------------------------------------

_REGISTRY_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS deploy_keys (key_id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,"
    " created_ms BIGINT NOT NULL, revoked INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS deploy_keys_active_name ON deploy_keys (name) WHERE revoked = 0",
)
# Bumped by every registry change; a running server reloads when it moves.
VERSION_META_KEY: Final = "keys_version"
# Set when the registry starts on a deployment whose secret already existed (legacy keys may be out there).
LEGACY_META_KEY: Final = "legacy_keys"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the deployment stores about a registered key (never the key itself)."""

    key_id: str  # hex
    name: str
    kind: KeyKind
    created: datetime.datetime
    revoked: bool


class KeyNameError(ValueError):
    """A key name that is malformed, already in use, or unknown."""


class _Session(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...


class _Storage(Protocol):
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...


class _RegistryHost(_MetaStore, Protocol):
    @property
    def persistence(self) -> _Storage: ...

    def metadata_transaction(self) -> contextlib.AbstractContextManager[Any]: ...


def _meta(key: str) -> str:
    return f"meta.{key}"


class KeyRegistry:
    """Issue, list, revoke and invalidate the deployment's keys. Works on a read-only open of the deployment,
    so while the server runs (see the module docstring)."""

    def __init__(self, deployment: _RegistryHost) -> None:
        self._dep = deployment
        rows = deployment.persistence.read(
            "SELECT value FROM globals WHERE key = ?", (_meta(VERSION_META_KEY),)
        )
        if not rows:
            with deployment.metadata_transaction() as s:
                for ddl in _REGISTRY_DDL:
                    s.execute(ddl)
                had_secret = s.execute("SELECT 1 FROM globals WHERE key = ?", (_meta(SECRET_META_KEY),))
                inserted = s.execute(
                    "INSERT INTO globals (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING key",
                    (_meta(VERSION_META_KEY), "0"),
                )
                if inserted and had_secret:
                    s.execute(
                        "INSERT INTO globals (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                        (_meta(LEGACY_META_KEY), "valid"),
                    )

    def secret(self) -> bytes:
        return instance_secret(self._dep)

    def version(self) -> int:
        rows = self._dep.persistence.read(
            "SELECT value FROM globals WHERE key = ?", (_meta(VERSION_META_KEY),)
        )
        return int(rows[0][0]) if rows else 0

    @staticmethod
    def _bump(s: _Session) -> None:
        s.execute(
            "UPDATE globals SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = ?",
            (_meta(VERSION_META_KEY),),
        )

    def issue(self, kind: KeyKind | str, name: str | None = None) -> tuple[KeyRecord, str]:
        """Register and return a new key; ``name`` (default ``<kind>-<id prefix>``) must be unused by any
        key that is not revoked."""
        kind = KeyKind(kind)
        raw_id = secrets.token_bytes(_NONCE_BYTES)
        name = name if name is not None else f"{kind.value}-{raw_id.hex()[:8]}"
        if not _NAME_RE.fullmatch(name):
            raise KeyNameError(
                "A key name must be 1-64 letters, digits, '_', '.' or '-', starting alphanumeric"
            )
        secret = self.secret()
        created = datetime.datetime.now(datetime.UTC)
        with self._dep.metadata_transaction() as s:
            if s.execute("SELECT 1 FROM deploy_keys WHERE name = ? AND revoked = 0", (name,)):
                raise KeyNameError(
                    f"A key named {name!r} already exists; revoke it first (keys revoke {name}) or pick "
                    "another --name."
                )
            s.execute(
                "INSERT INTO deploy_keys (key_id, name, kind, created_ms, revoked) VALUES (?, ?, ?, ?, 0)",
                (raw_id.hex(), name, kind.value, int(created.timestamp() * 1000)),
            )
            self._bump(s)
        record = KeyRecord(
            raw_id.hex(), name, kind, created.replace(microsecond=created.microsecond // 1000 * 1000), False
        )
        return record, issue_key(secret, kind, name, key_id=raw_id)

    def list(self) -> list[KeyRecord]:
        rows = self._dep.persistence.read(
            "SELECT key_id, name, kind, created_ms, revoked FROM deploy_keys ORDER BY created_ms, key_id"
        )
        return [
            KeyRecord(
                key_id,
                name,
                KeyKind(kind),
                datetime.datetime.fromtimestamp(created_ms / 1000, datetime.UTC),
                bool(revoked),
            )
            for key_id, name, kind, created_ms, revoked in rows
        ]

    def legacy_keys_valid(self) -> bool:
        """Whether keys made before key ids may exist and still verify (until the secret is rotated)."""
        return self._dep.get_meta(LEGACY_META_KEY) == "valid"

    def revoke(self, name_or_id: str) -> KeyRecord:
        """Revoke the active key with this name (or id); a running server refuses it on its next request."""
        with self._dep.metadata_transaction() as s:
            rows = s.execute(
                "SELECT key_id, name, kind, created_ms FROM deploy_keys WHERE revoked = 0 AND (name = ? OR key_id = ?)",
                (name_or_id, name_or_id.lower()),
            )
            if not rows:
                raise KeyNameError(f"There is no active key named {name_or_id!r}; see `keys list`.")
            key_id, name, kind, created_ms = rows[0]
            s.execute("UPDATE deploy_keys SET revoked = 1 WHERE key_id = ?", (key_id,))
            self._bump(s)
        created = datetime.datetime.fromtimestamp(created_ms / 1000, datetime.UTC)
        return KeyRecord(key_id, name, KeyKind(kind), created, True)

    def rotate_secret(self) -> int:
        """Replace the instance secret: every key (registered or legacy) stops verifying. Returns how many
        registered keys were active."""
        new_secret = secrets.token_bytes(_SECRET_BYTES).hex()
        with self._dep.metadata_transaction() as s:
            active = s.execute("SELECT COUNT(*) FROM deploy_keys WHERE revoked = 0")[0][0]
            s.execute("UPDATE deploy_keys SET revoked = 1 WHERE revoked = 0")
            s.execute(
                "DELETE FROM globals WHERE key IN (?, ?)", (_meta(SECRET_META_KEY), _meta(LEGACY_META_KEY))
            )
            s.execute("INSERT INTO globals (key, value) VALUES (?, ?)", (_meta(SECRET_META_KEY), new_secret))
            self._bump(s)
        return int(active)


@dataclass(frozen=True)
class _KeyRingState:
    version: int
    secret: bytes
    active_ids: frozenset[str]


class KeyRing:
    """The server's view of the keys: verifies a key against the current secret and registry. Each call
    reads one version counter (a primary-key lookup) and reloads only when it moved, so a revocation or a
    rotation made by the CLI in another process applies from the next request."""

    def __init__(self, registry: KeyRegistry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._state = self._load()

    def _load(self) -> _KeyRingState:
        while True:
            version = self._registry.version()
            secret = self._registry.secret()
            active = frozenset(r.key_id for r in self._registry.list() if not r.revoked)
            # A change between the reads above shows up as a moved version: read again.
            if self._registry.version() == version:
                return _KeyRingState(version, secret, active)

    def _current(self) -> _KeyRingState:
        state = self._state
        if self._registry.version() != state.version:
            with self._lock:
                state = self._state = self._load()
        return state

    def verify(self, key: str) -> KeyKind | None:
        """The kind of a key that is genuine, registered (or legacy) and not revoked; else None."""
        state = self._current()
        verified = verify(state.secret, key)
        if verified is None:
            return None
        if verified.key_id is not None and verified.key_id not in state.active_ids:
            return None
        return verified.kind
