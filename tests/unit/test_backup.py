"""Convex backup ZIP import/export (connectors/backup.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import math
import struct
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors import ids, values
from connectors.backend.engine import Deployment, DeploymentConfig
from connectors.backup import (
    BackupImportError,
    BackupSummary,
    entry_prefix,
    export_backup,
    import_backup,
)
from tests.conftest import DeploymentFactory

NAN_WITH_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]


def f64_bits(f: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", f))[0]


EVERY_VALUE: dict[str, Any] = {
    "null": None,
    "yes": True,
    "no": False,
    "i_zero": 0,
    "i_min": values.INT64_MIN,
    "i_max": values.INT64_MAX,
    "i_2_53_plus_1": 2**53 + 1,
    "f_zero": 0.0,
    "f_negzero": -0.0,
    "f_one": 1.0,
    "f_half": 1.5,
    "f_tiny": 5e-324,
    "f_huge": 1.7976931348623157e308,
    "f_1e16": 1e16,
    "f_nan": math.nan,
    "f_nan_payload": NAN_WITH_PAYLOAD,
    "f_inf": math.inf,
    "f_ninf": -math.inf,
    "s_empty": "",
    "s_int_like": "5",
    "s_nan_like": "NaN",
    "s_unicode": "héllo 😀",
    "b_empty": b"",
    "b_bytes": bytes(range(256)),
    "arr": [1, 1.0, "1", b"1", None, [[], {}], {"x": [-0.0, math.inf]}],
    "obj": {"nested": {"deeper": {"i": -7, "b": b"\x00", "f": [math.nan]}}, "empty": {}},
}


def raw_docs(dep: Deployment, table: str, component: str = "") -> dict[str, bytes]:
    """``{_id: stored body}``: the body is the exact export JSON, so equal bodies mean identical values,
    Int64 vs Float64, NaN payloads and -0.0 included."""
    info = dep.table(table, component)
    return {d.id: bytes(d.body) for d in dep.iter_snapshot(info)}


def table_numbers(dep: Deployment) -> dict[tuple[str, str], int]:
    return {(t.component, t.name): t.table_number for t in dep.tables()}


def seed(dep: Deployment) -> None:
    with dep.transaction() as tx:
        tx.create_table("users", table_number=10042)
        tx.create_table("empty")
        tx.create_table("many")
        tx.create_table("items", "parent")
        tx.create_table("items", "parent/child", table_number=10007)
        tx.add_index("users", "by_name", ["name"])
        tx.insert("users", {"name": "every", **EVERY_VALUE})
        gone = tx.insert("users", {"name": "deleted later"})
        changed = tx.insert("users", {"name": "patched later", "v": 1})
        tx.insert("items", {"where": "parent", "n": 1}, "parent")
        tx.insert("items", {"where": "child", "n": 2, "b": b"\x01"}, "parent/child")
    with dep.transaction() as tx:
        for i in range(2500):  # several export pages and import batches
            tx.insert("many", {"i": i, "f": i / 7, "s": str(i)})
    with dep.transaction() as tx:
        tx.delete(gone)
        tx.patch(changed, {"v": 2.0})


def zip_bytes(entries: dict[str, str | bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    buf.seek(0)
    return buf


def test_round_trip_is_exact(deployment_factory: DeploymentFactory, tmp_path: Path) -> None:
    src = deployment_factory.open()
    seed(src)
    seen: list[tuple[str, int]] = []
    summary = export_backup(src, tmp_path / "backup.zip", progress=lambda t, n: seen.append((t, n)))
    assert summary.path == str(tmp_path / "backup.zip")
    assert not (tmp_path / "backup.zip.partial").exists()
    assert summary.documents == {
        "empty": 0,
        "many": 2500,
        "users": 2,
        "parent:items": 1,
        "parent/child:items": 1,
    }
    assert ("many", 2500) in seen and ("empty", 0) in seen

    dst = deployment_factory.open(location=deployment_factory.new_location())
    imported = import_backup(dst, tmp_path / "backup.zip")
    assert imported.documents == summary.documents
    assert imported.notes == ()
    assert table_numbers(dst) == table_numbers(src)
    assert table_numbers(dst)[("", "users")] == 10042
    assert table_numbers(dst)[("parent/child", "items")] == 10007
    for component, name in table_numbers(src):
        assert raw_docs(dst, name, component) == raw_docs(src, name, component), (component, name)

    every = next(d for d in dst.iter_snapshot(dst.table("users")) if d.value()["name"] == "every").value()
    assert type(every["i_max"]) is int and every["i_max"] == values.INT64_MAX
    assert type(every["f_one"]) is float
    assert math.copysign(1.0, every["f_negzero"]) < 0
    assert f64_bits(every["f_nan_payload"]) == 0x7FF8000000000001
    assert every["b_bytes"] == bytes(range(256))
    assert type(every["_creationTime"]) is float


def test_export_layout_matches_convex(deployment: Deployment, tmp_path: Path) -> None:
    seed(deployment)
    path = tmp_path / "b.zip"
    export_backup(deployment, path)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[0] == "README.md"
        expected_tables = {
            "users": "",
            "empty": "",
            "many": "",
            "items": "_components/parent/",
        }
        for table, prefix in expected_tables.items():
            assert zf.read(f"{prefix}{table}/generated_schema.jsonl") == b'"uniform"\n'
            assert f"{prefix}{table}/documents.jsonl" in names
        child = "_components/parent/_components/child/"
        assert f"{child}items/documents.jsonl" in names
        assert entry_prefix("parent/child") == child
        root_tables = [json.loads(line) for line in zf.read("_tables/documents.jsonl").splitlines()]
        numbers = [t["id"] for t in root_tables]
        assert numbers == sorted(numbers)
        assert {t["name"]: t["id"] for t in root_tables}["users"] == 10042
        assert [json.loads(line) for line in zf.read(f"{child}_tables/documents.jsonl").splitlines()] == [
            {"name": "items", "id": 10007}
        ]
        users = [orjson.loads(line) for line in zf.read("users/documents.jsonl").splitlines()]
        every = next(u for u in users if u["name"] == "every")
        # ConvexExportJSON: Int64 a plain integer, floats always with a point, specials in `$` objects.
        line = next(x for x in zf.read("users/documents.jsonl").splitlines() if b'"every"' in x)
        assert b'"i_max":9223372036854775807' in line
        assert b'"f_one":1.0' in line and b'"f_negzero":-0.0' in line
        assert every["f_inf"] == {"$float": "AAAAAAAA8H8="}
        assert every["b_empty"] == {"$bytes": ""}
        assert not any(n.startswith("_storage") for n in names)


def test_export_is_one_snapshot(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("a")
        tx.create_table("b")
        a_ids = [tx.insert("a", {"i": i}) for i in range(3)]
        tx.insert("b", {"i": 0})

    def write_meanwhile(table: str, n: int) -> None:
        # Runs between pages of the export: none of this may show up in it.
        if table == "a":
            with deployment.transaction() as tx:
                tx.insert("b", {"i": 1})
                tx.delete(a_ids[0])
                tx.create_table("c")

    buf = io.BytesIO()
    summary = export_backup(deployment, buf, progress=write_meanwhile)
    assert summary.documents == {"a": 3, "b": 1}
    with zipfile.ZipFile(buf) as zf:
        assert len(zf.read("b/documents.jsonl").splitlines()) == 1
        assert "c/documents.jsonl" not in zf.namelist()


def test_export_to_directory_and_unseekable_stream(deployment: Deployment, tmp_path: Path) -> None:
    with deployment.transaction() as tx:
        tx.create_table("t")
        tx.insert("t", {"x": 1})
    summary = export_backup(deployment, tmp_path)
    assert summary.path == str(tmp_path / f"snapshot_{summary.snapshot_ts}.zip")

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += bytes(b)
            return len(b)

    pipe = Pipe()
    export_backup(deployment, pipe)
    with zipfile.ZipFile(io.BytesIO(bytes(pipe.data))) as zf:
        assert zf.testzip() is None
        assert len(zf.read("t/documents.jsonl").splitlines()) == 1


# Ids written as literals, the way a real export spells them (table numbers 10001 and 10002).
USER_1 = "j5702081040g2081040g208105720px1"
USER_2 = "j57040g2081040g2081040g209720t96"
ENTRY_1 = "j57060r30c1g60r30c1g60r30d720xxb"
EVENT_1 = "jd702081040g2081040g208105720qe5"
EVENT_2 = "jd7040g2081040g2081040g209720tta"

CURRENT_FORMAT_ZIP = {
    "README.md": "# Welcome to your Convex snapshot export!\n",
    "_tables/documents.jsonl": '{"name":"users","id":10001}\n{"name":"posts","id":10002}\n',
    "users/generated_schema.jsonl": '"uniform"\n',
    "users/documents.jsonl": (
        '{"_creationTime":1700000000000.5,"_id":"' + USER_1 + '","age":42,"big":9223372036854775807,'
        '"blob":{"$bytes":"AAEC/w=="},"name":"Ada","neg":-0.0,"ratio":1.0,"tags":["x",{"deep":[1,2.5]}]}\n'
        '{"_creationTime":1700000000001.0,"_id":"' + USER_2 + '","huge":18446744073709551615,'
        '"inf":{"$float":"AAAAAAAA8H8="},"name":"Bob","nan":{"$float":"AQAAAAAA+H8="},'
        '"ninf":{"$float":"AAAAAAAA8P8="},"small":-9223372036854775808,"z":-0}\n'
    ),
    "posts/generated_schema.jsonl": '"uniform"\n',
    "posts/documents.jsonl": "",
    "_components/waitlist/_tables/documents.jsonl": '{"name":"entries","id":10001}\n',
    "_components/waitlist/entries/generated_schema.jsonl": '"uniform"\n',
    "_components/waitlist/entries/documents.jsonl": (
        '{"_creationTime":1700000000002.25,"_id":"' + ENTRY_1 + '","email":"a@b.c"}\n'
    ),
    "_storage/documents.jsonl": (
        '{"_id":"'
        + EVENT_1
        + '","_creationTime":1700000000000.0,"sha256":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJW'
        'ZG3hSuFU=","size":0,"contentType":"image/png","internalId":"0123"}\n'
    ),
    "_storage/" + EVENT_1 + ".png": b"",
    "_scheduled_functions/documents.jsonl": "{}\n",
}


def test_handcrafted_current_format_zip(deployment: Deployment) -> None:
    summary = import_backup(deployment, zip_bytes(CURRENT_FORMAT_ZIP))
    assert summary.documents == {"posts": 0, "users": 2, "waitlist:entries": 1}
    assert any("_storage" in note and "1 stored file" in note for note in summary.notes)
    assert any("_scheduled_functions" in note for note in summary.notes)
    assert deployment.table("users").table_number == 10001
    assert deployment.table("posts").table_number == 10002
    assert deployment.table("entries", "waitlist").table_number == 10001

    users = {d.id: d.value() for d in deployment.iter_snapshot(deployment.table("users"))}
    ada, bob = users[USER_1], users[USER_2]
    assert ada == {
        "_creationTime": 1700000000000.5,
        "_id": USER_1,
        "age": 42,
        "big": values.INT64_MAX,
        "blob": b"\x00\x01\x02\xff",
        "name": "Ada",
        "neg": -0.0,
        "ratio": 1.0,
        "tags": ["x", {"deep": [1, 2.5]}],
    }
    assert type(ada["age"]) is int and type(ada["ratio"]) is float
    assert math.copysign(1.0, ada["neg"]) < 0
    assert bob["inf"] == math.inf and bob["ninf"] == -math.inf
    assert f64_bits(bob["nan"]) == 0x7FF8000000000001
    assert bob["small"] == values.INT64_MIN and type(bob["small"]) is int
    # Convex (serde_json) reads `-0` and integers beyond i64 as Float64.
    assert type(bob["z"]) is float and math.copysign(1.0, bob["z"]) < 0
    assert type(bob["huge"]) is float and bob["huge"] == 18446744073709551615.0
    entries = [d.value() for d in deployment.iter_snapshot(deployment.table("entries", "waitlist"))]
    assert entries == [{"_creationTime": 1700000000002.25, "_id": ENTRY_1, "email": "a@b.c"}]


LEGACY_SHAPE = (
    '{"_creationTime": normalfloat64, "_id": id<10003>, "count": int64, "label": string, '
    '"meta": record<field_name, bytes>, "nums": array<int64>, "payload": bytes, "score": NaN | inf, '
    '"value": int64 | string}'
)

LEGACY_FORMAT_ZIP = {
    "README.md": "# Welcome to your Convex snapshot export!\n",
    "_tables/documents.jsonl": '{"name": "events", "id": 10003}\n',
    "events/generated_schema.jsonl": (
        json.dumps(LEGACY_SHAPE) + "\n"
        '{"' + EVENT_1 + '":{"score":{"$float64NaN":"AQAAAAAA+H8="},"value":"int64"}}\n'
        '{"' + EVENT_2 + '":{"score":"float64inf"}}\n'
    ),
    "events/documents.jsonl": (
        '{"_creationTime":1700000000000.0,"_id":"' + EVENT_1 + '","count":"5","label":"7",'
        '"meta":{"k":"AAE="},"nums":["1","-2"],"payload":"AAE=","score":"NaN","value":"7"}\n'
        '{"_creationTime":1700000000001,"_id":"' + EVENT_2 + '","count":"-3","label":"x",'
        '"meta":{},"nums":[],"payload":"","score":"-Infinity","value":"seven"}\n'
    ),
    # No generated_schema.jsonl and no _id/_creationTime: plain JSON, new system fields.
    "notes/documents.jsonl": '{"n": 3, "s": "3", "list": [1, "AAE="]}\n',
}


def test_handcrafted_legacy_format_zip(deployment: Deployment) -> None:
    summary = import_backup(deployment, zip_bytes(LEGACY_FORMAT_ZIP))
    assert summary.documents == {"events": 1 + 1, "notes": 1}
    assert any("notes" in note and "generated_schema" in note for note in summary.notes)
    assert deployment.table("events").table_number == 10003
    events = {d.id: d.value() for d in deployment.iter_snapshot(deployment.table("events"))}
    first, second = events[EVENT_1], events[EVENT_2]
    assert {k: v for k, v in first.items() if k != "score"} == {
        "_creationTime": 1700000000000.0,
        "_id": EVENT_1,
        "count": 5,
        "label": "7",
        "meta": {"k": b"\x00\x01"},
        "nums": [1, -2],
        "payload": b"\x00\x01",
        "value": 7,
    }
    assert type(first["count"]) is int and type(first["value"]) is int
    assert f64_bits(first["score"]) == 0x7FF8000000000001
    assert second["count"] == -3 and second["value"] == "seven" and second["score"] == -math.inf
    assert second["payload"] == b"" and type(second["_creationTime"]) is float
    (note,) = [d.value() for d in deployment.iter_snapshot(deployment.table("notes"))]
    assert (note["n"], note["s"], note["list"]) == (3.0, "3", [1.0, "AAE="])
    assert type(note["n"]) is float
    assert ids.decode_id(note["_id"])[0] == deployment.table("notes").table_number
    assert type(note["_creationTime"]) is float


def test_malformed_line_names_entry_and_line_not_content(deployment: Deployment) -> None:
    lines = [
        orjson.dumps(
            {"_id": ids.encode_id(10001, ids.new_internal_id()), "_creationTime": 1.0, "i": i}
        ).decode()
        for i in range(4)
    ]
    lines.insert(4, '{"_id": "secret-token-123", "oops" ')
    backup = zip_bytes(
        {"users/documents.jsonl": "\n".join(lines) + "\n", "users/generated_schema.jsonl": '"uniform"\n'}
    )
    with pytest.raises(BackupImportError) as info:
        import_backup(deployment, backup, batch_size=2)
    err = info.value
    assert "users/documents.jsonl line 5" in err.message
    assert "secret-token" not in err.message and "oops" not in str(err)
    assert (err.entry, err.line, err.committed_documents) == ("users/documents.jsonl", 5, 4)
    assert "4 document(s)" in err.message and "not atomic" in err.message
    assert deployment.document_count("users") == 4


def test_value_error_names_line(deployment: Deployment) -> None:
    other_table_id = ids.encode_id(10002, ids.new_internal_id())
    backup = zip_bytes(
        {
            "_tables/documents.jsonl": '{"name":"users","id":10001}\n',
            "users/generated_schema.jsonl": '"uniform"\n',
            "users/documents.jsonl": '\n{"_id":"' + other_table_id + '","_creationTime":1.0}\n',
        }
    )
    with pytest.raises(BackupImportError) as info:
        import_backup(deployment, backup)
    assert info.value.line == 2 and info.value.code == "InvalidBackup"
    assert "table number 10002" in info.value.message

    bad_field = zip_bytes({"t/documents.jsonl": '{"$weird": 1}\n'})
    with pytest.raises(BackupImportError) as info:
        import_backup(deployment, bad_field)
    assert info.value.entry == "t/documents.jsonl" and info.value.line == 1


def test_create_mode_refuses_non_empty_table(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("users", table_number=10001)
        tx.insert("users", {"name": "already here"})
    with pytest.raises(BackupImportError) as info:
        import_backup(deployment, zip_bytes(CURRENT_FORMAT_ZIP))
    assert info.value.code == "TableExists"
    assert '"users"' in info.value.message
    # Refused before writing anything: no other table was created.
    assert deployment.find_table("posts") is None
    assert deployment.find_table("entries", "waitlist") is None
    assert deployment.document_count("users") == 1


def test_replace_and_append(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("users", table_number=10001)
        tx.add_index("users", "by_name", ["name"])
        tx.insert("users", {"name": "old"})
    import_backup(deployment, zip_bytes(CURRENT_FORMAT_ZIP), mode="replace")
    assert set(raw_docs(deployment, "users")) == {USER_1, USER_2}
    assert deployment.index("users", "by_name") is not None
    with deployment.transaction() as tx:
        found = tx.index_query("users", "by_name", ["Ada"])
    assert [doc_id for doc_id, _ in found] == [USER_1]

    with deployment.transaction() as tx:
        tx.insert("users", {"name": "new"})
    appended = import_backup(
        deployment,
        zip_bytes(
            {
                "users/generated_schema.jsonl": '"uniform"\n',
                "users/documents.jsonl": '{"name":"appended"}\n',
            }
        ),
        mode="append",
    )
    assert appended.documents == {"users": 1}
    assert deployment.document_count("users") == 4

    # Appending the same documents again collides on _id.
    with pytest.raises(BackupImportError) as info:
        import_backup(deployment, zip_bytes(CURRENT_FORMAT_ZIP), mode="append")
    assert "users/documents.jsonl line 1" in info.value.message


def test_replace_renumbers_tables(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("posts", table_number=10001)
        tx.create_table("users", table_number=10002)
        tx.add_index("users", "by_name", ["name"])
        tx.insert("users", {"name": "old"})
    import_backup(deployment, zip_bytes(CURRENT_FORMAT_ZIP), mode="replace")
    assert deployment.table("users").table_number == 10001
    assert deployment.table("posts").table_number == 10002
    assert set(raw_docs(deployment, "users")) == {USER_1, USER_2}
    assert deployment.index("users", "by_name") is not None

    # 10003 is taken by another table and nothing refers to events by id: placed under a free number.
    with deployment.transaction() as tx:
        tx.create_table("other", table_number=10003)
    summary = import_backup(deployment, zip_bytes(LEGACY_FORMAT_ZIP), mode="replace")
    assert deployment.table("events").table_number == 10004
    assert {ids.decode_id(i)[1] for i in raw_docs(deployment, "events")} == {
        ids.decode_id(EVENT_1)[1],
        ids.decode_id(EVENT_2)[1],
    }
    assert any("events: placed under table number 10004" in n for n in summary.notes)


def test_append_to_a_table_with_another_number_reencodes_unreferenced_ids(deployment: Deployment) -> None:
    with deployment.transaction() as tx:
        tx.create_table("users", table_number=10005)
    import_backup(deployment, zip_bytes(CURRENT_FORMAT_ZIP), mode="append")
    assert {ids.decode_id(i) for i in raw_docs(deployment, "users")} == {
        (10005, ids.decode_id(USER_1)[1]),
        (10005, ids.decode_id(USER_2)[1]),
    }


def test_not_a_zip(deployment: Deployment) -> None:
    with pytest.raises(BackupImportError) as info:
        import_backup(deployment, io.BytesIO(b"not a zip at all"))
    assert info.value.code == "InvalidZip"


def test_legacy_shape_errors_are_located(deployment: Deployment) -> None:
    backup = zip_bytes({"t/generated_schema.jsonl": '"{\\"a\\": whatever}"\n', "t/documents.jsonl": "{}\n"})
    with pytest.raises(BackupImportError) as info:
        import_backup(deployment, backup)
    assert (info.value.entry, info.value.line) == ("t/generated_schema.jsonl", 1)
    assert deployment.find_table("t") is None


def test_export_memory_does_not_grow_with_table_size(deployment: Deployment) -> None:
    filler = "x" * 1000
    with deployment.transaction() as tx:
        tx.create_table("big")
        for i in range(10_000):
            tx.insert("big", {"i": i, "filler": filler})
    with deployment.transaction() as tx:
        for i in range(10_000):
            tx.insert("big", {"i": i, "filler": filler})
    table_bytes = 20_000 * 1000

    class Sink(io.RawIOBase):
        """Counts bytes and keeps nothing, so only the exporter's own memory is measured."""

        def __init__(self) -> None:
            self.size = 0

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.size += len(b)
            return len(b)

    sink = Sink()
    tracemalloc.start()
    try:
        summary: BackupSummary = export_backup(deployment, sink)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.documents == {"big": 20_000}
    assert sink.size > 0
    assert peak < 8 * 1024 * 1024 < table_bytes, peak


def test_import_respects_transaction_limits(deployment_factory: DeploymentFactory) -> None:
    dep = deployment_factory.open(
        DeploymentConfig(background=False, max_writes_per_transaction=4, max_write_bytes_per_transaction=3000)
    )
    docs = [
        orjson.dumps(
            {"_id": ids.encode_id(10001, ids.new_internal_id()), "_creationTime": 1.0, "pad": "p" * 900}
        )
        for _ in range(10)
    ]
    # A leading folder (a zipped export directory) is ignored, as Convex does.
    backup = zip_bytes(
        {
            "snapshot/users/generated_schema.jsonl": '"uniform"\n',
            "snapshot/users/documents.jsonl": b"\n".join(docs) + b"\n",
        }
    )
    seen: list[tuple[str, int]] = []
    summary = import_backup(dep, backup, progress=lambda t, n: seen.append((t, n)))
    assert summary.documents == {"users": 10}
    assert dep.table("users").table_number == 10001
    counts = [n for _, n in seen]
    assert counts == sorted(counts) and counts[-1] == 10 and len(counts) >= 5


def test_damaged_zip_is_reported(deployment: Deployment) -> None:
    doc = orjson.dumps({"_id": ids.encode_id(10001, ids.new_internal_id()), "_creationTime": 1.0, "s": "abc"})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("users/documents.jsonl", doc + b"\n")
    data = bytearray(buf.getvalue())
    data[data.index(b'"abc"') + 1] ^= 0x01  # the CRC no longer matches
    with pytest.raises(BackupImportError) as info:
        import_backup(deployment, io.BytesIO(bytes(data)))
    assert info.value.code == "InvalidZip"
