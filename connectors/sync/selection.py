"""What a sync reads: ``SyncSelection`` builds the wire ``Selection`` sent on every call and the client-side
filter applied to what comes back, in one place; plus the pure mapping of a Fivetran selection
(``fivetran-source.md`` §6.6) onto it.

The client-side filter exists because older servers ignore part of the selection (``streaming-export.md``
§7.1: before 2026-03-16 ``tableName`` was ignored); on a current server it never drops anything, and it
costs one dictionary lookup per run of rows of one table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from connectors.selection import (
    EXCLUDED,
    ColumnFilter,
    ComponentEntry,
    ComponentSelection,
    Selection,
    TableEntry,
    TableSelection,
)
from connectors.sync.state import ROOT_COMPONENT, TableRef

FIVETRAN_ROOT_SCHEMA: Final = "app"
WITHOUT_SCHEMA_MESSAGE: Final = "Fivetran unexpectedly sent a selection setting without a schema."


class SelectionMappingError(ValueError):
    """A Fivetran selection that cannot be mapped; the text is the one the reference connector sends."""


@dataclass(frozen=True)
class SyncSelection:
    """The components, tables and columns a sync reads, with the defaults for ones not listed.

    ``wire`` is what every list_snapshot/document_deltas call sends; ``accepts``/``column_filter`` are the
    client-side check of each table's rows against the same selection.
    """

    wire: Selection = field(default_factory=Selection.everything)

    def __post_init__(self) -> None:
        # Names and the `_id` rule are checked here, before any request (the server reports them as 500).
        self.wire.validate()
        object.__setattr__(self, "_filters", {})

    # --- constructors -----------------------------------------------------------------------------------

    @classmethod
    def everything(cls) -> SyncSelection:
        return cls(Selection.everything())

    @classmethod
    def of_tables(
        cls, tables: Iterable[TableRef], excluded_columns: Mapping[TableRef, Iterable[str]] | None = None
    ) -> SyncSelection:
        """Only these tables (all their columns but ``excluded_columns``); no new tables or components."""
        excluded_columns = excluded_columns or {}
        by_component: dict[str, dict[str, TableEntry]] = {}
        for ref in tables:
            columns = {name: False for name in excluded_columns.get(ref, ())}
            by_component.setdefault(ref.component, {})[ref.table] = TableSelection(columns, True)
        components: dict[str, ComponentEntry] = {
            path: ComponentSelection(entries, False) for path, entries in by_component.items()
        }
        return cls(Selection(components, False))

    @classmethod
    def of_components(cls, paths: Iterable[str]) -> SyncSelection:
        """Every table (present and future) of these components, nothing else."""
        return cls(Selection({path: ComponentSelection({}, True) for path in paths}, False))

    # --- the client-side filter -------------------------------------------------------------------------

    def accepts(self, ref: TableRef) -> bool:
        return self._filter(ref) is not _REJECTED

    def column_filter(self, ref: TableRef) -> ColumnFilter | None:
        """The columns to keep for ``ref``, or None when every column is kept (the common case)."""
        found = self._filter(ref)
        return None if found is _REJECTED else found  # type: ignore[return-value]

    def _filter(self, ref: TableRef) -> ColumnFilter | None | object:
        filters: dict[TableRef, ColumnFilter | None | object] = self._filters  # type: ignore[attr-defined]
        if ref in filters:  # computed on the table's first page
            return filters[ref]
        if not self.wire.includes_table(ref.component, ref.table):
            found: ColumnFilter | None | object = _REJECTED
        else:
            found = self.wire.column_filter(ref.component, ref.table)
        filters[ref] = found
        return found


_REJECTED: Final = object()


# --- Fivetran selection (fivetran-source.md §6.6) ----------------------------------------------------------


@dataclass(frozen=True)
class FivetranTableChoice:
    """``TableSelection``: ``columns`` maps a column name to included (True) or excluded (False).
    ``include_new_columns`` is the table's own flag (``TableSelection`` field 4); None takes the schema's."""

    table_name: str
    included: bool = True
    columns: Mapping[str, bool] = field(default_factory=dict)
    include_new_columns: bool | None = None


@dataclass(frozen=True)
class FivetranSchemaChoice:
    """``SchemaSelection``: the schema ``app`` is the root component, any other name a component path."""

    schema_name: str
    included: bool = True
    tables: Sequence[FivetranTableChoice] = ()
    include_new_tables: bool = True
    include_new_columns: bool = True


@dataclass(frozen=True)
class FivetranTablesWithSchema:
    """``Selection.with_schema`` (``TablesWithSchema``)."""

    schemas: Sequence[FivetranSchemaChoice] = ()
    include_new_schemas: bool = True


@dataclass(frozen=True)
class FivetranWithoutSchema:
    """``Selection.without_schema``: never valid for this connector."""


FivetranSelection = FivetranTablesWithSchema | FivetranWithoutSchema | None
"""What ``UpdateRequest.selection`` holds; None = absent, or set without its inner oneof."""


def from_fivetran_selection(selection: FivetranSelection) -> SyncSelection:
    """Map a Fivetran selection onto a sync selection exactly as the reference connector does."""
    if selection is None:
        return SyncSelection.everything()
    if isinstance(selection, FivetranWithoutSchema):
        raise SelectionMappingError(WITHOUT_SCHEMA_MESSAGE)
    components: dict[str, ComponentEntry] = {}
    for schema in selection.schemas:
        path = ROOT_COMPONENT if schema.schema_name == FIVETRAN_ROOT_SCHEMA else schema.schema_name
        if not schema.included:
            components[path] = EXCLUDED
            continue
        tables: dict[str, TableEntry] = {}
        for table in schema.tables:
            if not table.included:
                tables[table.table_name] = EXCLUDED
            else:
                new_columns = (
                    schema.include_new_columns if table.include_new_columns is None else table.include_new_columns
                )
                tables[table.table_name] = TableSelection(dict(table.columns), new_columns)
        components[path] = ComponentSelection(tables, schema.include_new_tables)
    return SyncSelection(Selection(components, selection.include_new_schemas))
