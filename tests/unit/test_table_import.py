"""Single-table import of CSV, JSON and JSONL files (connectors/table_import.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors import ids
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.table_import import TableImportError, import_table_file, iter_table_records
from tests.conftest import DeploymentFactory


def _values(dep: Deployment, table: str, order_by: str) -> list[dict[str, Any]]:
    docs = [d.value() for d in dep.iter_snapshot(dep.table(table))]
    return sorted(docs, key=lambda d: d[order_by])


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_csv_fields_are_numbers_or_strings_and_system_fields_are_kept(
    deployment: Deployment, tmp_path: Path
) -> None:
    known_id = ids.encode_id(10007, ids.new_internal_id())
    csv_file = _write(
        tmp_path / "people.csv",
        "_id,_creationTime,name,age,score,code,empty,note\n"
        f'{known_id},1700000000000.5,Ada,36,1e3,007,,"says ""hi"", twice"\n'
        ",,Bob,-2.5,inf,12a,x,NaN\n",
    )
    summary = import_table_file(deployment, "people", csv_file)
    assert summary.documents == 2 and summary.table_number == 10007  # from the first record's _id
    ada, bob = _values(deployment, "people", "name")
    assert ada["_id"] == known_id and ada["_creationTime"] == 1700000000000.5
    assert ada["age"] == 36.0 and type(ada["age"]) is float
    assert ada["score"] == 1000.0 and ada["code"] == 7.0
    assert ada["empty"] == "" and ada["note"] == 'says "hi", twice'
    assert ids.table_number_of(bob["_id"]) == 10007 and "_creationTime" in bob
    assert bob["age"] == -2.5 and bob["score"] == math.inf and bob["code"] == "12a"
    assert math.isnan(bob["note"])


def test_json_array_and_jsonl_use_convex_json(deployment: Deployment, tmp_path: Path) -> None:
    array = _write(
        tmp_path / "a.json",
        ' [{"n": 1, "big": {"$integer": "AQAAAAAAAAA="}, "b": {"$bytes": "AAE="}, "nested": {"x": [1, "y"]}},\n'
        '  {"n": 2.5}] ',
    )
    assert import_table_file(deployment, "a", array).documents == 2
    first, second = _values(deployment, "a", "n")
    assert first["n"] == 1.0 and type(first["n"]) is float
    assert first["big"] == 1 and type(first["big"]) is int
    assert first["b"] == b"\x00\x01" and first["nested"] == {"x": [1.0, "y"]}
    assert second == {**second, "n": 2.5}

    lines = _write(tmp_path / "b.jsonl", '{"k": "v1"}\n\n{"k": "v2", "flag": true}\n')
    assert import_table_file(deployment, "b", lines).documents == 2
    assert [d["k"] for d in _values(deployment, "b", "k")] == ["v1", "v2"]


def test_errors_name_file_record_and_field(deployment: Deployment, tmp_path: Path) -> None:
    cases = [
        ("bad.jsonl", '{"ok": 1}\n{"a": {"$weird": 1}}\n', ["bad.jsonl line 2", ".a"]),
        ("bad2.jsonl", '{"ok": 1}\n{"ok": \n', ["bad2.jsonl line 2", "not valid JSON"]),
        ("bad.json", '[{"ok": 1}, 5]', ["bad.json element 2", "expected a JSON object"]),
        ("bad2.json", '{"not": "an array"}', ["bad2.json", "one JSON array"]),
        ("bad.csv", "a,b\n1,2\n3\n", ["bad.csv line 3", "1 fields but the header has 2"]),
        ("bad2.csv", "a,$b\n1,2\n", ["bad2.csv line 1", "header column 2"]),
        ("bad3.csv", "a,_secret\n1,2\n", ["bad3.csv line 2", "_secret"]),
        ("bad4.csv", "_id,a\nnot-an-id,1\n", ["bad4.csv line 2", "_id is not a valid document id"]),
        (
            "bad5.csv",
            "_creationTime,a\nyesterday,1\n",
            ["bad5.csv line 2", "_creationTime must be a finite number"],
        ),
    ]
    for i, (name, text, expected) in enumerate(cases):
        with pytest.raises(TableImportError) as info:
            import_table_file(deployment, f"t{i}", _write(tmp_path / name, text))
        for part in expected:
            assert part in info.value.message, (name, info.value.message)
    with pytest.raises(TableImportError) as unknown:
        import_table_file(deployment, "t", _write(tmp_path / "data.txt", "x"))
    assert "--format" in unknown.value.message


def test_an_id_of_another_table_is_refused(deployment: Deployment, tmp_path: Path) -> None:
    with deployment.transaction() as tx:
        tx.create_table("users")
    other = ids.encode_id(10099, ids.new_internal_id())
    with pytest.raises(TableImportError) as info:
        import_table_file(deployment, "users", _write(tmp_path / "u.jsonl", orjson.dumps({"_id": other})))
    assert "u.jsonl line 1" in info.value.message and "table number 10099" in info.value.message


def test_modes_create_append_replace(deployment: Deployment, tmp_path: Path) -> None:
    one = _write(tmp_path / "one.jsonl", '{"v": 1}\n')
    two = _write(tmp_path / "two.jsonl", '{"v": 2}\n{"v": 3}\n')
    import_table_file(deployment, "t", one)
    with pytest.raises(TableImportError) as info:
        import_table_file(deployment, "t", two)
    assert info.value.code == "TableExists" and "--append" in info.value.message
    import_table_file(deployment, "t", two, mode="append")
    assert sorted(d["v"] for d in _values(deployment, "t", "v")) == [1.0, 2.0, 3.0]
    with deployment.transaction() as tx:
        tx.add_index("t", "by_v", ["v"])
    import_table_file(deployment, "t", two, mode="replace")
    assert sorted(d["v"] for d in _values(deployment, "t", "v")) == [2.0, 3.0]
    assert deployment.index("t", "by_v") is not None  # replace keeps the table's indexes


def test_batches_follow_the_transaction_limits(deployment_factory: DeploymentFactory, tmp_path: Path) -> None:
    dep = deployment_factory.open(
        DeploymentConfig(background=False, max_writes_per_transaction=8, max_write_bytes_per_transaction=6000)
    )
    seen: list[int] = []
    rows = "".join(orjson.dumps({"i": i, "pad": "p" * 300}).decode() + "\n" for i in range(25))
    summary = import_table_file(
        dep, "t", _write(tmp_path / "many.jsonl", rows), progress=lambda t, n: seen.append(n)
    )
    assert summary.documents == 25 and dep.document_count("t") == 25
    assert (
        seen == sorted(seen) and seen[-1] == 25 and len(seen) >= 7
    )  # at most 4 rows (half the limit) a batch


def test_a_large_json_array_is_read_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    record = orjson.dumps({"name": "x" * 200, "n": 1.5, "tags": ["a", "b"]})
    count = 40_000
    with open(path, "wb") as f:
        f.write(b"[")
        for i in range(count):
            f.write(record if i == 0 else b"," + record)
        f.write(b"]")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with open(path, "rb") as f:
            seen = sum(1 for _ in iter_table_records(f, "json", path.name))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 2 * 1024 * 1024 < size, (peak, size)


def test_a_csv_byte_order_mark_is_not_part_of_the_header(deployment: Deployment, tmp_path: Path) -> None:
    csv_file = _write(tmp_path / "bom.csv", "\ufeffname,n\nAda,1\n")
    import_table_file(deployment, "bom", csv_file)
    assert _values(deployment, "bom", "name")[0]["name"] == "Ada"
