"""Names: identifiers, table names, component paths, index names, field names and field paths.

Rules are in ``shared/spec/values-and-ids.md`` §6; the ``ValidIdentifier`` renaming used by streaming
import (slugify + ``source_`` prefix) is in ``streaming-import.md`` §3. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re

from unidecode import unidecode

from connectors.constants import IDENTIFIER_PREFIX, MAX_FIELD_NAME_LEN
from connectors.constants import MAX_IDENTIFIER_LEN as MAX_IDENTIFIER_LEN  # public: the identifier rule
from connectors.errors import InvalidNameError, InvalidValueError, PlainError

IDENTIFIER_RULE = (
    "identifiers must start with a letter or underscore, contain only letters, digits and underscores, "
    "be at most 64 bytes and not be only underscores."
)

# ASCII only (re.ASCII keeps \w out of the picture; the classes are explicit anyway).
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}", re.ASCII)
_SLUG_SEPARATORS_RE = re.compile(r"[^a-z0-9]+")

_FAILED_IDENTIFIER = "Failed to create a valid identifier."


def _quote(name: object, limit: int = 100) -> str:
    """Quote a user-supplied name for an error message (escaped, and cut when very long)."""
    if not isinstance(name, str):
        return f"<{type(name).__name__}>"
    if len(name) > limit:
        return json.dumps(name[:limit], ensure_ascii=False)[:-1] + '…"'
    return json.dumps(name, ensure_ascii=False)


def is_identifier(s: object) -> bool:
    """True if ``s`` follows the identifier rule of §6.1 (system names included)."""
    return (
        type(s) is str
        and _IDENTIFIER_RE.fullmatch(s) is not None
        # Not made only of underscores.
        and s.strip("_") != ""
    )


def is_system_name(s: str) -> bool:
    return s.startswith("_")


def _check_name(name: object, kind: str, kinds: str, allow_system: bool) -> str:
    """``name`` if it is a legal ``kind`` name (table, index); ``_`` names are reserved for system ``kinds``."""
    if not is_identifier(name):
        raise InvalidNameError(f"Invalid {kind} name {_quote(name)}: {IDENTIFIER_RULE}")
    assert isinstance(name, str)
    if not allow_system and name.startswith("_"):
        raise InvalidNameError(
            f'Invalid {kind} name {_quote(name)}: names starting with "_" are reserved for system {kinds}.'
        )
    return name


def check_table_name(name: object, *, allow_system: bool = False) -> str:
    """Return ``name`` if it is a legal table name, else raise :class:`InvalidNameError`."""
    return _check_name(name, "table", "tables", allow_system)


def check_component_path(path: object) -> str:
    """Return ``path`` if it is a legal component path (``""`` = root, else ``/``-joined identifiers)."""
    if type(path) is not str:
        raise InvalidNameError(f"Invalid component path {_quote(path)}: it must be a string.")
    if path == "":
        return path
    for segment in path.split("/"):
        if not is_identifier(segment):
            raise InvalidNameError(
                f"Invalid component path {_quote(path)}: segment {_quote(segment)} is not valid; "
                f"{IDENTIFIER_RULE}"
            )
    return path


def check_index_name(name: object, *, allow_system: bool = False) -> str:
    """Return ``name`` if it is a legal index descriptor; ``_`` names are reserved for system indexes."""
    return _check_name(name, "index", "indexes", allow_system)


def parse_field_path(path: object) -> tuple[str, ...]:
    """Split a dotted index field path (``a.b.c``); every component must be an identifier.

    Whether ``_``-prefixed components or ``_creationTime`` are allowed is the index layer's decision
    (``streaming-import.md`` §8); this only checks the identifier rule."""
    if type(path) is not str or path == "":
        raise InvalidNameError(f"Invalid field path {_quote(path)}: it must be a non-empty string.")
    parts = tuple(path.split("."))
    for part in parts:
        if not is_identifier(part):
            raise InvalidNameError(
                f"Invalid field path {_quote(path)}: component {_quote(part)} is not valid; {IDENTIFIER_RULE}"
            )
    return parts


def field_name_problem(name: object) -> str | None:
    """Why ``name`` is not a legal object key (§6.3), or ``None`` if it is.

    Upstream accepts the empty string; this project rejects it (empty keys are almost always a bug)."""
    if type(name) is not str:
        return f"Field names must be strings, not {type(name).__name__}"
    if name == "":
        return "Field names must not be empty"
    if name[0] == "$":
        return f"Field name {_quote(name)} starts with '$', which is reserved"
    if not (name.isascii() and name.isprintable()):
        return f"Field name {_quote(name)} has an invalid character: field names can only contain non-control ASCII characters"
    if len(name) > MAX_FIELD_NAME_LEN:
        return f"Field name is too long ({len(name)} bytes; the limit is {MAX_FIELD_NAME_LEN})"
    return None


def is_valid_field_name(name: object) -> bool:
    """Fast check of the §6.3 object-key rule (system names included)."""
    return (
        type(name) is str
        and name != ""
        and name[0] != "$"
        and len(name) <= MAX_FIELD_NAME_LEN
        and name.isascii()
        and name.isprintable()
    )


def check_field_name(name: object, path: str = "") -> str:
    """Return ``name`` if it is a legal object key, else raise :class:`InvalidValueError` at ``path``."""
    problem = field_name_problem(name)
    if problem is not None:
        raise InvalidValueError(problem, path)
    assert isinstance(name, str)
    return name


# --- ValidIdentifier (streaming import) ------------------------------------------------------------


def slugify(s: str) -> str:
    """Rust ``slugify!(s, separator = "_")``: transliterate, lower-case, runs of other chars -> ``_``."""
    return _SLUG_SEPARATORS_RE.sub("_", unidecode(s).lower()).strip("_")


def valid_identifier_table(name: object) -> str:
    """``ValidIdentifier<TableName>``: keep a valid non-system table name, else slugify + ``source_``."""
    if type(name) is not str:
        raise PlainError(_FAILED_IDENTIFIER)
    if is_identifier(name) and not name.startswith("_"):
        return name
    candidate = IDENTIFIER_PREFIX + slugify(name)
    if not is_identifier(candidate):
        raise PlainError(_FAILED_IDENTIFIER)
    return candidate


def valid_identifier_field(name: object) -> str:
    """``ValidIdentifier<FieldName>``: keep a valid non-system field name, else slugify + ``source_``."""
    if type(name) is not str:
        raise PlainError(_FAILED_IDENTIFIER)
    # Records of one stream repeat the same keys: remember the answer (bounded).
    known = _FIELD_NAMES.get(name)
    if known is not None:
        return known
    result = _valid_identifier_field(name)
    if len(_FIELD_NAMES) >= 65536:
        _FIELD_NAMES.clear()
    _FIELD_NAMES[name] = result
    return result


_FIELD_NAMES: dict[str, str] = {}


def _valid_identifier_field(name: str) -> str:
    if is_valid_field_name(name) and name[0] != "_":
        return name
    candidate = IDENTIFIER_PREFIX + slugify(name)
    if not is_valid_field_name(candidate):
        raise PlainError(_FAILED_IDENTIFIER)
    return candidate
