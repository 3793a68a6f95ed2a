"""Nesting depth: the one over-deep message and error, an iterative depth measure, and parsing JSON text
the way Convex reads it (``-0`` is Float64 -0.0; input nested deeper than the parser reads is refused)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import orjson

from connectors.constants import (
    MAX_NESTING,
)
from connectors.errors import InvalidValueError


class NestingTooDeepError(InvalidValueError):
    """400 ``InvalidValue``: objects and arrays nested deeper than :data:`MAX_NESTING` (or than a JSON
    parser reads). Its own type so that callers that report other value errors differently (e.g. as
    ``BadJsonBody``) still answer this one as ``InvalidValue``."""


def too_deep_message(depth: int, *, exact: bool = True) -> str:
    """The one message for over-deep input, naming its depth (``exact=False``: at least ``depth``)."""
    amount = f"{depth}" if exact else f"more than {depth - 1}"
    return (
        f"Value is nested {amount} levels deep (the limit is {MAX_NESTING} levels of objects and arrays; "
        "flatten the data, for example by storing the deep part as a JSON string)"
    )


def _is_special(d: dict[Any, Any]) -> bool:
    if len(d) != 1:
        return False
    (k,) = d
    return k in ("$integer", "$float", "$bytes")


def nesting_depth(v: object) -> int:
    """How many levels of objects and arrays ``v`` has (a scalar: 0; ``{"a": [1]}``: 2). Iterative, so any
    depth is measured without recursion; ``$integer``/``$float``/``$bytes`` objects count as scalars."""
    deepest = 0
    stack: list[tuple[object, int]] = [(v, 1)]
    while stack:
        x, depth = stack.pop()
        t = type(x)
        if t is dict:
            if _is_special(x):  # type: ignore[arg-type]
                continue
            children: Iterable[object] = x.values()  # type: ignore[attr-defined]
        elif t is list:
            children = x  # type: ignore[assignment]
        else:
            continue
        if depth > deepest:
            deepest = depth
        for c in children:
            tc = type(c)
            if tc is dict or tc is list:
                stack.append((c, depth + 1))
    return deepest


_loads = orjson.loads

# orjson refuses input nested deeper than this (its own limit, checked without recursion).
JSON_PARSER_MAX_DEPTH: Final = 1024
# The token `-0` (not `-0.5`, `-0e1`, `-01`): orjson reads it as the integer 0, Convex as Float64 -0.0.
_NEG_ZERO_TOKEN_RE: Final = re.compile(rb"-0(?![0-9.eE])")
# A whole JSON string, or the token `-0` outside strings (strings are matched first, so their contents are
# skipped).
_STRING_OR_NEG_ZERO_RE: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|-0(?![0-9.eE])', re.DOTALL)


def _neg_zero_as_float(m: re.Match[bytes]) -> bytes:
    token = m.group()
    return token if token[:1] == b'"' else b"-0.0"


def load_json(raw: bytes | str) -> Any:
    """Parse JSON text the way Convex reads it: the number token ``-0`` is the Float64 -0.0 (orjson alone
    gives the integer 0). Input nested deeper than orjson reads raises :class:`InvalidValueError` naming the
    depth; other syntax errors raise ``orjson.JSONDecodeError``. The common case costs one substring scan."""
    if type(raw) is str:
        raw = raw.encode("utf-8", "surrogatepass")
    if b"-0" in raw and _NEG_ZERO_TOKEN_RE.search(raw) is not None:  # type: ignore[arg-type]
        raw = _STRING_OR_NEG_ZERO_RE.sub(_neg_zero_as_float, raw)  # type: ignore[arg-type]
    try:
        return _loads(raw)
    except orjson.JSONDecodeError as e:
        if e.msg.startswith("depth limit"):
            raise NestingTooDeepError(too_deep_message(JSON_PARSER_MAX_DEPTH + 1, exact=False)) from None
        raise
