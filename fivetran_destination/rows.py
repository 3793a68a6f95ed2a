"""Batch-file rows -> Convex documents (fivetran-destination.md §10.4-§10.5).

A :class:`RowConverter` is built once per file header: for each header position it knows the column's type
and where the value goes (top level, ``fivetran.<key>``, ``fivetran.columns.<name>``), so converting a row is
one pass over its cells. Unmodified cells are left out, null cells become ``null``, other cells go through
the type map's ``parse_fivetran_cell``.

Errors never carry cell values (customer data): they name the file, the data row and the column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from connectors import values
from connectors.constants import FIVETRAN_OBJECT, FIVETRAN_SYNCED_COLUMN
from connectors.typemap.fivetran import FivetranCellError, FivetranDataType, parse_fivetran_cell
from fivetran_destination.batch_files import UNMODIFIED, Cell
from fivetran_destination.model import TableDef, placement

_VERBATIM: Final = frozenset({FivetranDataType.STRING, FivetranDataType.XML, FivetranDataType.DECIMAL})


def encode_value(value: Any) -> Any:
    """A Python Convex value -> Convex internal JSON, with a fast path for the JSON-native leaves."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is float and math.isfinite(value) and (value != 0.0 or math.copysign(1.0, value) > 0):
        return value
    if t is dict:
        return {k: encode_value(v) for k, v in value.items()}
    return values.to_encoded_json(value)


def encode_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {key: encode_value(value) for key, value in doc.items()}


def _parser(data_type: FivetranDataType, column: str) -> Callable[[str], Any] | None:
    """The cell parser of a column, returning Convex internal JSON; None: the text is the value."""
    if data_type in _VERBATIM:
        return None

    def parse(text: str) -> Any:
        return encode_value(parse_fivetran_cell(text, data_type, column))

    return parse


class RowError(ValueError):
    """A row of a batch file cannot be converted; ``str()`` is the user-facing text (no cell values)."""


@dataclass(frozen=True, slots=True)
class _Slot:
    column: str
    data_type: FivetranDataType | None  # None: not a column of the table
    path: tuple[str, ...]
    parse: Callable[[str], Any] | None  # None: the cell text is the value


class RowConverter:
    """Converts the rows of one file (one header) for one table."""

    def __init__(self, table: TableDef, header: Sequence[str], file_name: str) -> None:
        self.file_name = file_name
        slots: list[_Slot] = []
        for name in header:
            column = table.column(name)
            data_type = None if column is None else column.type
            parse = None if data_type is None else _parser(data_type, name)
            slots.append(_Slot(name, data_type, placement(name).path, parse))
            if name == FIVETRAN_SYNCED_COLUMN and data_type not in (None, FivetranDataType.UTC_DATETIME):
                raise RowError(
                    "A row from your data source is invalid: Unexpected value for _fivetran_synced: the column"
                    " must be UTC_DATETIME in the table definition."
                )
        self.slots = tuple(slots)
        self.header = tuple(header)

    def convert(self, cells: Sequence[Cell], row_number: int) -> dict[str, Any]:
        """One row (cells in header order) -> a document in Convex internal JSON, with the ``fivetran``
        object always present."""
        doc: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        columns: dict[str, Any] | None = None
        for slot, cell in zip(self.slots, cells, strict=True):
            if cell is UNMODIFIED:
                continue
            if cell is None:
                value: Any = None
            elif slot.parse is not None:
                try:
                    value = slot.parse(cell)  # type: ignore[arg-type]
                except FivetranCellError as e:
                    # The type map's text names the column and type; the cell value is left out on purpose.
                    raise RowError(
                        f"A row from your data source is invalid: batch file {self.file_name}, data row"
                        f" {row_number}: {e}"
                    ) from None
            elif slot.data_type is None:
                raise RowError(
                    f"A row from your data source is invalid: the batch file {self.file_name} (data row"
                    f" {row_number}) has a value in column `{slot.column}`, which is not in the table's"
                    " definition (Column not in schema). Fivetran sends AlterTable before such batches;"
                    " let Fivetran resend the batch, or contact support if this persists."
                )
            else:
                value = cell
            path = slot.path
            if len(path) == 1:
                doc[path[0]] = value
            elif len(path) == 2:
                meta[path[1]] = value
            else:
                if columns is None:
                    columns = {}
                columns[path[2]] = value
        if columns is not None:
            meta["columns"] = columns
        doc[FIVETRAN_OBJECT] = meta
        return doc
