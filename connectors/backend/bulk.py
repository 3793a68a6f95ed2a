"""Batch helpers for ``Transaction.insert_many``: new ids and shape counts for many documents at once.

Both give exactly what the per-document functions give (``ids.new_internal_id`` + ``ids.encode_id`` and
``shapes.add_shape_counts``), with the per-document Python work moved into C-level bulk operations:

- ids: one ``os.urandom`` call for the batch, and one base32 pass over the concatenated id bodies when an
  id body is a whole number of 5-byte groups (then base32 of the concatenation is the concatenation of the
  base32 of each body);
- shapes: documents whose shape contribution is fully determined by their field names, value types and the
  element types of their arrays (no nested objects, no special floats) are grouped by that signature and
  counted once per group.
"""

from __future__ import annotations

import base64
import operator
import os
import time
from typing import Any, Final

from connectors import ids, values
from connectors.shapes import ShapeKey, add_shape_counts

__all__ = ["ShapeBatch", "new_ids"]

# RFC 4648 base32 (what base64.b32encode writes) -> lower-case Crockford (what ids use).
_TO_CROCKFORD: Final = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz"
)
_RANDOM_LEN: Final = ids.INTERNAL_ID_LEN - 2
_DAY_MS: Final = 86_400_000


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
    body_len = len(ids._varint(table_number)) + ids.INTERNAL_ID_LEN + 2
    if body_len % 5:
        return internals, [first, *(ids.encode_id(table_number, i) for i in internals[1:])]
    prefix = ids._varint(table_number)
    weights = range(body_len - 2, 0, -1)  # Fletcher-16 over the body without its 2 check bytes
    mul = operator.mul
    version = ids.ID_VERSION
    parts: list[bytes] = []
    for internal in internals:
        body = prefix + internal
        check = (((sum(map(mul, body, weights)) & 0xFF) << 8) | (sum(body) & 0xFF)) ^ version
        parts.append(body)
        parts.append(check.to_bytes(2, "little"))
    text = base64.b32encode(b"".join(parts)).translate(_TO_CROCKFORD).decode("ascii")
    width = body_len * 8 // 5
    strings = [text[i : i + width] for i in range(0, len(text), width)]
    return internals, strings


# Scalar types whose shape tag depends on the type alone (floats too, when the encoder saw no special float).
_PLAIN_TYPES: Final = frozenset({str, float, bool, int, bytes, type(None)})
_SPECIAL_FLOATS: Final = values.FLAG_NONFINITE | values.FLAG_NEGZERO


class ShapeBatch:
    """Collects documents for shape counting; :meth:`add_to` adds ``+1`` per document to a counter."""

    __slots__ = ("_groups", "_others")

    def __init__(self) -> None:
        self._groups: dict[tuple[Any, ...], list[Any]] = {}  # signature -> [example document, count]
        self._others: list[dict[str, Any]] = []

    def add(self, doc: dict[str, Any], flags: int) -> None:
        """``flags``: the document's encoding flags (``values.encode_document``), which say whether any
        float in it is special (its tag then depends on the value)."""
        types = tuple(map(type, doc.values()))
        if flags & _SPECIAL_FLOATS or not _PLAIN_TYPES.issuperset(types):
            if dict in types or list in types:
                signature = self._with_arrays(doc, types) if not flags & _SPECIAL_FLOATS else None
                if signature is not None:
                    self._count(signature, doc)
                    return
            self._others.append(doc)
            return
        self._count((tuple(doc), types), doc)

    @staticmethod
    def _with_arrays(doc: dict[str, Any], types: tuple[type, ...]) -> tuple[Any, ...] | None:
        """The signature of a document whose only containers are arrays of plain scalars, else None."""
        if dict in types:
            return None
        elements: list[tuple[type, ...]] = []
        for v in doc.values():
            if type(v) is list:
                element_types = tuple(map(type, v))
                if not _PLAIN_TYPES.issuperset(element_types):
                    return None
                elements.append(element_types)
            elif type(v) not in _PLAIN_TYPES:
                return None
        return (tuple(doc), types, tuple(elements))

    def _count(self, signature: tuple[Any, ...], doc: dict[str, Any]) -> None:
        group = self._groups.get(signature)
        if group is None:
            self._groups[signature] = [doc, 1]
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

