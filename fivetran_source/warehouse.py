"""A local warehouse with Fivetran's loading semantics (fivetran-sdk.md §6.3, §7.1), for ``fivetran-sync``.

* One schema per Fivetran schema. DuckDB: a real schema (``"app"."users"``). SQLite has no schemas inside
  one file, so a table is named ``"<schema>.<table>"`` (``"app.users"``, ``"waitlist.entries"``; Convex table
  names never contain ``.``, so the name is unambiguous): query it as ``SELECT * FROM "app.users"``.
* Every table has ``_id`` (primary key), the source's columns, ``_fivetran_synced`` (UTC timestamp of the
  write) and ``_fivetran_deleted`` (boolean).
* UPSERT replaces the row by primary key (a column the record does not carry becomes NULL); DELETE sets
  ``_fivetran_deleted`` (soft delete, ignored for an unknown key); TRUNCATE soft-deletes every row synced
  before it.
* Column types: the Schema response's type when it has one, else the type of the first non-null value
  (Fivetran infers UNSPECIFIED columns from the data). A value of another type later turns the column into
  STRING (its values become text), as a warehouse widens a column.

Writes are grouped: upserts of one table are buffered (last write of a key wins) and written in one
statement before any other operation and at every checkpoint, where the transaction commits.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from connectors.constants import FIVETRAN_DELETED_COLUMN, FIVETRAN_SYNCED_COLUMN, ID_FIELD
from connectors.typemap.fivetran import FivetranDataType

DUCKDB_SUFFIXES: Final = (".duckdb", ".ddb")
SQLITE_SUFFIXES: Final = (".sqlite", ".sqlite3", ".db")
_DUCKDB_ROWS_PER_INSERT: Final = 256

# The ValueType member a value arrives as -> the column type it implies.
MEMBER_TYPES: Final[dict[str, FivetranDataType]] = {
    "bool": FivetranDataType.BOOLEAN,
    "long": FivetranDataType.LONG,
    "double": FivetranDataType.DOUBLE,
    "string": FivetranDataType.STRING,
    "binary": FivetranDataType.BINARY,
    "json": FivetranDataType.JSON,
    "utc_datetime": FivetranDataType.UTC_DATETIME,
}
_DUCKDB_TYPES: Final[dict[FivetranDataType, str]] = {
    FivetranDataType.BOOLEAN: "BOOLEAN",
    FivetranDataType.LONG: "BIGINT",
    FivetranDataType.DOUBLE: "DOUBLE",
    FivetranDataType.STRING: "VARCHAR",
    FivetranDataType.BINARY: "BLOB",
    FivetranDataType.JSON: "JSON",
    FivetranDataType.UTC_DATETIME: "TIMESTAMPTZ",
}
_SQLITE_TYPES: Final[dict[FivetranDataType, str]] = {
    FivetranDataType.BOOLEAN: "BOOLEAN",
    FivetranDataType.LONG: "INTEGER",
    FivetranDataType.DOUBLE: "REAL",
    FivetranDataType.STRING: "TEXT",
    FivetranDataType.BINARY: "BLOB",
    FivetranDataType.JSON: "JSON",
    FivetranDataType.UTC_DATETIME: "TIMESTAMP",
}


class WarehouseError(ValueError):
    """The local warehouse cannot take what Fivetran would load (a bad path, an unusable column type)."""


@dataclass(frozen=True)
class Cell:
    """One value of a record: its ``ValueType`` member and the Python value (``datetime`` for timestamps)."""

    member: str
    value: Any


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _as_text(cell: Cell) -> str | None:
    v = cell.value
    if cell.member == "null":
        return None
    if cell.member == "bool":
        return "true" if v else "false"
    if cell.member == "binary":
        return base64.b64encode(v).decode()
    if cell.member == "utc_datetime":
        return v.isoformat()
    return str(v)


class _Table:
    def __init__(self, schema: str, name: str, columns: dict[str, FivetranDataType]) -> None:
        self.schema = schema
        self.name = name
        self.columns = columns  # created columns only, in creation order
        self.pending: dict[str, dict[str, Cell]] = {}


def warehouse_kind(path: Path) -> str:
    """``duckdb`` or ``sqlite`` from the file name; WarehouseError for anything else."""
    suffix = path.suffix.lower()
    if suffix in DUCKDB_SUFFIXES:
        return "duckdb"
    if suffix in SQLITE_SUFFIXES:
        return "sqlite"
    raise WarehouseError(
        f"Unknown warehouse file type {path.name!r}: use a name ending in .duckdb (DuckDB) or "
        ".sqlite / .db (SQLite)."
    )


class Warehouse:
    """DuckDB or SQLite, chosen by the file's suffix."""

    def __init__(
        self, path: Path, declared: Mapping[tuple[str, str], Mapping[str, FivetranDataType]]
    ) -> None:
        self.path = path
        self.declared = declared
        self.kind = warehouse_kind(path)
        if self.kind == "duckdb":
            import duckdb

            try:
                self._duck = duckdb.connect(str(path))
            except duckdb.Error as exc:
                raise WarehouseError(f"Cannot open the DuckDB warehouse {path}: {exc}") from None
            self._duck.execute("BEGIN")
            self._types = _DUCKDB_TYPES
        else:
            try:
                self._sqlite = sqlite3.connect(str(path), isolation_level=None)
                # Fails here, not mid-sync, on a file that is not an SQLite database.
                self._sqlite.execute("PRAGMA schema_version")
                self._sqlite.execute("BEGIN")
            except sqlite3.Error as exc:
                raise WarehouseError(
                    f"Cannot open the SQLite warehouse {path}: {exc} (is it an SQLite file, in a writable "
                    "directory?)"
                ) from None
            self._types = _SQLITE_TYPES
        self._tables: dict[tuple[str, str], _Table] = {}
        self._last_synced = datetime.fromtimestamp(0, UTC)

    # --- SQL plumbing -----------------------------------------------------------------------------------

    def _exec(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "duckdb":
            return self._duck.execute(sql, list(params)).fetchall()
        return self._sqlite.execute(sql, tuple(params)).fetchall()

    def table_sql_name(self, schema: str, table: str) -> str:
        return f"{_q(schema)}.{_q(table)}" if self.kind == "duckdb" else _q(f"{schema}.{table}")

    def _now(self) -> datetime:
        """Strictly increasing write times, so a TRUNCATE never covers a row written after it."""
        now = datetime.now(UTC)
        if now <= self._last_synced:
            now = self._last_synced + timedelta(microseconds=1)
        self._last_synced = now
        return now

    def _synced_param(self, when: datetime) -> Any:
        return when if self.kind == "duckdb" else when.isoformat()

    def _existing_columns(self, schema: str, table: str) -> dict[str, FivetranDataType] | None:
        if self.kind == "duckdb":
            rows = self._exec(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                (schema, table),
            )
        else:
            rows = [(r[1], r[2]) for r in self._exec(f"PRAGMA table_info({_q(f'{schema}.{table}')})")]
        if not rows:
            return None
        back = {sql.upper(): dt for dt, sql in self._types.items()}
        back.update(
            {"TIMESTAMP WITH TIME ZONE": FivetranDataType.UTC_DATETIME, "VARCHAR": FivetranDataType.STRING}
        )
        return {name: back.get(str(sql).upper(), FivetranDataType.STRING) for name, sql in rows}

    def _table(self, schema: str, name: str) -> _Table:
        key = (schema, name)
        found = self._tables.get(key)
        if found is not None:
            return found
        existing = self._existing_columns(schema, name)
        if existing is None:
            if self.kind == "duckdb":
                self._exec(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
            # The columns the Schema response types come first, in its order; the system columns next;
            # columns Fivetran must infer are added when their first non-null value arrives.
            existing = {ID_FIELD: FivetranDataType.STRING}
            for column, dt in self.declared.get(key, {}).items():
                if column != ID_FIELD and dt in self._types:
                    existing[column] = dt
            existing[FIVETRAN_SYNCED_COLUMN] = FivetranDataType.UTC_DATETIME
            existing[FIVETRAN_DELETED_COLUMN] = FivetranDataType.BOOLEAN
            columns = [f"{_q(c)} {self._types[dt]}" for c, dt in existing.items()]
            columns[0] += " PRIMARY KEY"
            self._exec(f"CREATE TABLE {self.table_sql_name(schema, name)} ({', '.join(columns)})")
        found = self._tables[key] = _Table(schema, name, existing)
        return found

    def _ensure_column(self, table: _Table, column: str, member: str) -> None:
        have = table.columns.get(column)
        arriving = MEMBER_TYPES[member]
        if have is None:
            declared = self.declared.get((table.schema, table.name), {}).get(
                column, FivetranDataType.UNSPECIFIED
            )
            # The Schema response's type when given (a different value type widens it to STRING).
            new = (
                arriving if declared in (FivetranDataType.UNSPECIFIED, arriving) else FivetranDataType.STRING
            )
            self._exec(
                f"ALTER TABLE {self.table_sql_name(table.schema, table.name)} ADD COLUMN {_q(column)} "
                f"{self._types[new]}"
            )
            table.columns[column] = new
        elif have is not arriving and have is not FivetranDataType.STRING:
            # Widen to STRING: flush what was buffered with the old type first.
            self._flush(table)
            if self.kind == "duckdb":
                self._exec(
                    f"ALTER TABLE {self.table_sql_name(table.schema, table.name)} ALTER {_q(column)} "
                    f"TYPE VARCHAR"
                )
            table.columns[column] = FivetranDataType.STRING

    def _sql_value(self, table: _Table, column: str, cell: Cell | None) -> Any:
        if cell is None or cell.member == "null":
            return None
        dt = table.columns[column]
        if dt is FivetranDataType.STRING and cell.member != "string":
            return _as_text(cell)
        if self.kind == "sqlite" and cell.member == "utc_datetime":
            return cell.value.isoformat()
        return cell.value

    # --- operations -------------------------------------------------------------------------------------

    def upsert(self, schema: str, name: str, row: dict[str, Cell]) -> None:
        table = self._table(schema, name)
        for column, cell in row.items():
            if cell.member != "null" and table.columns.get(column) is not MEMBER_TYPES[cell.member]:
                self._ensure_column(table, column, cell.member)
        table.pending[row[ID_FIELD].value] = row

    def _flush(self, table: _Table) -> None:
        if not table.pending:
            return
        rows = list(table.pending.values())
        table.pending = {}
        columns = [c for c in table.columns if c not in (FIVETRAN_SYNCED_COLUMN, FIVETRAN_DELETED_COLUMN)]
        synced = self._synced_param(self._now())
        names = ", ".join(_q(c) for c in [*columns, FIVETRAN_SYNCED_COLUMN, FIVETRAN_DELETED_COLUMN])
        marks = "(" + ", ".join("?" for _ in range(len(columns) + 2)) + ")"
        sql = f"INSERT OR REPLACE INTO {self.table_sql_name(table.schema, table.name)} ({names}) VALUES "
        params = [[*(self._sql_value(table, c, row.get(c)) for c in columns), synced, False] for row in rows]
        if self.kind == "duckdb":
            # DuckDB runs executemany as one statement per row (about 2 ms a row with the primary-key
            # check); multi-row VALUES statements cost about 1/100 of that.
            for start in range(0, len(params), _DUCKDB_ROWS_PER_INSERT):
                chunk = params[start : start + _DUCKDB_ROWS_PER_INSERT]
                self._duck.execute(sql + ", ".join([marks] * len(chunk)), [v for row in chunk for v in row])
        else:
            self._sqlite.executemany(sql + marks, params)

    def flush_all(self) -> None:
        for table in self._tables.values():
            self._flush(table)

    def delete(self, schema: str, name: str, doc_id: str) -> None:
        table = self._table(schema, name)
        self._flush(table)
        self._exec(
            f"UPDATE {self.table_sql_name(schema, name)} SET {_q(FIVETRAN_DELETED_COLUMN)} = true, "
            f"{_q(FIVETRAN_SYNCED_COLUMN)} = ? WHERE {_q(ID_FIELD)} = ?",
            (self._synced_param(self._now()), doc_id),
        )

    def truncate(self, schema: str, name: str) -> None:
        table = self._table(schema, name)
        self._flush(table)
        self._exec(
            f"UPDATE {self.table_sql_name(schema, name)} SET {_q(FIVETRAN_DELETED_COLUMN)} = true "
            f"WHERE {_q(FIVETRAN_SYNCED_COLUMN)} <= ?",
            (self._synced_param(self._now()),),
        )

    def commit(self) -> None:
        self.flush_all()
        self._exec("COMMIT")
        self._exec("BEGIN")

    def close(self) -> None:
        """Ends the open transaction without committing (everything up to the last checkpoint is kept)."""
        if self.kind == "duckdb":
            self._duck.execute("ROLLBACK")
            self._duck.close()
        else:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()

    # --- reading back (tests, summaries) ---------------------------------------------------------------

    def rows(self, schema: str, name: str) -> list[dict[str, Any]]:
        sql = f"SELECT * FROM {self.table_sql_name(schema, name)} ORDER BY {_q(ID_FIELD)}"
        cur: Any = self._duck.execute(sql) if self.kind == "duckdb" else self._sqlite.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
