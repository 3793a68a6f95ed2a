"""Batch helpers for ``Transaction.insert_many``: new ids, document encodings, shape counts and index keys for
many documents at once.

Each gives exactly what the per-document function gives (``ids.new_internal_id`` + ``ids.encode_id``,
``values.encode_document``, ``shapes.add_shape_counts``, ``values.encode_index_key``), errors included, with
the per-document Python work cut down:

- ids: one ``os.urandom`` call for the batch, and one base32 pass (column-wise, in C) over the concatenated id
  bodies when an id body is a whole number of 5-byte groups (then base32 of the concatenation is the
  concatenation of the base32 of each body);
- encodings: the first document of each shape signature takes the general encoder; the later ones of that
  signature reuse its checks and only have their values looked at (``DocumentEncoder``);
- shapes: documents whose shape contribution is fully determined by their field names, value types and the
  element types of their arrays (no special floats) are grouped by that signature and counted once per group;
- index keys: repeated scalars encoded once per batch, the common values inline.
"""

from __future__ import annotations

import operator
import os
import time
import zlib
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import orjson

from connectors import ids, values
from connectors.errors import InvalidValueError
from connectors.shapes import ShapeKey, add_shape_counts
from connectors.values.index_keys import (
    _T_FALSE,
    _T_FLOAT,
    _T_INT,
    _T_STRING,
    _T_TRUE,
    _TERM,
    _float_order_bits,
)
from connectors.values.scalars import _OPT_SORT, _PACK_I64, _b64, _copysign, _dumps
from connectors.values.scalars import INT64_MAX as _INT64_MAX
from connectors.values.scalars import INT64_MIN as _INT64_MIN

__all__ = ["DocumentEncoder", "IndexKeys", "ShapeBatch", "crockford_base32", "new_ids"]

_RANDOM_LEN: Final = ids.INTERNAL_ID_LEN - 2
_DAY_MS: Final = 86_400_000
# Longest body whose Fletcher sums stay below Adler-32's modulus: n + 255·n(n+1)/2 < 65521.
_ADLER_EXACT_MAX_LEN: Final = 21


def _column_table(f: Any) -> bytes:
    return bytes(f(x) for x in range(256))


# Per byte of a 5-byte group, the bits it gives each of the group's eight 5-bit characters (RFC 4648
# order): (character, byte, table).
_B32_PARTS: Final = (
    (0, 0, _column_table(lambda x: x >> 3)),
    (1, 0, _column_table(lambda x: (x & 0x07) << 2)),
    (1, 1, _column_table(lambda x: x >> 6)),
    (2, 1, _column_table(lambda x: (x >> 1) & 0x1F)),
    (3, 1, _column_table(lambda x: (x & 0x01) << 4)),
    (3, 2, _column_table(lambda x: x >> 4)),
    (4, 2, _column_table(lambda x: (x & 0x0F) << 1)),
    (4, 3, _column_table(lambda x: x >> 7)),
    (5, 3, _column_table(lambda x: (x >> 2) & 0x1F)),
    (6, 3, _column_table(lambda x: (x & 0x03) << 3)),
    (6, 4, _column_table(lambda x: x >> 5)),
    (7, 4, _column_table(lambda x: x & 0x1F)),
)
_CROCKFORD_DIGITS: Final = bytes.maketrans(bytes(range(32)), b"0123456789abcdefghjkmnpqrstvwxyz")


def crockford_base32(data: bytes) -> bytes:
    """``base64.b32encode(data)`` in ids' lower-case Crockford alphabet, for ``data`` of a whole number of
    5-byte groups (so no padding). Computed column-wise in C (CPython 3.11's b32encode loops over the groups
    in Python): byte ``j`` of every group is ``data[j::5]``; a translate gives each column's bits for one
    character, two columns' bits for the same character (disjoint) combine by OR as big integers, and the
    eight character columns are interleaved by slice assignment."""
    if len(data) % 5:
        raise ValueError("crockford_base32 takes whole 5-byte groups")
    groups = len(data) // 5
    columns = [data[j::5] for j in range(5)]
    chars: list[bytes | None] = [None] * 8
    for char, byte, table in _B32_PARTS:
        bits = columns[byte].translate(table)
        prior = chars[char]
        if prior is not None:
            bits = (int.from_bytes(prior, "big") | int.from_bytes(bits, "big")).to_bytes(groups, "big")
        chars[char] = bits
    out = bytearray(8 * groups)
    for char, column in enumerate(chars):
        assert column is not None
        out[char::8] = column
    return bytes(out).translate(_CROCKFORD_DIGITS)


def _day_suffix(now_ms: float | None) -> bytes:
    day = int(time.time()) // 86_400 if now_ms is None else int(now_ms // _DAY_MS)
    return (day & 0xFFFF).to_bytes(2, "big")  # masked like ids.new_internal_id


def new_ids(table_number: int, count: int, now_ms: float | None) -> tuple[list[bytes], list[str]]:
    """``count`` fresh internal ids (14 CSPRNG bytes + the 2-byte day, as ``ids.new_internal_id``) and their
    IdV6 strings (as ``ids.encode_id``)."""
    if count <= 0:
        return [], []
    suffix = _day_suffix(now_ms)
    pool = os.urandom(_RANDOM_LEN * count)
    internals = [pool[i : i + _RANDOM_LEN] + suffix for i in range(0, _RANDOM_LEN * count, _RANDOM_LEN)]
    first = ids.encode_id(table_number, internals[0])  # validates the table number; gives the prefix
    body_len = len(ids.encode_varint(table_number)) + ids.INTERNAL_ID_LEN + 2
    if body_len % 5:
        return internals, [first, *(ids.encode_id(table_number, i) for i in internals[1:])]
    prefix = ids.encode_varint(table_number)
    n = body_len - 2  # Fletcher-16 is over the body without its 2 check bytes
    version = ids.ID_VERSION
    parts: list[bytes] = []
    if n <= _ADLER_EXACT_MAX_LEN:
        # Adler-32's halves are Fletcher's two sums plus constants (A = 1 + Σb, B = n + Σ b_j·(n − j)),
        # reduced mod 65521, which sums of so few bytes never reach: one C call per id.
        adler32 = zlib.adler32
        for internal in internals:
            body = prefix + internal
            a = adler32(body)
            check = ((((a >> 16) - n) & 0xFF) << 8 | ((a - 1) & 0xFF)) ^ version
            parts.append(body)
            parts.append(check.to_bytes(2, "little"))
    else:
        weights = range(n, 0, -1)
        mul = operator.mul
        for internal in internals:
            body = prefix + internal
            check = (((sum(map(mul, body, weights)) & 0xFF) << 8) | (sum(body) & 0xFF)) ^ version
            parts.append(body)
            parts.append(check.to_bytes(2, "little"))
    text = crockford_base32(b"".join(parts)).decode("ascii")
    width = body_len * 8 // 5
    strings = [text[i : i + width] for i in range(0, len(text), width)]
    return internals, strings


# Scalar types whose shape tag depends on the type alone (floats too, when the encoder saw no special float).
_PLAIN_TYPES: Final = frozenset({str, float, bool, int, bytes, type(None)})
_SPECIAL_FLOATS: Final = values.FLAG_NONFINITE | values.FLAG_NEGZERO


# Value types of an object -> the positions of its containers (None: a value of an unknown type). Bounded.
_CONTAINERS: dict[tuple[type, ...], tuple[int, ...] | None] = {}
_CONTAINERS_MAX: Final = 4096


def _container_positions(types: tuple[type, ...]) -> tuple[int, ...] | None:
    positions = _CONTAINERS.get(types, ())
    if positions == ():
        if not all(t is list or t is dict or t in _PLAIN_TYPES for t in types):
            positions = None
        else:
            positions = tuple(i for i, t in enumerate(types) if t is list or t is dict)
        if len(_CONTAINERS) >= _CONTAINERS_MAX:
            _CONTAINERS.clear()
        _CONTAINERS[types] = positions
    return positions


def _object_signature(obj: dict[str, Any]) -> tuple[Any, ...] | None:
    """What an object's shape contribution depends on: its keys and, per value, the plain type or the
    signature of the container (None when some value has another type). Plain types and the tagged tuples
    of containers cannot be confused."""
    types = tuple(map(type, obj.values()))
    if _PLAIN_TYPES.issuperset(types):
        return (dict, tuple(obj), types)
    positions = _container_positions(types)
    if positions is None:
        return None
    vals = list(obj.values())
    parts: list[Any] = []
    for i in positions:
        v = vals[i]
        if types[i] is list:
            element_types = tuple(map(type, v))
            if _PLAIN_TYPES.issuperset(element_types):  # the common array: of plain scalars
                parts.append((list, element_types))
                continue
            part = _array_signature(v)
        else:
            part = _object_signature(v)
        if part is None:
            return None
        parts.append(part)
    # The containers' signatures in order, after the types of all values (which place them).
    return (dict, tuple(obj), types, tuple(parts))


def _array_signature(arr: list[Any]) -> tuple[Any, ...] | None:
    types = tuple(map(type, arr))
    if _PLAIN_TYPES.issuperset(types):
        return (list, types)
    parts: list[Any] = []
    for v, t in zip(arr, types, strict=True):
        if t in _PLAIN_TYPES:
            parts.append(t)
            continue
        if t is dict:
            part = _object_signature(v)
        elif t is list:
            part = _array_signature(v)
        else:
            return None
        if part is None:
            return None
        parts.append(part)
    return (list, tuple(parts))


class _Plan(NamedTuple):
    """Where an object of a known signature holds the values its storage encoding must look at: Int64s
    (written as ``$integer`` objects), floats (special ones are tagged) and nested objects."""

    ints: tuple[str, ...]
    floats: tuple[str, ...]
    objects: tuple[tuple[str, _Plan], ...]
    flags: int  # FLAG_INT if the object or a nested one holds an Int64


def _plan_of(obj: dict[str, Any]) -> _Plan | None:
    """The plan of an object of scalars and nested such objects; None for one holding arrays or bytes."""
    ints: list[str] = []
    floats: list[str] = []
    objects: list[tuple[str, _Plan]] = []
    flags = 0
    for k, v in obj.items():
        t = type(v)
        if t is int:
            ints.append(k)
            flags = values.FLAG_INT
        elif t is float:
            floats.append(k)
        elif t is dict:
            plan = _plan_of(v)
            if plan is None:
                return None
            objects.append((k, plan))
            flags |= plan.flags
        elif not (t is str or t is bool or v is None):
            return None
    return _Plan(tuple(ints), tuple(floats), tuple(objects), flags)


def _storage_form(obj: dict[str, Any], plan: _Plan) -> dict[str, Any] | None:
    """What ``values.encode_document`` dumps for ``obj`` (an object of the plan's signature, so already
    validated but for its values): ``obj`` itself or a copy with Int64s as ``$integer`` objects; None when a
    value needs the general encoder (a special float, an out-of-range int), which also raises its errors."""
    for k in plan.floats:
        v = obj[k]
        if v - v != 0.0 or (v == 0.0 and _copysign(1.0, v) < 0.0):
            return None
    if not plan.flags:
        return obj
    out = dict(obj)
    for k in plan.ints:
        v = obj[k]
        if not _INT64_MIN <= v <= _INT64_MAX:
            return None
        out[k] = {"$integer": _b64(_PACK_I64(v))}
    for k, nested in plan.objects:
        form = _storage_form(obj[k], nested)
        if form is None:
            return None
        out[k] = form
    return out


_UNSEEN: Final[Any] = object()
_MAX_PLANS: Final = 256


class DocumentEncoder:
    """``values.encode_document`` for a batch's documents, each with its shape signature for
    :meth:`ShapeBatch.add_all`.

    A batch's documents mostly share a few signatures (field names and value types at every level). The
    first document of a signature takes the general encoder (every check); one that passes them without
    special values gives the signature a plan, and the later documents of that signature are encoded by
    the plan: the same names and structure passed the name, nesting and field-count checks, so only their
    floats, Int64s, strings (by the JSON dump) and size are looked at. Anything else (arrays, bytes, special
    floats, a failed check) takes the general encoder, errors included."""

    __slots__ = ("_plans",)

    def __init__(self) -> None:
        self._plans: dict[tuple[Any, ...], _Plan | None] = {}

    def encode(self, doc: dict[str, Any]) -> tuple[values.EncodedDocument, tuple[Any, ...] | None]:
        """The document's encoding and shape signature (None: count its shape document by document)."""
        signature = _object_signature(doc)
        plan = _UNSEEN
        if signature is not None:
            plan = self._plans.get(signature, _UNSEEN)
            if plan is not _UNSEEN and plan is not None:
                form = _storage_form(doc, plan)
                if form is not None:
                    try:
                        body = _dumps(form, option=_OPT_SORT)
                    except orjson.JSONEncodeError:  # a lone surrogate: the general encoder names it
                        body = None
                    if body is not None and len(body) <= values.MAX_DOCUMENT_SIZE:
                        return values.EncodedDocument(body, plan.flags, len(body)), signature
        encoded = values.encode_document(doc)
        if plan is _UNSEEN and signature is not None and len(self._plans) < _MAX_PLANS:
            self._plans[signature] = None if encoded.flags & ~values.FLAG_INT else _plan_of(doc)
        return encoded, None if encoded.flags & _SPECIAL_FLOATS else signature


class ShapeBatch:
    """Collects documents for shape counting; :meth:`add_to` adds ``+1`` per document to a counter."""

    __slots__ = ("_groups", "_others")

    def __init__(self) -> None:
        self._groups: dict[tuple[Any, ...], list[Any]] = {}  # signature -> [example document, count]
        self._others: list[dict[str, Any]] = []

    def add(self, doc: dict[str, Any], flags: int) -> None:
        """``flags``: the document's encoding flags (``values.encode_document``), which say whether any
        float in it is special (its tag then depends on the value)."""
        signature = None if flags & _SPECIAL_FLOATS else _object_signature(doc)
        if signature is None:
            self._others.append(doc)
            return
        group = self._groups.get(signature)
        if group is None:
            self._groups[signature] = [doc, 1]
        else:
            group[1] += 1

    def add_all(self, docs: Sequence[dict[str, Any]], signatures: Sequence[tuple[Any, ...] | None]) -> None:
        """:meth:`add` of each document, with the signature ``DocumentEncoder.encode`` gave it (None: no
        signature)."""
        groups = self._groups
        for doc, signature in zip(docs, signatures, strict=True):
            if signature is None:
                self._others.append(doc)
                continue
            group = groups.get(signature)
            if group is None:
                groups[signature] = [doc, 1]
            else:
                group[1] += 1

    def add_to(self, counts: dict[ShapeKey, int]) -> None:
        for doc in self._others:
            add_shape_counts(doc, 1, counts)
        for example, n in self._groups.values():
            one: dict[ShapeKey, int] = {}
            add_shape_counts(example, 1, one)
            for key, c in one.items():
                total = counts.get(key, 0) + c * n
                if total:
                    counts[key] = total
                else:
                    del counts[key]



# Scalar types whose index-key encoding is cached per value (not zeros: 0.0 == -0.0 but they encode apart).
_CACHED_KEY_TYPES: Final = frozenset({float, bool, int, type(None), type(values.MISSING)})


class IndexKeys:
    """Index keys (``values.encode_index_key`` of the values at an index's paths) for many documents.

    A key is the concatenation of its values' encodings; the encodings of repeated scalars (a batch's
    ``_creationTime``, flags such as ``fivetran.deleted``, sync timestamps) are computed once per batch."""

    __slots__ = ("_cache", "_floats")

    def __init__(self) -> None:
        self._cache: dict[tuple[type, Any], bytes] = {}
        self._floats: dict[float, bytes] = {}  # non-zero floats only (so no 0.0 / -0.0 / int confusion)

    def key(self, doc: dict[str, Any], paths: Sequence[tuple[str, ...]]) -> bytes:
        """``values.encode_index_key`` of the values at ``paths`` in ``doc``."""
        missing = values.MISSING
        floats = self._floats
        parts: list[bytes] = []
        for path in paths:
            # values.get_path, unrolled for the common paths of one or two names.
            if len(path) == 1:
                v = doc.get(path[0], missing)
            elif len(path) == 2:
                v = doc.get(path[0], missing)
                v = v.get(path[1], missing) if type(v) is dict else missing
            else:
                v = values.get_path(doc, path)
            # The common values encoded here (as :meth:`encode` does); the others by :meth:`encode`.
            t = type(v)
            if t is float and v:
                part = floats.get(v)
                if part is None:
                    part = floats[v] = _T_FLOAT + _float_order_bits(v).to_bytes(8, "big")
            elif t is int and _INT64_MIN <= v <= _INT64_MAX:
                part = _T_INT + (v - _INT64_MIN).to_bytes(8, "big")
            elif t is bool:
                part = _T_TRUE if v else _T_FALSE
            elif t is str:
                try:  # _encode_key_value's string case; a lone surrogate takes the encoder for its error
                    part = _T_STRING + v.encode("utf-8").replace(b"\x00", b"\x00\xff") + _TERM
                except UnicodeEncodeError:
                    return self.encode([values.get_path(doc, path) for path in paths])
            else:
                return self.encode([values.get_path(doc, path) for path in paths])
            parts.append(part)
        return b"".join(parts)

    def encode(self, key: Sequence[Any]) -> bytes:
        """``values.encode_index_key(key)``, errors included."""
        cache = self._cache
        encode = values.encode_index_key
        parts: list[bytes] = []
        for v in key:
            t = type(v)
            if t is str:
                try:  # _encode_key_value's string case; a lone surrogate takes the encoder for its error
                    part = _T_STRING + v.encode("utf-8").replace(b"\x00", b"\x00\xff") + _TERM
                except UnicodeEncodeError:
                    return encode(list(key))
            elif t is int and _INT64_MIN <= v <= _INT64_MAX:
                # Distinct per row (Int64 primary keys): encoded inline, not cached.
                part = _T_INT + (v - _INT64_MIN).to_bytes(8, "big")
            elif t in _CACHED_KEY_TYPES and (t is not float or v):
                ck = (t, v)
                part = cache.get(ck)
                if part is None and t is float:
                    part = cache[ck] = _T_FLOAT + _float_order_bits(v).to_bytes(8, "big")
                elif part is None:
                    try:
                        part = cache[ck] = encode([v])
                    except InvalidValueError:
                        return encode(list(key))  # the error, at the value's position in the key
            else:
                return encode(list(key))  # containers, bytes, zeros: the general encoder (and its errors)
            parts.append(part)
        return b"".join(parts)
