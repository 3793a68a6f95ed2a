"""Hostile backup ZIPs (issue #7 items 5, 6 and 10): a ZIP bomb line, over-long lines, over-deep lines.
Storage-touching tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

from connectors import ids, values
from connectors.backend.engine import Deployment
from connectors.backup import MAX_LINE_BYTES, BackupImportError, import_backup
from tests.unit.test_backup import zip_bytes

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]
ENTRY = "t/documents.jsonl"
TABLES = '{"name": "t", "id": 10001}\n'


def doc_id(n: int) -> str:
    return ids.encode_id(10001, n.to_bytes(ids.INTERNAL_ID_LEN, "big"))


def line(n: int, **fields: object) -> bytes:
    return orjson.dumps({"_id": doc_id(n), "_creationTime": 1700000000000.5, **fields}) + b"\n"


def padded_line(n: int, size: int) -> bytes:
    """A document line whose stored (and exported) JSON is exactly ``size`` bytes."""
    empty = len(line(n, s="")) - 1
    out = line(n, s="x" * (size - empty))
    assert len(out) == size + 1
    return out


def backup(lines: bytes, schema: bytes | None = b'"uniform"\n') -> dict[str, str | bytes]:
    entries: dict[str, str | bytes] = {"_tables/documents.jsonl": TABLES, ENTRY: lines}
    if schema is not None:
        entries["t/generated_schema.jsonl"] = schema
    return entries


def count(dep: Deployment, table: str = "t") -> int:
    info = dep.find_table(table)
    return 0 if info is None else sum(1 for _ in dep.iter_snapshot(info))


# --- item 5: ZIP bombs and line bounds ------------------------------------------------------------------

BOMB_SCRIPT = r"""
import json, resource, sys
from connectors.backend.engine import Deployment
from connectors.backup import BackupImportError, import_backup

dep = Deployment.open(data_dir=sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    import_backup(dep, sys.argv[1])
    message = None
except BackupImportError as e:
    message = e.message
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
dep.close()
print(json.dumps({"message": message, "growth_kib": after - before}))
"""


def test_zip_bomb_line_is_refused_without_reading_it_into_memory(tmp_path: Path) -> None:
    line_bytes = 256 * MiB
    path = tmp_path / "bomb.zip"
    chunk = b"x" * MiB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("_tables/documents.jsonl", TABLES)
        zf.writestr("t/generated_schema.jsonl", '"uniform"\n')
        with zf.open(ENTRY, "w", force_zip64=True) as w:
            w.write(b'{"s":"')
            for _ in range(line_bytes // MiB):
                w.write(chunk)
            w.write(b'"}\n')
    assert path.stat().st_size < 2 * MiB  # a small file that inflates to a 256 MiB line
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, str(path), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["message"] is not None
    assert result["message"].startswith(f"{ENTRY} line 1: the line is longer than {MAX_LINE_BYTES} bytes")
    # Far below the line's size: at most one bounded line (2 MiB) plus parsing overhead.
    assert result["growth_kib"] < 48 * 1024, result


def test_line_bound_names_member_and_line(deployment: Deployment) -> None:
    lines = line(1, a=1) + b'{"s":"' + b"x" * MAX_LINE_BYTES + b'"}\n'
    with pytest.raises(BackupImportError) as ei:
        import_backup(deployment, zip_bytes(backup(lines)))
    assert ei.value.entry == ENTRY and ei.value.line == 2
    assert f"the line is longer than {MAX_LINE_BYTES} bytes" in ei.value.message
    assert "xxxx" not in ei.value.message


def test_document_just_over_one_mib_is_refused_naming_member_and_line(deployment: Deployment) -> None:
    lines = line(1, a=1) + padded_line(2, values.MAX_DOCUMENT_SIZE + 100)
    with pytest.raises(BackupImportError) as ei:
        import_backup(deployment, zip_bytes(backup(lines)))
    assert ei.value.entry == ENTRY and ei.value.line == 2
    assert "Document is too large" in ei.value.message
    assert ei.value.message.startswith(f"{ENTRY} line 2: ")


def test_legal_one_mib_document_imports(deployment: Deployment) -> None:
    lines = line(1, a=1) + padded_line(2, values.MAX_DOCUMENT_SIZE)
    summary = import_backup(deployment, zip_bytes(backup(lines)))
    assert summary.documents == {"t": 2}
    big = [d.value() for d in deployment.iter_snapshot(deployment.table("t")) if d.id == doc_id(2)]
    assert len(big) == 1
    assert len(values.encode_document(big[0]).body) == values.MAX_DOCUMENT_SIZE


def test_members_larger_than_the_free_disk_are_refused_before_writing(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(getattr(deployment.persistence, "path", None), Path):
        pytest.skip("only a SQLite deployment has a disk to measure")
    import shutil

    from connectors import backup as backup_module

    real = shutil.disk_usage

    def tiny_disk(path: str | os.PathLike[str]) -> object:
        usage = real(path)
        return type(usage)(usage.total, usage.used, 10)

    monkeypatch.setattr(backup_module.shutil, "disk_usage", tiny_disk)
    with pytest.raises(BackupImportError) as ei:
        import_backup(deployment, zip_bytes(backup(line(1, a=1))))
    assert ei.value.code == "InsufficientDiskSpace"
    assert "10 bytes free" in ei.value.message
    assert deployment.find_table("t") is None


# --- item 6 and 10: over-deep lines ---------------------------------------------------------------------


def deep_line(n: int, depth: int) -> bytes:
    return (
        b'{"_id":"'
        + doc_id(n).encode()
        + b'","_creationTime":1.5,"d":'
        + b"[" * depth
        + b"]" * depth
        + b"}\n"
    )


@pytest.mark.parametrize("schema", [b'"uniform"\n', None], ids=["uniform", "legacy"])
@pytest.mark.parametrize(
    ("depth", "named"),
    [
        (400, "nested 401 levels deep"),
        (1000, "nested 1001 levels deep"),
        (100_000, "nested more than 1024 levels deep"),
    ],
)
def test_deep_line_is_refused_naming_depth_member_and_line(
    deployment: Deployment, schema: bytes | None, depth: int, named: str
) -> None:
    lines = line(1, a=1) + deep_line(2, depth)
    with pytest.raises(BackupImportError) as ei:
        import_backup(deployment, zip_bytes(backup(lines, schema)))
    assert ei.value.entry == ENTRY and ei.value.line == 2
    assert named in ei.value.message, ei.value.message
    assert "not valid JSON" not in ei.value.message
    assert count(deployment) <= 1  # the good first line may be committed, nothing else


def test_deep_line_with_an_out_of_range_integer_is_refused_without_recursion(deployment: Deployment) -> None:
    # The Int64-range fallback (integers beyond i64 read as Float64) walks the line again.
    lines = b'{"big":99999999999999999999,"d":' + b"[" * 900 + b"]" * 900 + b"}\n"
    with pytest.raises(BackupImportError) as ei:
        import_backup(deployment, zip_bytes(backup(lines)))
    assert "nested 901 levels deep" in ei.value.message and ei.value.line == 1
