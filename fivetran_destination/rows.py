"""Batch-file rows -> Convex documents (fivetran-destination.md §10.4-§10.5).

A :class:`RowConverter` is built once per file header: for each header position it knows the column's type
and where the value goes (top level, ``fivetran.<key>``, ``fivetran.columns.<name>``), so converting a row is
one pass over its cells. Unmodified cells are left out, null cells become ``null``, other cells go through
the type map's ``fivetran_cell_parser`` (``parse_fivetran_cell`` resolved per column).

Errors never carry cell values (customer data): they name the file, the data row and the column.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from connectors import values
from connectors.constants import FIVETRAN_OBJECT, FIVETRAN_SYNCED_COLUMN
from connectors.typemap.fivetran import FivetranCellError, FivetranDataType, fivetran_cell_parser
from fivetran_destination.batch_files import UNMODIFIED, Cell
from fivetran_destination.model import TableDef, placement

_PACK_I64: Final = struct.Struct("<q").pack


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


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
    parse_cell = fivetran_cell_parser(data_type, column)
    if data_type == FivetranDataType.BOOLEAN or data_type == FivetranDataType.UTC_DATETIME:
        return parse_cell  # a bool, or a finite Float64 (milliseconds): JSON as they are
    if data_type == FivetranDataType.LONG:

        def parse_long(text: str) -> Any:
            return {"$integer": _b64(_PACK_I64(parse_cell(text)))}  # in range: the parser checked

        return parse_long

    def parse(text: str) -> Any:
        return encode_value(parse_cell(text))

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
        # Per cell, what convert() needs, unpacked once: (parser, where the value goes, its key there, and
        # for a column not in the table its name: only a null or unmodified cell is accepted there).
        self._plan = tuple(
            (slot.parse, len(slot.path), slot.path[-1], slot.column if slot.data_type is None else None)
            for slot in self.slots
        )

    def convert(self, cells: Sequence[Cell], row_number: int) -> dict[str, Any]:
        """One row (cells in header order) -> a document in Convex internal JSON, with the ``fivetran``
        object always present."""
        doc: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        columns: dict[str, Any] | None = None
        for (parse, where, key, unknown), cell in zip(self._plan, cells, strict=True):
            if cell is UNMODIFIED:
                continue
            if cell is None:
                value: Any = None
            elif parse is not None:
                try:
                    value = parse(cell)  # type: ignore[arg-type]
                except FivetranCellError as e:
                    # The type map's text names the column and type; the cell value is left out on purpose.
                    raise RowError(
                        f"A row from your data source is invalid: batch file {self.file_name}, data row"
                        f" {row_number}: {e}"
                    ) from None
            elif unknown is not None:
                raise self._not_in_table(unknown, row_number)
            else:
                value = cell
            if where == 1:  # placement paths: `name`, `fivetran.<key>`, `fivetran.columns.<name>`
                doc[key] = value
            elif where == 2:
                meta[key] = value
            else:
                if columns is None:
                    columns = {}
                columns[key] = value
        if columns is not None:
            meta["columns"] = columns
        doc[FIVETRAN_OBJECT] = meta
        return doc

    def _not_in_table(self, column: str, row_number: int) -> RowError:
        return RowError(
            f"A row from your data source is invalid: the batch file {self.file_name} (data row"
            f" {row_number}) has a value in column `{column}`, which is not in the table's"
            " definition (Column not in schema). Fivetran sends AlterTable before such batches;"
            " let Fivetran resend the batch, or contact support if this persists."
        )
