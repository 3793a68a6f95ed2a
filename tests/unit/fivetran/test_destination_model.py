"""Naming, indexes, row conversion and schema checks of the Fivetran destination (no I/O)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.typemap.fivetran import FivetranDataType as T
from connectors.typemap.markdown import fivetran_destination_markdown
from fivetran_destination.batch_files import UNMODIFIED
from fivetran_destination.model import ColumnDef, DefinitionError, TableDef, convex_table_name, placement
from fivetran_destination.rows import RowConverter, RowError
from fivetran_destination.schema_check import schema_problem

README = Path(__file__).resolve().parents[3] / "README.md"


def books() -> TableDef:
    return TableDef(
        "public_books",
        (
            ColumnDef("id", T.INT, True),
            ColumnDef("title", T.STRING),
            ColumnDef("magic_number", T.INT),
            ColumnDef("_fivetran_deleted", T.BOOLEAN),
            ColumnDef("_fivetran_synced", T.UTC_DATETIME),
        ),
    )


def test_readme_type_table_is_generated_from_the_type_map() -> None:
    assert fivetran_destination_markdown() in README.read_text(encoding="utf-8")


def test_naming() -> None:
    assert convex_table_name("public", "books") == "public_books"
    with pytest.raises(DefinitionError, match="isn\u2019t supported by Convex"):
        convex_table_name("", "books")
    assert placement("_fivetran_synced").dotted == "fivetran.synced"
    assert placement("_fivetran_deleted").dotted == "fivetran.deleted"
    assert placement("_fivetran_id").dotted == "fivetran.id"
    assert placement("_file").dotted == "fivetran.columns.file"
    assert placement("__x").dotted == "fivetran.columns._x"
    assert placement("name").dotted == "name"


def test_indexes_without_creation_time() -> None:
    table = TableDef(
        "t",
        (
            ColumnDef("slug", T.STRING, True),
            ColumnDef("_key", T.STRING, True),
            ColumnDef("_fivetran_id", T.STRING, True),
            ColumnDef("_fivetran_deleted", T.BOOLEAN),
            ColumnDef("_fivetran_synced", T.UTC_DATETIME),
        ),
    )
    body = table.create_table_body()
    assert body["indexes"] == [
        {
            "indexDescriptor": "_fivetran_by_primary_key",
            "fields": ["fivetran.id", "fivetran.columns.key", "slug"],
        },
        {"indexDescriptor": "_fivetran_by_synced", "fields": ["fivetran.deleted", "fivetran.synced"]},
    ]
    assert "_creationTime" not in str(body)


def test_row_conversion_vectors() -> None:
    table = TableDef(
        "t",
        (
            ColumnDef("name", T.STRING, True),
            ColumnDef("null_attribute", T.STRING),
            ColumnDef("unmodified_attribute", T.STRING),
            ColumnDef("_name", T.STRING),
            ColumnDef("_fivetran_id", T.INT),
            ColumnDef("_fivetran_synced", T.UTC_DATETIME),
        ),
    )
    header = [c.name for c in table.columns]
    conv = RowConverter(table, header, "f.csv")
    doc = conv.convert(["Nicolas", None, UNMODIFIED, "N", "42", "2024-05-14T15:30:52.563Z"], 1)
    assert doc == {
        "name": "Nicolas",
        "null_attribute": None,
        "fivetran": {"columns": {"name": "N"}, "id": 42.0, "synced": 1715700652563.0},
    }
    assert conv.convert([UNMODIFIED] * 6, 2) == {"fivetran": {}}
    with pytest.raises(RowError) as err:
        conv.convert(["a", None, None, None, "not-an-int-secret", "2024-05-14T15:30:52Z"], 7)
    assert "_fivetran_id" in str(err.value) and "data row 7" in str(err.value)
    assert "secret" not in str(err.value)
    unknown = RowConverter(table, ["name", "other"], "f.csv")
    assert unknown.convert(["a", None], 1) == {"name": "a", "other": None, "fivetran": {}}
    with pytest.raises(RowError, match="Column not in schema"):
        unknown.convert(["a", "v"], 1)


def test_schema_problem_texts() -> None:
    table = books()
    assert schema_problem(None, table) is None
    missing = schema_problem({"tables": [], "schemaValidation": True}, table)
    assert missing is not None and "is missing in the schema" in missing
    assert (
        "`public_books: defineTable({ fivetran: v.object({deleted: v.boolean(), synced: v.float64()})"
        in missing
    )
    assert '.index("_fivetran_by_primary_key", ["id"])' in missing
    good = {
        "tableName": "public_books",
        "indexes": [
            {
                "indexDescriptor": "_fivetran_by_primary_key",
                "fields": ["fivetran.deleted", "id", "_creationTime"],
            },
            {
                "indexDescriptor": "by_synced",
                "fields": ["fivetran.deleted", "fivetran.synced", "_creationTime"],
            },
        ],
        "documentType": {
            "type": "object",
            "value": {
                "id": {"fieldType": {"type": "number"}, "optional": False},
                "title": {
                    "fieldType": {"type": "union", "value": [{"type": "null"}, {"type": "string"}]},
                    "optional": False,
                },
                "magic_number": {"fieldType": {"type": "number"}, "optional": True},
                "fivetran": {"fieldType": {"type": "object", "value": {}}, "optional": False},
            },
        },
    }
    assert schema_problem({"tables": [good]}, table) is None
    wrong = {
        **good,
        "documentType": {
            "type": "object",
            "value": {
                **good["documentType"]["value"],
                "id": {"fieldType": {"type": "bigint"}, "optional": False},
            },
        },
    }  # type: ignore[index]
    text = schema_problem({"tables": [wrong]}, table)
    assert (
        text is not None and "is incorrect in the schema" in text and "HINT" in text and "defineTable" in text
    )
    no_index = {**good, "indexes": good["indexes"][:1]}  # type: ignore[index]
    text = schema_problem({"tables": [no_index]}, table)
    assert text is not None and 'index("sync_index", ["fivetran.deleted", "fivetran.synced"])' in text


def test_console_script_serves_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from fivetran_destination.cli import main; main()", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert '"message-origin":"sdk_destination"' in line.replace(" ", "") and "listening" in line
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
