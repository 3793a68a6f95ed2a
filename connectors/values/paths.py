"""Field access: the absent value :data:`MISSING` and :func:`get_path`."""

from __future__ import annotations

from typing import Any, Final

from connectors.values.scalars import Value


class _Missing:
    """The absent value (JavaScript ``undefined``): distinct from Null."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def get_path(doc: Any, path: tuple[str, ...]) -> Value | _Missing:
    """Follow ``path`` through nested objects; :data:`MISSING` when any step is absent or not an object."""
    cur = doc
    for name in path:
        if type(cur) is not dict:
            return MISSING
        cur = cur.get(name, MISSING)
        if cur is MISSING:
            return MISSING
    return cur
