"""Errors with paths: the internal :class:`_Problem` raised deep in a walk (each level appends its key on
the way out), turned into :class:`InvalidValueError` with a JS-like path at the public entry point."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from connectors.constants import (
    MAX_NESTING,
    SYSTEM_FIELDS,
)
from connectors.errors import InvalidValueError
from connectors.identifiers import field_name_problem
from connectors.values.depth import NestingTooDeepError, nesting_depth, too_deep_message


class _Problem(Exception):
    """Internal: raised deep in a walk; each level appends its key on the way out (zero cost when
    nothing fails), and the public entry point turns it into :class:`InvalidValueError`."""

    def __init__(self, message: str, rev_path: list[str | int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.rev_path: list[str | int] = rev_path if rev_path is not None else []

    def to_error(self) -> InvalidValueError:
        return InvalidValueError(self.message, format_path(reversed(self.rev_path)))


class _TooDeep(_Problem):
    """A container nested deeper than :data:`MAX_NESTING`. Raised before recursing into it, so the depth
    of Python's stack never depends on the input; the entry point measures the real depth (iteratively)
    for the message."""

    def __init__(self) -> None:
        super().__init__(too_deep_message(MAX_NESTING + 1, exact=False))

    def measured(self, root: object) -> _TooDeep:
        self.message = too_deep_message(nesting_depth(root))
        return self

    def to_error(self) -> InvalidValueError:
        return NestingTooDeepError(self.message, format_path(reversed(self.rev_path)))


_JS_IDENT_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*", re.ASCII)
# Keys in error paths are cut to this many characters: a path must not echo megabytes of user input.
_PATH_KEY_MAX: Final = 64


def format_path(parts: Iterable[str | int]) -> str:
    """JS-like path for error messages: ``.items[3].name``, ``["weird key"]``; long keys are cut (``…``)."""
    out = []
    for p in parts:
        if type(p) is int:
            out.append(f"[{p}]")
            continue
        key = str(p)
        cut = len(key) > _PATH_KEY_MAX
        if cut:
            key = key[:_PATH_KEY_MAX]
        if _JS_IDENT_RE.fullmatch(key):
            out.append("." + key + ("…" if cut else ""))
        else:
            quoted = json.dumps(key)
            out.append("[" + (quoted[:-1] + '…"' if cut else quoted) + "]")
    return "".join(out)


def _type_problem(v: object) -> _Problem:
    return _Problem(
        f"Python type {type(v).__name__} is not a Convex value "
        "(supported: None, bool, int, float, str, bytes, list, dict)"
    )


def _int_range_problem() -> _Problem:
    return _Problem("Integer is outside the Int64 range [-2^63, 2^63-1]")


def _key_problem(k: object, strict_top: bool) -> _Problem | None:
    problem = field_name_problem(k)
    if problem is not None:
        return _Problem(problem)
    if strict_top and k not in SYSTEM_FIELDS and k[0] == "_":  # type: ignore[index]
        return _Problem(
            f"Field name {json.dumps(k)} is a system field name (it starts with '_'); documents may "
            "only contain the system fields _id and _creationTime"
        )
    return None


def _dollar_key_problem(k: str) -> _Problem:
    if k in ("$set", "$map"):
        return _Problem(f"{k} values are no longer supported")
    return _Problem(f"Field name {json.dumps(k)} starts with '$', which is reserved")


def _run(fn: Callable[[Any], Any], v: Any) -> Any:
    try:
        return fn(v)
    except _TooDeep as p:
        raise p.measured(v).to_error() from None
    except _Problem as p:
        raise p.to_error() from None
