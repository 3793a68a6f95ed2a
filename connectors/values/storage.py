"""Document validation and the storage encoding: a document is kept as its ``convex_encoded_json`` text
with sorted keys, plus ``FLAG_*`` bits saying which special values it contains."""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import orjson

from connectors.constants import (
    MAX_ARRAY_LEN,
    MAX_DOCUMENT_SIZE,
    MAX_NESTING,
    MAX_OBJECT_FIELDS,
    SYSTEM_FIELDS,
)
from connectors.errors import InvalidValueError
from connectors.values.problems import _int_range_problem, _key_problem, _Problem, _TooDeep, _type_problem
from connectors.values.scalars import (
    _OPT_SORT,
    _PACK_F64,
    _PACK_I64,
    _UNPACK_F64,
    _UNPACK_I64,
    INT64_MAX,
    INT64_MIN,
    Value,
    _b64,
    _copysign,
    _dumps,
    _loads,
)

# Storage flag bits: which special values a stored document contains.
FLAG_INT: Final = 1
FLAG_NONFINITE: Final = 2
FLAG_NEGZERO: Final = 4
FLAG_BYTES: Final = 8


class EncodedDocument(NamedTuple):
    body: bytes  # export_json, sorted keys
    flags: int  # FLAG_* bits
    size: int  # len(body); the size counted against MAX_DOCUMENT_SIZE


# Field names already known to be legal at every depth (so not `_`-prefixed, except the two system
# fields): a set lookup replaces the per-key checks. Bounded, so arbitrary user keys cannot grow it forever.
_GOOD_KEYS: set[str] = set(SYSTEM_FIELDS)
_GOOD_KEYS_MAX = 100_000


def _remember_key(k: str) -> None:
    if k[0] != "_":
        if len(_GOOD_KEYS) >= _GOOD_KEYS_MAX:
            _GOOD_KEYS.clear()
            _GOOD_KEYS.update(SYSTEM_FIELDS)
        _GOOD_KEYS.add(k)


_NEGZERO_B64: Final = _b64(_PACK_F64(-0.0))


def _walk_object(d: dict[Any, Any], depth: int, strict_top: bool) -> tuple[int, dict[str, Any] | None]:
    """Validate ``d``; return (flags, storage replacement or None when ``d`` can be dumped as is)."""
    if depth > MAX_NESTING:
        raise _TooDeep()
    if len(d) > MAX_OBJECT_FIELDS:
        raise _Problem(f"Object has {len(d)} fields; the limit is {MAX_OBJECT_FIELDS}")
    flags = 0
    out: dict[str, Any] | None = None
    for k, v in d.items():
        if k not in _GOOD_KEYS:
            problem = _key_problem(k, strict_top)
            if problem is not None:
                raise problem
            _remember_key(k)
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is float:
            if v - v != 0.0:  # NaN or ±inf: orjson would write null
                flags |= FLAG_NONFINITE
                if out is None:
                    out = dict(d)
                out[k] = {"$float": _b64(_PACK_F64(v))}
            elif v == 0.0 and _copysign(1.0, v) < 0.0:
                flags |= FLAG_NEGZERO
                if out is None:
                    out = dict(d)
                out[k] = {"$float": _NEGZERO_B64}
        elif t is int:
            flags |= FLAG_INT
            if not INT64_MIN <= v <= INT64_MAX:
                raise _Problem(_int_range_problem().message, [k])
            if out is None:
                out = dict(d)
            out[k] = {"$integer": _b64(_PACK_I64(v))}
        elif t is dict:
            try:
                f, r = _walk_object(v, depth + 1, False)
            except _Problem as p:
                p.rev_path.append(k)
                raise
            flags |= f
            if r is not None:
                if out is None:
                    out = dict(d)
                out[k] = r
        elif t is list:
            try:
                f, r2 = _walk_list(v, depth + 1)
            except _Problem as p:
                p.rev_path.append(k)
                raise
            flags |= f
            if r2 is not None:
                if out is None:
                    out = dict(d)
                out[k] = r2
        elif t is bytes:
            flags |= FLAG_BYTES
            if out is None:
                out = dict(d)
            out[k] = {"$bytes": _b64(v)}
        else:
            bad = _type_problem(v)
            bad.rev_path.append(k)
            raise bad
    return flags, out


def _walk_list(a: list[Any], depth: int) -> tuple[int, list[Any] | None]:
    if depth > MAX_NESTING:
        raise _TooDeep()
    if len(a) > MAX_ARRAY_LEN:
        raise _Problem(f"Array has {len(a)} elements; the limit is {MAX_ARRAY_LEN}")
    flags = 0
    out: list[Any] | None = None
    for i, v in enumerate(a):
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is float:
            if v - v != 0.0:
                flags |= FLAG_NONFINITE
                if out is None:
                    out = list(a)
                out[i] = {"$float": _b64(_PACK_F64(v))}
            elif v == 0.0 and _copysign(1.0, v) < 0.0:
                flags |= FLAG_NEGZERO
                if out is None:
                    out = list(a)
                out[i] = {"$float": _NEGZERO_B64}
        elif t is int:
            flags |= FLAG_INT
            if not INT64_MIN <= v <= INT64_MAX:
                raise _Problem(_int_range_problem().message, [i])
            if out is None:
                out = list(a)
            out[i] = {"$integer": _b64(_PACK_I64(v))}
        elif t is dict:
            try:
                f, r = _walk_object(v, depth + 1, False)
            except _Problem as p:
                p.rev_path.append(i)
                raise
            flags |= f
            if r is not None:
                if out is None:
                    out = list(a)
                out[i] = r
        elif t is list:
            try:
                f, r2 = _walk_list(v, depth + 1)
            except _Problem as p:
                p.rev_path.append(i)
                raise
            flags |= f
            if r2 is not None:
                if out is None:
                    out = list(a)
                out[i] = r2
        elif t is bytes:
            flags |= FLAG_BYTES
            if out is None:
                out = list(a)
            out[i] = {"$bytes": _b64(v)}
        else:
            bad = _type_problem(v)
            bad.rev_path.append(i)
            raise bad
    return flags, out


def _find_bad_string(v: Any, rev_path: list[str | int]) -> bool:
    """Locate a string that is not encodable as UTF-8 (lone surrogate); fills ``rev_path``."""
    t = type(v)
    if t is str:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if t is dict:
        for k, x in v.items():
            if _find_bad_string(x, rev_path):
                rev_path.append(k)
                return True
    elif t is list:
        for i, x in enumerate(v):
            if _find_bad_string(x, rev_path):
                rev_path.append(i)
                return True
    return False


def encode_document(doc: dict[str, Value], *, allow_system_fields: bool = False) -> EncodedDocument:
    """Validate a document (limits and rules of §6.3/§7.1) and build its storage encoding in one walk.

    ``allow_system_fields`` lifts the top-level ``_``-name restriction (system tables' own documents)."""
    if type(doc) is not dict:
        raise InvalidValueError(f"A document must be an object (dict), not {type(doc).__name__}")
    try:
        flags, replacement = _walk_object(doc, 1, not allow_system_fields)
    except _TooDeep as p:
        raise p.measured(doc).to_error() from None
    except _Problem as p:
        raise p.to_error() from None
    try:
        body = _dumps(doc if replacement is None else replacement, option=_OPT_SORT)
    except orjson.JSONEncodeError:
        rev: list[str | int] = []
        if _find_bad_string(doc, rev):
            raise _Problem(
                "String is not valid UTF-8 (it contains a lone surrogate)", rev
            ).to_error() from None
        raise InvalidValueError("Document cannot be serialized") from None
    size = len(body)
    if size > MAX_DOCUMENT_SIZE:
        raise InvalidValueError(
            f"Document is too large ({size} bytes); the limit is {MAX_DOCUMENT_SIZE} bytes (1 MiB)"
        )
    return EncodedDocument(body, flags, size)


def _restore(c: Any, items: Any) -> None:
    """In place: turn storage ``{"$integer"}``/``{"$float"}``/``{"$bytes"}`` objects back into values.
    ``items`` are the object's ``c.items()`` or the array's ``enumerate(c)``."""
    for k, v in items:
        t = type(v)
        if t is dict:
            if len(v) == 1:
                if "$integer" in v:
                    c[k] = _UNPACK_I64(binascii.a2b_base64(v["$integer"]))[0]
                    continue
                if "$float" in v:
                    c[k] = _UNPACK_F64(binascii.a2b_base64(v["$float"]))[0]
                    continue
                if "$bytes" in v:
                    c[k] = binascii.a2b_base64(v["$bytes"])
                    continue
            _restore(v, v.items())
        elif t is list:
            _restore(v, enumerate(v))


def decode_document(body: bytes, flags: int) -> dict[str, Value]:
    """Inverse of :func:`encode_document`."""
    doc: dict[str, Any] = _loads(body)
    if flags:
        _restore(doc, doc.items())
    return doc


def decode_documents(bodies: Sequence[bytes], flags: Sequence[int]) -> list[dict[str, Value]]:
    """:func:`decode_document` of many stored documents at once: one JSON parse for all of them, and the
    special values restored only in the documents whose flags say they hold some."""
    if not bodies:
        return []
    text = b"[" + b",".join(bodies) + b"]"
    present = 0
    for f in set(flags):  # a handful of distinct flag values per page
        present |= f
    special = _NOT_INT
    if present & FLAG_INT:
        # Int64s (the special value most documents hold) become decimal text before the parse: one C-level
        # scan of the page instead of a Python walk of every document that holds one.
        text = _STORED_INT.sub(_int_text, text)
        if b'"$integer"' in text:  # one not spelled as encode_document spells it: restore them the slow way
            special |= FLAG_INT
    docs: list[dict[str, Any]] = _loads(text)
    if present & special:
        restore = _restore_top
        for doc, f in zip(docs, flags, strict=True):
            if f & special:
                restore(doc)
    elif len(docs) != len(flags):
        raise ValueError("the stored bodies and their flags differ in number")
    return docs


# A stored Int64 as encode_document writes it (8 bytes, standard base64, compact JSON). Inside a JSON string a
# quote is escaped (`\"`), so an unescaped `{"` is either an object's start or a `{` ending a string, whose
# closing quote is never followed by `$`: every match is a whole special object (field names never start
# with `$`).
_STORED_INT: Final = re.compile(rb'\{"\$integer":"([A-Za-z0-9+/]{11}=)"\}')
_NOT_INT: Final = FLAG_NONFINITE | FLAG_NEGZERO | FLAG_BYTES


def _int_text(match: re.Match[bytes]) -> bytes:
    return b"%d" % _UNPACK_I64(binascii.a2b_base64(match[1]))[0]


_PLAIN: Final = frozenset((str, float, bool, int, type(None)))


def _restore_top(doc: dict[str, Any]) -> None:
    """:func:`_restore` of a document, skipping (in C) the arrays that hold no container."""
    for k, v in doc.items():
        t = type(v)
        if t is dict:
            if len(v) == 1:
                if "$integer" in v:
                    doc[k] = _UNPACK_I64(binascii.a2b_base64(v["$integer"]))[0]
                    continue
                if "$float" in v:
                    doc[k] = _UNPACK_F64(binascii.a2b_base64(v["$float"]))[0]
                    continue
                if "$bytes" in v:
                    doc[k] = binascii.a2b_base64(v["$bytes"])
                    continue
            _restore(v, v.items())
        elif t is list and not _PLAIN.issuperset(map(type, v)):
            _restore(v, enumerate(v))
