"""Checking a table against the deployment's active schema (fivetran-destination.md §8 step 4-5, §11).

When the deployment has a schema (``get_schema`` is not ``null``), Convex validates every write against it, so
CreateTable/AlterTable must not go ahead when the table is missing from it or does not match. The Task then
carries the ``convex/schema.ts`` text to paste (``TableDef.schema_ts``).

Checked: the table exists; every top-level user column has the suggested validator (``V``, ``V | null``);
the ``fivetran`` object exists; an index named ``_fivetran_by_primary_key`` has the primary-key fields (in any
order, ``fivetran.deleted`` first allowed) and some index has the sync fields — a trailing ``_creationTime``
(appended by the Convex CLI) is ignored (§13 item 2). Not checked: the validators inside ``fivetran``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.constants import FIVETRAN_OBJECT, FIVETRAN_PRIMARY_KEY_INDEX
from connectors.typemap.fivetran import schema_ts_for_fivetran_type, validator_for_fivetran_type
from fivetran_destination.model import TableDef, placement


def _strip_creation_time(fields: list[str]) -> list[str]:
    return fields[:-1] if fields and fields[-1] == "_creationTime" else fields


def _accepts(actual: Any, expected: Mapping[str, Any]) -> bool:
    if actual == expected:
        return True
    if isinstance(actual, Mapping) and actual.get("type") == "union":
        members = actual.get("value") or []
        return len(members) == 2 and expected in members and {"type": "null"} in members
    return False


def schema_problem(schema: Mapping[str, Any] | None, table: TableDef) -> str | None:
    """None when the table can be written (no schema, or a matching one); else the Task text."""
    if not schema:
        return None
    name = table.convex_name
    suggestion = table.schema_ts()
    found = None
    for entry in schema.get("tables") or []:
        if isinstance(entry, Mapping) and entry.get("tableName") == name:
            found = entry
    if found is None:
        return (
            f"The table `{name}` from your data source is missing in the schema of your Convex destination. Please"
            f" edit your `convex/schema.ts` file to add the table. You can use the following table definition:"
            f" {suggestion}"
        )
    error = _table_error(found, table)
    if error is None:
        return None
    return (
        f"The table `{name}` from your data source is incorrect in the schema of your Convex destination. {error}"
        f" HINT: you can use the following table definition in your `convex/schema.ts` file: {suggestion}"
    )


def _table_error(entry: Mapping[str, Any], table: TableDef) -> str | None:
    doc_type = entry.get("documentType")
    if (
        isinstance(doc_type, Mapping)
        and doc_type.get("type") == "union"
        and len(doc_type.get("value") or []) == 1
    ):
        doc_type = doc_type["value"][0]
    if not isinstance(doc_type, Mapping) or doc_type.get("type") != "object":
        return (
            "The table in the Convex destination stores arbitrary documents or several types of documents, which"
            " is not supported by Fivetran. Please edit the schema of the table in `schema.ts` so that the table"
            " is defined as one `v.object()`."
        )
    fields: Mapping[str, Any] = doc_type.get("value") or {}
    columns = {placement(c.name).path[0] for c in table.columns}
    for field in fields:
        if field not in columns:
            return (
                f"The table in Convex has a `{field}` field that is missing in your data source. Please modify your"
                " Convex schema in `schema.ts` to remove the field."
            )
    for c in table.columns:
        path = placement(c.name).path
        if len(path) != 1:
            continue
        spec = fields.get(path[0])
        if not isinstance(spec, Mapping):
            return (
                f"The field `{path[0]}` is missing from your Convex schema. Please add"
                f" `{path[0]}: {schema_ts_for_fivetran_type(c.type, True)}` to the definition of the table in"
                " `schema.ts`."
            )
        expected = validator_for_fivetran_type(c.type, nullable=False)
        if not _accepts(spec.get("fieldType"), expected):
            return (
                f"The field `{path[0]}` has a type in Convex that doesn\u2019t match the type in the source table"
                f" ({c.type.name}, which would be {schema_ts_for_fivetran_type(c.type, False)} in Convex). Please"
                " modify the definition of the field in `schema.ts`."
            )
    if FIVETRAN_OBJECT not in fields:
        return (
            "The `fivetran` column is missing from the table in Convex. Please edit the schema of the table in"
            " `schema.ts` and add the `fivetran` attribute shown below."
        )
    indexes = {
        i.get("indexDescriptor"): _strip_creation_time(list(i.get("fields") or []))
        for i in entry.get("indexes") or []
        if isinstance(i, Mapping)
    }
    if table.synced_fields not in indexes.values():
        return (
            f"The table in Convex needs an index on ({', '.join(f'`{f}`' for f in table.synced_fields)}). Please"
            f' add the following index to the table in your `schema.ts` file: `.index("sync_index",'
            f" [{', '.join(chr(34) + f + chr(34) for f in table.synced_fields)}])`"
        )
    pk = indexes.get(FIVETRAN_PRIMARY_KEY_INDEX)
    if pk is None:
        return (
            f"The table in Convex is missing a `{FIVETRAN_PRIMARY_KEY_INDEX}` index. Please modify the table"
            " definition in `schema.ts` to add an index for the primary key of the table (see below)."
        )
    rest = pk[1:] if pk[:1] == ["fivetran.deleted"] and table.soft_deletes else pk
    if sorted(rest) != sorted(table.primary_key_fields):
        return (
            f"The `{FIVETRAN_PRIMARY_KEY_INDEX}` index on the Convex table doesn\u2019t match the fields of the"
            " primary key. Please modify the index in `schema.ts` to match the primary key of the table (see below)."
        )
    return None
