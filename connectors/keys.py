"""Deploy keys: who may call the streaming export and import APIs. Domain only; the one I/O is the
instance secret kept in the deployment's metadata.

A key is ``<kind>:<name>|<payload>``, shaped like a real Convex deploy key (``prod:happy-animal-123|…``):

* the part before the last ``|`` is a label for humans and is ignored when verifying, so a key pasted
  with any ``<type>:<deployment>|`` prefix (streaming-export.md §2.1) still verifies;
* ``payload`` is base64url (no padding) of ``version ‖ kind ‖ nonce ‖ HMAC-SHA256(secret, …)``. The kind
  that counts is the one inside the MAC, never the label, so editing the label cannot widen a key.

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
import enum
import hashlib
import hmac
import re
import secrets
from typing import Final, Protocol

__all__ = [
    "KeyKind",
    "Operation",
    "allows",
    "instance_secret",
    "issue_key",
    "verify_key",
]

SECRET_META_KEY: Final = "instance_secret"
_SECRET_BYTES: Final = 32
_VERSION: Final = 1
_NONCE_BYTES: Final = 16
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


def issue_key(secret: bytes, kind: KeyKind | str, name: str = "local") -> str:
    """A new key of ``kind``. ``name`` only labels it (e.g. the deployment or the key's purpose)."""
    kind = KeyKind(kind)
    if not _NAME_RE.fullmatch(name):
        raise ValueError("A key name must be 1-64 letters, digits, '_', '.' or '-', starting alphanumeric")
    signed = bytes((_VERSION, _KIND_BYTE[kind])) + secrets.token_bytes(_NONCE_BYTES)
    payload = base64.urlsafe_b64encode(signed + _mac(secret, signed)).rstrip(b"=").decode("ascii")
    return f"{kind.value}:{name}|{payload}"


def verify_key(secret: bytes, key: str) -> KeyKind | None:
    """The kind of a genuine key, or None. Any label before the last ``|`` is ignored."""
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
    if not genuine or signed[0] != _VERSION or kind is None:
        return None
    return kind
