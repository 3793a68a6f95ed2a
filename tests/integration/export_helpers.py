"""Seeding and reading back snapshot exports for the export tests (every reader the issue names)."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import duckdb
import fastavro
import orjson
import pyarrow.parquet as pq

from connectors import values
from connectors.backend.engine import Deployment
from connectors.typemap.arrow import arrow_row_to_document
from connectors.typemap.avro import avro_record_to_document
from connectors.typemap.jsontext import json_text, needs_json_text
from connectors.typemap.tree import ArrayType, ConvexType, ObjectType, split_nullable

NAN_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]


def seed(dep: Deployment, n: int = 40) -> None:
    """Every value type, NaN (with a payload), -0, ±inf, Int64 extremes, bytes, nested objects and arrays,
    unions, missing fields, an empty table and tables in nested components."""
    with dep.transaction() as tx:
        tx.create_table("all_types")
        tx.create_table("empty")
        tx.create_table("items", component="parent")
        tx.create_table("items", component="parent/child")
        specials = [values.INT64_MAX, values.INT64_MIN, 0, -1]
        floats = [float("nan"), NAN_PAYLOAD, float("inf"), float("-inf"), -0.0, 1e300, 0.1]
        for i in range(n):
            doc: dict[str, Any] = {
                "i": specials[i % len(specials)],
                "f": floats[i % len(floats)],
                "b": bytes(range(i % 7 * 40)),
                "s": f"héllo {i} ✓",
                "flag": i % 2 == 0,
                "nul": None if i % 3 == 0 else f"v{i}",
                "obj": {"a": i, "b": [float(i), -0.0]},
                "arr": list(range(i % 4)),
                "mixed": i if i % 2 else f"s{i}",  # a union: JSON text
                "deep": [{"x": 1}, {"x": "one"}],  # a list of objects whose field is a union
                "emptyobj": {},
                "arr_mixed": [1, "a", None],
                "shapes": {"p": 1} if i % 2 else {"q": "x"},  # objects with different fields
            }
            if i % 5:
                doc["opt"] = i  # missing in every fifth document
            tx.insert("all_types", doc)
        tx.insert("items", {"name": "in parent", "n": 1}, component="parent")
        tx.insert("items", {"name": "in child", "n": 2}, component="parent/child")


def documents_at(dep: Deployment, ts: int) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """Every user table's documents at ``ts``: {(component, table): {_id: document}}."""
    out: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for table in dep.tables_at(ts):
        if table.name.startswith("_") or table.state == "hidden":
            continue
        out[(table.component, table.name)] = {d.id: d.value() for d in dep.iter_snapshot(table, ts)}
    return out


def expected_value(v: Any, t: ConvexType) -> Any:
    """What a typed target holds for ``v`` of type ``t``: JSON-text parts become text."""
    if v is None:
        return None
    if needs_json_text(t):
        return json_text(v)
    inner, _ = split_nullable(t)
    if isinstance(inner, ArrayType):
        return [expected_value(x, inner.items) for x in v]
    if isinstance(inner, ObjectType):
        return expected_object(v, inner)
    return v


def expected_object(doc: dict[str, Any], t: ObjectType) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in t.fields:
        if f.name in doc:
            out[f.name] = expected_value(doc[f.name], f.type)
        elif split_nullable(f.type)[1]:
            out[f.name] = None  # a nullable column cannot tell a missing field from null
    return out


def canonical(v: Any, *, nan_payload: bool = True) -> bytes:
    """Bit-exact comparison key (NaN payloads, -0.0, Int64 vs Float64); optionally one NaN for all."""
    if not nan_payload:
        v = _one_nan(v)
    return values.wire_bytes(v, values.ValueFormat.EXPORT)


def _one_nan(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return float("nan")
    if isinstance(v, list):
        return [_one_nan(x) for x in v]
    if isinstance(v, dict):
        return {k: _one_nan(x) for k, x in v.items()}
    return v


def by_id(docs: list[dict[str, Any]]) -> dict[str, bytes]:
    return {d["_id"]: canonical(d) for d in docs}


def read_parquet(table_dir: Path, tree: ObjectType) -> list[dict[str, Any]]:
    """The table directory as one dataset (pyarrow.dataset through read_table)."""
    return [arrow_row_to_document(r, tree) for r in pq.read_table(table_dir).to_pylist()]


def read_duckdb(table_dir: Path, tree: ObjectType) -> list[dict[str, Any]]:
    """DuckDB's own Parquet reader (``_creationTime`` comes from its exact companion column)."""
    con = duckdb.connect()
    try:
        cur = con.execute(f"SELECT * EXCLUDE (_creationTime) FROM read_parquet('{table_dir}/*.parquet')")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
    return [arrow_row_to_document(r, tree) for r in rows]


def read_avro(table_dir: Path, tree: ObjectType) -> list[dict[str, Any]]:
    out = []
    for part in sorted(table_dir.glob("part-*.avro")):
        with part.open("rb") as f:
            out.extend(avro_record_to_document(rec, tree) for rec in fastavro.reader(f))  # type: ignore[arg-type]
    return out


def read_jsonl(table_dir: Path) -> list[dict[str, Any]]:
    out = []
    for part in sorted(table_dir.glob("part-*.jsonl")):
        for line in part.read_bytes().splitlines():
            out.append(values.from_export_json(orjson.loads(line)))
    return out
