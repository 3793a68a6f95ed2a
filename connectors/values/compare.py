"""The Convex total order of two values."""

from __future__ import annotations

from typing import Any

from connectors.errors import InvalidValueError
from connectors.typemap.tags import TYPE_RANK as _TYPE_RANK
from connectors.values.index_keys import _float_order_bits
from connectors.values.paths import MISSING, _Missing
from connectors.values.problems import _type_problem
from connectors.values.scalars import Value


def _rank(v: Any) -> int:
    if v is MISSING:
        return 0
    try:
        return _TYPE_RANK[type(v)]
    except KeyError:
        raise InvalidValueError(_type_problem(v).message) from None


def compare_values(a: Value | _Missing, b: Value | _Missing) -> int:
    """Convex total order of two values: negative, zero or positive (like C ``memcmp``)."""
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    # Equal ranks mean equal exact types; the isinstance checks only tell the type checker so.
    if isinstance(a, float) and isinstance(b, float):
        x, y = _float_order_bits(a), _float_order_bits(b)
        return (x > y) - (x < y)
    if isinstance(a, str) and isinstance(b, str):
        ea, eb = a.encode("utf-8"), b.encode("utf-8")
        return (ea > eb) - (ea < eb)
    if isinstance(a, int) and isinstance(b, int):  # Int64, or Boolean (bool is an int)
        return (a > b) - (a < b)
    if isinstance(a, bytes) and isinstance(b, bytes):
        return (a > b) - (a < b)
    if isinstance(a, list) and isinstance(b, list):
        for item_a, item_b in zip(a, b, strict=False):
            c = compare_values(item_a, item_b)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if isinstance(a, dict) and isinstance(b, dict):
        ka, kb = sorted(a), sorted(b)
        for key_a, key_b in zip(ka, kb, strict=False):
            c = compare_values(key_a, key_b) or compare_values(a[key_a], b[key_b])
            if c:
                return c
        return (len(ka) > len(kb)) - (len(ka) < len(kb))
    return 0
