"""Streaming-export selection grammar (``shared/spec/streaming-export.md`` §7). Domain only, no I/O.

A ``Selection`` says which components, tables and columns a ``list_snapshot``/``document_deltas`` call
exports. The JSON grammar is::

    Selection          = { "<componentPath>": ComponentSelection, …, "_other": Inclusion }
    ComponentSelection = "excluded" | { "<table>": TableSelection, …, "_other": Inclusion }
    TableSelection     = "excluded" | { "<column>": Inclusion, …, "_other": Inclusion }
    Inclusion          = "included" | "excluded"

``incl``/``excl`` are accepted everywhere as aliases (older clients send them, §7.2).

An entry that is the literal ``"excluded"`` is represented by ``Inclusion.EXCLUDED`` in the mappings;
it differs from ``{"_other": "excluded"}``: the former drops the table entirely, the latter keeps the
table but no columns (which ``validate`` rejects because ``_id`` would be excluded).

Parsing (``Selection.parse``, ``parse_selection_args``) only checks the JSON shape and raises
``BadRequestError`` (400). Name and ``_id`` rules are checked separately by ``validate`` and raise
``PlainError``, because upstream reports them as 500 on the legacy endpoints (§7.4).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Final, Literal

from connectors.constants import ID_FIELD
from connectors.constants import MAX_IDENTIFIER_LEN as MAX_IDENTIFIER_BYTES
from connectors.errors import BadRequestError, PlainError

__all__ = [
    "EXCLUDED",
    "ColumnFilter",
    "ComponentEntry",
    "ComponentSelection",
    "Inclusion",
    "Selection",
    "TableEntry",
    "TableSelection",
    "is_valid_identifier",
    "parse_selection_args",
    "validate_component_path",
    "validate_table_name",
]

ROOT_COMPONENT: Final = ""
OTHER_KEY: Final = "_other"

_ID_MUST_BE_INCLUDED: Final = "`_id` must be included in the column selection"
_IDENTIFIER_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Inclusion(Enum):
    INCLUDED = "included"
    EXCLUDED = "excluded"

    @property
    def included(self) -> bool:
        return self is Inclusion.INCLUDED

    @classmethod
    def from_bool(cls, included: bool) -> Inclusion:
        return cls.INCLUDED if included else cls.EXCLUDED

    def to_json(self, short: bool = False) -> str:
        """``included``/``excluded``, or ``incl``/``excl`` for servers older than 2026-07-21 (§7.2)."""
        if short:
            return "incl" if self is Inclusion.INCLUDED else "excl"
        return self.value

    @classmethod
    def parse(cls, obj: object, where: str, error_code: str = "BadJsonBody") -> Inclusion:
        parsed = _SPELLINGS.get(obj) if isinstance(obj, str) else None
        if parsed is None:
            raise BadRequestError(
                error_code,
                f"Invalid value {_describe(obj)} for {where}: expected one of "
                '"included", "excluded", "incl", "excl"',
            )
        return parsed


_SPELLINGS: Final[Mapping[str, Inclusion]] = {
    "included": Inclusion.INCLUDED,
    "incl": Inclusion.INCLUDED,
    "excluded": Inclusion.EXCLUDED,
    "excl": Inclusion.EXCLUDED,
}

EXCLUDED: Final = Inclusion.EXCLUDED
"""Marker for a component or table that is the literal ``"excluded"`` in the grammar."""


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    # Copy then wrap read-only so the frozen dataclasses really are immutable.
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, eq=True, repr=False)
class TableSelection:
    """An included table: per-column overrides plus the default for unlisted columns."""

    columns: Mapping[str, bool] = field(default_factory=dict)
    other: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", _freeze(self.columns))

    def __hash__(self) -> int:
        return hash((frozenset(self.columns.items()), self.other))

    def __repr__(self) -> str:
        return f"TableSelection({dict(self.columns)!r}, other={self.other!r})"

    @classmethod
    def all_columns(cls) -> TableSelection:
        return cls({}, True)

    def includes_column(self, column: str) -> bool:
        return self.columns.get(column, self.other)

    def to_json(self, short: bool = False) -> dict[str, str]:
        out = {name: Inclusion.from_bool(inc).to_json(short) for name, inc in self.columns.items()}
        out[OTHER_KEY] = Inclusion.from_bool(self.other).to_json(short)
        return out


TableEntry = TableSelection | Literal[Inclusion.EXCLUDED]


@dataclass(frozen=True, eq=True, repr=False)
class ComponentSelection:
    """An included component: per-table entries plus the default for unlisted tables."""

    tables: Mapping[str, TableEntry] = field(default_factory=dict)
    other: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", _freeze(self.tables))

    def __hash__(self) -> int:
        return hash((frozenset(self.tables.items()), self.other))

    def __repr__(self) -> str:
        return f"ComponentSelection({dict(self.tables)!r}, other={self.other!r})"

    def table_entry(self, table: str) -> TableEntry:
        entry = self.tables.get(table)
        if entry is not None:
            return entry
        return TableSelection.all_columns() if self.other else EXCLUDED

    def to_json(self, short: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {name: _entry_to_json(entry, short) for name, entry in self.tables.items()}
        out[OTHER_KEY] = Inclusion.from_bool(self.other).to_json(short)
        return out


ComponentEntry = ComponentSelection | Literal[Inclusion.EXCLUDED]


@dataclass(frozen=True)
class ColumnFilter:
    """Column filter of one included table. ``_id`` is always kept (deletions carry only ``_id``)."""

    columns: Mapping[str, bool]
    other: bool

    def includes(self, column: str) -> bool:
        return column == ID_FIELD or self.columns.get(column, self.other)

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Return a new dict with only the selected document fields (metadata keys are not special)."""
        return {key: value for key, value in doc.items() if self.includes(key)}


@dataclass(frozen=True, eq=True, repr=False)
class Selection:
    """The full selection: per-component entries plus the default for unlisted components."""

    components: Mapping[str, ComponentEntry] = field(default_factory=dict)
    other: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", _freeze(self.components))

    def __hash__(self) -> int:
        return hash((frozenset(self.components.items()), self.other))

    def __repr__(self) -> str:
        return f"Selection({dict(self.components)!r}, other={self.other!r})"

    # --- constructors --------------------------------------------------------------------------------

    @classmethod
    def everything(cls) -> Selection:
        return cls({}, True)

    @classmethod
    def single_table(cls, component: str, table: str) -> Selection:
        """What SelectionArg::SingleTable means: that one table with all columns, nothing else."""
        return cls({component: ComponentSelection({table: TableSelection.all_columns()}, False)}, False)

    @classmethod
    def single_component(cls, component: str) -> Selection:
        """What SelectionArg::SingleComponent means: every table of that component, nothing else."""
        return cls({component: ComponentSelection({}, True)}, False)

    @classmethod
    def parse(cls, obj: object, error_code: str = "BadJsonBody") -> Selection:
        """Parse the JSON grammar; shape errors raise ``BadRequestError(error_code, …)``."""
        mapping = _expect_object(obj, "the selection", error_code)
        other = _parse_other(mapping, "the selection", error_code)
        components: dict[str, ComponentEntry] = {}
        for path, value in mapping.items():
            if path == OTHER_KEY:
                continue
            components[path] = _parse_component(path, value, error_code)
        return cls(components, other)

    # --- serialization -------------------------------------------------------------------------------

    def to_json(self, short: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {path: _entry_to_json(entry, short) for path, entry in self.components.items()}
        out[OTHER_KEY] = Inclusion.from_bool(self.other).to_json(short)
        return out

    # --- queries -------------------------------------------------------------------------------------

    def component_entry(self, component: str) -> ComponentEntry:
        entry = self.components.get(component)
        if entry is not None:
            return entry
        return ComponentSelection({}, True) if self.other else EXCLUDED

    def table_entry(self, component: str, table: str) -> TableEntry:
        comp = self.component_entry(component)
        if comp is EXCLUDED:
            return EXCLUDED
        return comp.table_entry(table)

    def includes_table(self, component: str, table: str) -> bool:
        return self.table_entry(component, table) is not EXCLUDED

    def includes_component(self, component: str) -> bool:
        """False only when no table of the component can be selected."""
        return self.component_entry(component) is not EXCLUDED

    def column_filter(self, component: str, table: str) -> ColumnFilter | None:
        """The table's column filter, or None when every column is exported (nothing to do).

        Raises ValueError for a table that is not selected: check ``includes_table`` first.
        """
        entry = self.table_entry(component, table)
        if entry is EXCLUDED:
            raise ValueError(f"table {table!r} of component {component!r} is not selected")
        if entry.other and all(entry.columns.values()):
            return None
        return ColumnFilter(entry.columns, entry.other)

    def validate(self) -> None:
        """Check names and the ``_id`` rule (§7.4). Raises ``PlainError`` (500 on the legacy endpoints)."""
        for path, comp in self.components.items():
            validate_component_path(path)
            if comp is EXCLUDED:
                continue
            for table, entry in comp.tables.items():
                validate_table_name(table)
                if entry is not EXCLUDED and not entry.includes_column(ID_FIELD):
                    raise PlainError(_ID_MUST_BE_INCLUDED)


# --- names -----------------------------------------------------------------------------------------------


def is_valid_identifier(name: str) -> bool:
    """``values-and-ids.md`` §6.1: ASCII letters/digits/``_``, not starting with a digit, not only
    underscores, at most 64 bytes."""
    return (
        len(name) <= MAX_IDENTIFIER_BYTES
        and _IDENTIFIER_RE.fullmatch(name) is not None
        and name.strip("_") != ""
    )


def validate_table_name(name: str) -> None:
    # System names (leading "_") are identifiers too; they simply never match an exported table.
    if not is_valid_identifier(name):
        raise PlainError(
            f"Invalid table name {_quoted(name)}: identifiers must start with a letter or underscore, contain "
            f"only letters, digits and underscores, not be only underscores, and be at most "
            f"{MAX_IDENTIFIER_BYTES} characters"
        )


def validate_component_path(path: str) -> None:
    if path == ROOT_COMPONENT:
        return
    for segment in path.split("/"):
        if not is_valid_identifier(segment):
            raise PlainError(
                f"Invalid component path {_quoted(path)}: each '/'-separated segment must be an identifier "
                f"(letters, digits and underscores, not starting with a digit, at most "
                f"{MAX_IDENTIFIER_BYTES} characters)"
            )


# --- SelectionArg ------------------------------------------------------------------------------------


def parse_selection_args(args: Mapping[str, Any], error_code: str = "BadJsonBody") -> Selection:
    """Resolve the flattened, untagged SelectionArg of list_snapshot/document_deltas (§7.1).

    Variants in order: Exact (``selection`` non-null), SingleTable (``table_name`` or ``tableName``
    non-null, optional ``component``), SingleComponent (``component`` non-null), Everything.
    Unlike serde's untagged fallback, a malformed non-null ``selection`` is an error rather than
    silently meaning "everything" — exporting more than asked for is the worse failure.
    Pass ``error_code="BadQueryArgs"`` for query-string arguments.
    """
    selection = args.get("selection")
    if selection is not None:
        return Selection.parse(selection, error_code)

    table = args.get("table_name")
    if table is None:
        table = args.get("tableName")
    component = args.get("component")
    if component is not None and not isinstance(component, str):
        raise BadRequestError(error_code, f"`component` must be a string, got {_describe(component)}")
    if table is not None:
        if not isinstance(table, str):
            raise BadRequestError(error_code, f"`table_name` must be a string, got {_describe(table)}")
        return Selection.single_table(component if component is not None else ROOT_COMPONENT, table)
    if component is not None:
        return Selection.single_component(component)
    return Selection.everything()


# --- parsing helpers ---------------------------------------------------------------------------------


def _entry_to_json(entry: ComponentEntry | TableEntry, short: bool) -> Any:
    if entry is EXCLUDED:
        return EXCLUDED.to_json(short)
    return entry.to_json(short)


# Names and values quoted in messages are cut to this many characters (never echo unbounded input).
_QUOTE_MAX: Final = 64


def _quoted(name: str) -> str:
    """A user-supplied string for a message: JSON-quoted, cut with ``…`` when long."""
    if len(name) > _QUOTE_MAX:
        return json.dumps(name[:_QUOTE_MAX], ensure_ascii=False)[:-1] + '…"'
    return json.dumps(name, ensure_ascii=False)


def _describe(obj: object) -> str:
    """A JSON value for a message: a (cut) string, or the JSON type of anything else."""
    if isinstance(obj, str):
        return _quoted(obj)
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    if isinstance(obj, int | float):
        return "a number"
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, Mapping):
        return "an object"
    return type(obj).__name__


def _expect_object(obj: object, where: str, error_code: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise BadRequestError(
            error_code,
            f'Invalid value for {where}: expected an object such as {{"_other": "included"}}, got '
            f"{_describe(obj)}",
        )
    return obj


def _parse_other(mapping: Mapping[str, Any], where: str, error_code: str) -> bool:
    if OTHER_KEY not in mapping:
        raise BadRequestError(error_code, f"Missing `_other` in {where}")
    return Inclusion.parse(mapping[OTHER_KEY], f"`_other` in {where}", error_code).included


def _parse_excluded_literal(obj: str, where: str, error_code: str) -> Literal[Inclusion.EXCLUDED]:
    # Only the "excluded" literal is allowed as a whole-entry string; "included" must be an object.
    if _SPELLINGS.get(obj) is Inclusion.EXCLUDED:
        return EXCLUDED
    raise BadRequestError(
        error_code,
        f'Invalid value {_quoted(obj)} for {where}: expected "excluded" (or "excl") or an object with `_other`',
    )


def _parse_component(path: str, obj: object, error_code: str) -> ComponentEntry:
    where = f"the selection of component {_quoted(path)}"
    if isinstance(obj, str):
        return _parse_excluded_literal(obj, where, error_code)
    mapping = _expect_object(obj, where, error_code)
    other = _parse_other(mapping, where, error_code)
    tables: dict[str, TableEntry] = {}
    for table, value in mapping.items():
        if table == OTHER_KEY:
            continue
        tables[table] = _parse_table(path, table, value, error_code)
    return ComponentSelection(tables, other)


def _parse_table(path: str, table: str, obj: object, error_code: str) -> TableEntry:
    where = f"the selection of table {_quoted(table)} in component {_quoted(path)}"
    if isinstance(obj, str):
        return _parse_excluded_literal(obj, where, error_code)
    mapping = _expect_object(obj, where, error_code)
    other = _parse_other(mapping, where, error_code)
    columns: dict[str, bool] = {}
    for column, value in mapping.items():
        if column == OTHER_KEY:
            continue
        columns[column] = Inclusion.parse(value, f"column {_quoted(column)} of {where}", error_code).included
    return TableSelection(columns, other)
