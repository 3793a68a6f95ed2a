"""The batch-file reader: the shared fixtures read in place, generated files of every layering, a 50 MB file
read with flat memory, and every failure (wrong key, bad padding, truncation, corruption, bad CSV)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fivetran_destination.batch_files import (
    UNMODIFIED,
    BatchFileError,
    BatchFileParams,
    Cell,
    Compression,
    Encryption,
    RowBatch,
    decode_binary_cell,
    read_batch_file,
)
from protos import destination_sdk_pb2

ROOT = Path(__file__).resolve().parents[3]
# shared/ sits beside the repository (read in place, never copied or edited).
FIXTURES = ROOT.parent / "shared" / "fixtures" / "fivetran_destination"

V1_NULL = "null-m8yilkvPsNulehxl2G6pmSQ3G3WWdLP"
V1_UNMOD = "unmod-NcK9NIjPUutCsz4mjOQQztbnwnE1sY3"
BOOKS = ("id", "title", "magic_number", "_fivetran_deleted", "_fivetran_synced")
MULTIKEY = ("id1", "id2", "text", "_fivetran_deleted", "_fivetran_synced")
SYNCED_UPSERT = "2024-01-09T04:10:19.156057706Z"

OFF, ZSTD, GZIP = Compression.OFF, Compression.ZSTD, Compression.GZIP
NONE, AES = Encryption.NONE, Encryption.AES


def read_all(
    path: Path | str, params: BatchFileParams, keys: dict[str, bytes] | None = None, per_batch: int = 1000
):
    batches = list(read_batch_file(str(path), params, keys or {}, per_batch))
    header = batches[0].header if batches else None
    return header, [row for batch in batches for row in batch.dicts()]


def params(
    compression: int, encryption: int, null: str = V1_NULL, unmodified: str = V1_UNMOD
) -> BatchFileParams:
    return BatchFileParams(compression, encryption, null, unmodified)


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.fail(f"fixture {path} is missing (shared/fixtures/fivetran_destination)")
    return path


# --- the shared fixtures, with the expected rows of their README ------------------------------------------

BOOKS_DELETE_ROW: dict[str, Cell] = {
    "id": "1",
    "title": None,
    "magic_number": None,
    "_fivetran_deleted": "true",
    "_fivetran_synced": "1970-01-01T00:00:00Z",
}

FIXTURE_CASES: list[tuple[str, BatchFileParams, tuple[str, ...], list[dict[str, Cell]]]] = [
    ("backslash.csv", params(OFF, NONE, "null", "unmod"), ("path",), [{"path": "C:\\Program Files\\"}]),
    (
        "books_batch_1_insert.csv.zst.aes",
        params(ZSTD, AES, "", ""),
        BOOKS,
        [
            {
                "id": "1",
                "title": "The Hitchhiker's Guide to the Galaxy",
                "magic_number": "42",
                "_fivetran_deleted": "false",
                "_fivetran_synced": "2024-01-08T18:52:07.754685370Z",
            },
            {
                "id": "2",
                "title": "The Lord of the Rings",
                "magic_number": "1",
                "_fivetran_deleted": "false",
                "_fivetran_synced": "2024-01-08T18:52:07.754685370Z",
            },
        ],
    ),
    (
        "books_delete.csv",
        params(OFF, NONE),
        BOOKS,
        [{**BOOKS_DELETE_ROW, "_fivetran_synced": "1970-01-01T00:00:00.0Z"}],
    ),
    ("books_delete.csv.zst", params(ZSTD, NONE), BOOKS, [BOOKS_DELETE_ROW]),
    ("books_delete.csv.gz", params(GZIP, NONE), BOOKS, [BOOKS_DELETE_ROW]),
    (
        "books_update.csv",
        params(OFF, NONE, "magic-nullvalue"),
        BOOKS,
        [
            {
                "id": "3",
                "title": UNMODIFIED,
                "magic_number": "15",
                "_fivetran_deleted": "false",
                "_fivetran_synced": "2024-02-08T23:59:59.999999999Z",
            },
            {
                "id": "2",
                "title": "The empire strikes back",
                "magic_number": UNMODIFIED,
                "_fivetran_deleted": "false",
                "_fivetran_synced": "2024-02-09T00:00:00.000000000Z",
            },
            {
                "id": "99",
                "title": None,
                "magic_number": "99",
                "_fivetran_deleted": "false",
                "_fivetran_synced": SYNCED_UPSERT,
            },
        ],
    ),
    (
        "books_upsert.csv",
        params(OFF, NONE, "magic-nullvalue"),
        BOOKS,
        [
            {"id": "3", "title": "The Hobbit", "magic_number": "14"},
            {"id": "2", "title": "The Two Towers", "magic_number": "1"},
            # A quoted "null" is the string null: only the request's null_string means NULL.
            {"id": "99", "title": "null", "magic_number": None},
        ],
    ),
    (
        "multikey_table_upsert.csv",
        params(OFF, NONE, "magic-nullvalue", "magic-unmodified-value"),
        MULTIKEY,
        [
            {"id1": "1", "id2": "100", "text": "first row"},
            {"id1": "2", "id2": "200", "text": "second row"},
            {"id1": "3", "id2": "300", "text": "third row"},
        ],
    ),
    (
        "multikey_table_update.csv",
        params(OFF, NONE, "magic-nullvalue", "magic-unmodified-value"),
        MULTIKEY,
        [
            {"id1": "2", "id2": "200", "text": "second row updated", "_fivetran_deleted": "false"},
            {
                "id1": "3",
                "id2": "300",
                "text": "third row soft deleted - but also this value updated",
                "_fivetran_deleted": "true",
            },
        ],
    ),
    (
        "multikey_table_delete.csv",
        params(OFF, NONE, "magic-nullvalue", "magic-unmodified-value"),
        MULTIKEY,
        [
            {"id1": "1", "id2": "100", "_fivetran_deleted": "true"},
            {"id1": "3", "id2": "300", "_fivetran_deleted": "false"},
        ],
    ),
]


@pytest.mark.parametrize(
    ("name", "file_params", "header", "expected"), FIXTURE_CASES, ids=[c[0] for c in FIXTURE_CASES]
)
def test_fixture_files(
    name: str, file_params: BatchFileParams, header: tuple[str, ...], expected: list[dict[str, Cell]]
) -> None:
    path = fixture(name)
    keys = {str(path): fixture(name + ".key").read_bytes()} if file_params.encryption == AES else {}
    got_header, rows = read_all(path, file_params, keys)
    assert got_header == header
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert set(row) == set(header)
        # Some expectations list only the columns the README pins.
        assert {column: row[column] for column in want} == want


def test_aes_fixture_key_is_the_documented_one() -> None:
    import base64

    key = fixture("books_batch_1_insert.csv.zst.aes.key").read_bytes()
    assert base64.b64encode(key).decode() == "f/GQrILnRacI9U9ksJbyNNXXqDpquVx/IFmz5HCdFi0="


def test_params_from_the_request() -> None:
    proto = destination_sdk_pb2.FileParams(
        compression=destination_sdk_pb2.GZIP,
        encryption=destination_sdk_pb2.AES,
        null_string="n",
        unmodified_string="u",
    )
    assert BatchFileParams.from_proto(proto) == BatchFileParams(GZIP, AES, "n", "u")


def test_binary_cells_are_base64() -> None:
    assert decode_binary_cell("SGVsbG8gd29ybGQ=") == b"Hello world"
    assert decode_binary_cell("") == b""
    with pytest.raises(ValueError, match="not valid base64") as caught:
        decode_binary_cell("secret-value!")
    assert "secret" not in str(caught.value)


# --- generated files ---------------------------------------------------------------------------------------


def compress(data: bytes, compression: Compression) -> bytes:
    if compression is ZSTD:
        # A streaming writer omits the content size, as Fivetran's writer does.
        out = io.BytesIO()
        with zstandard.ZstdCompressor(level=-5, write_checksum=True).stream_writer(
            out, closefd=False
        ) as writer:
            writer.write(data)
        return out.getvalue()
    if compression is GZIP:
        return gzip.compress(data, mtime=0)  # reproducible bytes
    return data


def encrypt(data: bytes, key: bytes, iv: bytes | None = None) -> bytes:
    iv = iv if iv is not None else os.urandom(16)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


def write_batch_file(
    path: Path, plaintext: bytes, compression: Compression, key: bytes | None
) -> tuple[BatchFileParams, dict[str, bytes]]:
    data = compress(plaintext, compression)
    if key is not None:
        data = encrypt(data, key)
    path.write_bytes(data)
    encryption = AES if key is not None else NONE
    return params(compression, encryption, "~null~", "~unmod~"), ({str(path): key} if key else {})


def csv_bytes(
    header: list[str], rows: list[list[str]], line_end: str = "\n", final_newline: bool = True
) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_end, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    if not final_newline:
        text = text[: -len(line_end)]
    return text.encode()


TRICKY = [
    'a "quoted" word',
    "two\nlines",
    "crlf\r\ninside",
    "comma, inside",
    "back\\slash\\",
    "unicode ☃ ünï",
    "",
    " leading and trailing ",
]


def generated_rows(count: int, seed: int) -> tuple[list[str], list[list[str]], list[dict[str, Cell]]]:
    rnd = random.Random(seed)
    header = ["text", "id", "_fivetran_synced", "amount", "_fivetran_deleted"]
    rnd.shuffle(header)  # columns come in any order: map by name
    rows, expected = [], []
    for i in range(count):
        values: dict[str, str] = {
            "id": str(i),
            "text": rnd.choice(TRICKY) + str(rnd.getrandbits(40)),
            "amount": rnd.choice(["~null~", "~unmod~", f"{rnd.random() * 1e6:.4f}", "3.4028237E+38"]),
            "_fivetran_synced": f"2024-01-09T04:10:{i % 60:02d}.{i:09d}Z",
            "_fivetran_deleted": rnd.choice(["true", "false"]),
        }
        rows.append([values[column] for column in header])
        expected.append(
            {
                column: UNMODIFIED if value == "~unmod~" else None if value == "~null~" else value
                for column, value in values.items()
            }
        )
    return header, rows, expected


@pytest.mark.parametrize("compression", [OFF, ZSTD, GZIP], ids=lambda c: c.name)
@pytest.mark.parametrize("encrypted", [True, False], ids=["aes", "plain"])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_generated_files_over_4_kib(
    tmp_path: Path, compression: Compression, encrypted: bool, line_end: str
) -> None:
    header, rows, expected = generated_rows(1000, seed=compression.value * 2 + encrypted)
    plaintext = csv_bytes(header, rows, line_end, final_newline=False)
    assert len(plaintext) > 15 * 4096  # well past the original's 4 KiB defect, and many CBC chunks
    key = os.urandom(32) if encrypted else None
    file_params, keys = write_batch_file(tmp_path / "table_replace.csv.x", plaintext, compression, key)
    got_header, got = read_all(tmp_path / "table_replace.csv.x", file_params, keys)
    assert got_header == tuple(header)
    assert got == expected


def test_batches_and_row_numbers(tmp_path: Path) -> None:
    header, rows, expected = generated_rows(25, seed=7)
    file_params, keys = write_batch_file(tmp_path / "t.csv", csv_bytes(header, rows), ZSTD, os.urandom(32))
    batches: list[RowBatch] = list(
        read_batch_file(str(tmp_path / "t.csv"), file_params, keys, rows_per_batch=10)
    )
    assert [len(b.rows) for b in batches] == [10, 10, 5]
    assert [b.first_row for b in batches] == [1, 11, 21]
    assert all(b.header == tuple(header) for b in batches)
    assert [row for b in batches for row in b.dicts()] == expected


@pytest.mark.parametrize("size_in_blocks", [1, 2, 300])
def test_plaintext_an_exact_multiple_of_16_bytes(tmp_path: Path, size_in_blocks: int) -> None:
    """PKCS#7 then adds a whole block of padding, which must be removed entirely."""
    line = "id,text\n"
    body_len = size_in_blocks * 16 - len(line)
    plaintext = (
        (line + "1," + "x" * (body_len - 3) + "\n").encode() if body_len > 3 else b"id,text\n1,xxxxxx\n"
    )
    plaintext = plaintext[: max(16, (len(plaintext) // 16) * 16)]
    assert len(plaintext) % 16 == 0
    key = os.urandom(32)
    path = tmp_path / "exact.csv.aes"
    path.write_bytes(encrypt(plaintext, key))
    assert (path.stat().st_size - 16) == len(plaintext) + 16  # one full padding block
    header, rows = read_all(path, params(OFF, AES), {str(path): key})
    assert header == ("id", "text")
    assert rows == [
        dict(zip(("id", "text"), next(csv.reader([plaintext.decode().splitlines()[1]])), strict=True))
    ]


def test_sentinels_compare_after_unquoting_and_unmodified_wins(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b'a,b,c\n"",x,""\n"N",N,"U"\n')
    assert read_all(path, params(OFF, NONE, "", ""))[1] == [
        {"a": UNMODIFIED, "b": "x", "c": UNMODIFIED},
        {"a": "N", "b": "N", "c": "U"},
    ]
    assert read_all(path, params(OFF, NONE, "N", "U"))[1] == [
        {"a": "", "b": "x", "c": ""},
        {"a": None, "b": None, "c": UNMODIFIED},
    ]


def test_a_zstd_file_of_several_frames_without_content_size(tmp_path: Path) -> None:
    path = tmp_path / "frames.csv.zst"
    first = compress(b"id\n1\n", ZSTD)
    assert zstandard.frame_content_size(first) == -1  # streaming writers leave the size out
    path.write_bytes(first + compress(b"2\n3\n", ZSTD))
    assert read_all(path, params(ZSTD, NONE))[1] == [{"id": "1"}, {"id": "2"}, {"id": "3"}]


def test_huge_cells_are_accepted(tmp_path: Path) -> None:
    big = "y" * (3 << 20)
    path = tmp_path / "big.csv.gz"
    path.write_bytes(gzip.compress(f'id,blob\n1,"{big}"\n'.encode()))
    assert read_all(path, params(GZIP, NONE))[1] == [{"id": "1", "blob": big}]


# --- memory: a 50 MB file streams with flat memory -------------------------------------------------------

FIFTY_MB = 50 << 20

MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from fivetran_destination.batch_files import BatchFileParams, read_batch_file

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    path, key_hex = sys.argv[1], sys.argv[2]
    params = BatchFileParams(compression=int(sys.argv[3]), encryption=1, null_string="~n~", unmodified_string="~u~")
    before = peak_mb()
    rows = 0
    last_id = None
    for batch in read_batch_file(path, params, {path: bytes.fromhex(key_hex)}):
        rows += len(batch.rows)
        last_id = batch.dicts()[-1]["id"]
    print(json.dumps({"rows": rows, "last_id": last_id, "before_mb": before, "after_mb": peak_mb()}))
    """
)


def write_large_encrypted_file(path: Path, key: bytes, compression: Compression, min_plain_bytes: int) -> int:
    """Stream rows -> (zstd) -> AES-CBC -> file in chunks; never holds the file in memory. Returns row count."""
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    padder = padding.PKCS7(128).padder()
    rnd = random.Random(3)
    rows = 0
    written = 0
    with path.open("wb") as out:
        out.write(iv)

        class Sink:
            def write(self, data: bytes) -> int:
                out.write(encryptor.update(padder.update(data)))
                return len(data)

        sink = Sink()
        compressor = zstandard.ZstdCompressor(level=1).compressobj() if compression is ZSTD else None

        def emit(data: bytes) -> None:
            sink.write(compressor.compress(data) if compressor else data)

        emit(b"id,name,score,payload,_fivetran_synced\n")
        while written < min_plain_bytes:
            lines = []
            for _ in range(2000):
                payload = rnd.getrandbits(256).to_bytes(32, "big").hex()
                lines.append(
                    f'{rows},"name {rows}",{rnd.random():.6f},{payload},2024-01-09T04:10:19.156057706Z\n'
                )
                rows += 1
            chunk = "".join(lines).encode()
            written += len(chunk)
            emit(chunk)
        if compressor:
            sink.write(compressor.flush())
        out.write(encryptor.update(padder.finalize()) + encryptor.finalize())
    return rows


@pytest.mark.parametrize("compression", [OFF, ZSTD], ids=lambda c: c.name)
def test_a_50_mb_file_streams_with_flat_memory(tmp_path: Path, compression: Compression) -> None:
    key = os.urandom(32)
    path = tmp_path / "large.csv.aes"
    rows = write_large_encrypted_file(path, key, compression, FIFTY_MB)
    if compression is OFF:
        assert path.stat().st_size > FIFTY_MB
    script = tmp_path / "probe.py"
    script.write_text(MEMORY_PROBE)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(script), str(path), key.hex(), str(compression.value)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == rows
    assert report["last_id"] == str(rows - 1)
    growth = report["after_mb"] - report["before_mb"]
    assert growth < 20, f"peak RSS grew by {growth:.1f} MB reading a {FIFTY_MB >> 20} MB file"


# --- failures ----------------------------------------------------------------------------------------------

SECRET_CELL = "customer-secret-value-1234"


def secret_file(tmp_path: Path, compression: Compression, key: bytes, rows: int = 400) -> tuple[Path, bytes]:
    header = ["id", "secret"]
    body = [[str(i), f"{SECRET_CELL}-{i}"] for i in range(rows)]
    plaintext = csv_bytes(header, body)
    path = tmp_path / "customer_table_replace.csv.zst.aes"
    # A fixed IV (and reproducible compression): decrypting with a wrong key gives garbage, which a random
    # IV would turn into valid-looking padding once in 256 runs; these bytes are known to fail the padding.
    data = encrypt(compress(plaintext, compression), key, iv=bytes(16))
    path.write_bytes(data)
    return path, data


def assert_clean_error(error: BatchFileError, key: bytes | None = None) -> None:
    text = str(error)
    assert text.startswith(f"Batch file {error.file_name}")
    assert "/" not in error.file_name  # basename only: the path holds the customer's working directory
    assert SECRET_CELL not in text
    if key is not None:
        assert key.hex() not in text and repr(key) not in text
        assert not any(key[i : i + 8].hex() in text for i in range(0, 32, 8))


def read_error(path: Path, file_params: BatchFileParams, keys: dict[str, bytes]) -> BatchFileError:
    with pytest.raises(BatchFileError) as caught:
        read_all(path, file_params, keys)
    return caught.value


@pytest.mark.parametrize("compression", [OFF, ZSTD, GZIP], ids=lambda c: c.name)
def test_wrong_key_is_reported_as_bad_padding(tmp_path: Path, compression: Compression) -> None:
    key = bytes(range(32))
    path, _ = secret_file(tmp_path, compression, key)
    wrong = bytes(range(1, 33))
    error = read_error(path, params(compression, AES), {str(path): wrong})
    assert "invalid PKCS#7 padding" in error.reason
    assert "key" in error.action
    assert error.file_name == "customer_table_replace.csv.zst.aes"
    assert_clean_error(error, wrong)


def test_bad_padding_bytes(tmp_path: Path) -> None:
    key = os.urandom(32)
    iv = os.urandom(16)
    # Encrypt without PKCS#7: the last byte is 0x07 but the six before it are not.
    plaintext = b"id\n1\n".ljust(31, b"\x00") + b"\x07"
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    path = tmp_path / "pad.csv.aes"
    path.write_bytes(iv + encryptor.update(plaintext) + encryptor.finalize())
    error = read_error(path, params(OFF, AES), {str(path): key})
    assert "invalid PKCS#7 padding" in error.reason
    assert_clean_error(error, key)


@pytest.mark.parametrize("cut", [1, 15, 16, 17, 4096])
def test_truncated_encrypted_file(tmp_path: Path, cut: int) -> None:
    key = os.urandom(32)
    path, data = secret_file(tmp_path, ZSTD, key)
    path.write_bytes(data[:-cut])
    error = read_error(path, params(ZSTD, AES), {str(path): key})
    assert "truncated" in error.reason or "invalid PKCS#7 padding" in error.reason
    if cut % 16:
        assert "truncated" in error.reason
    assert_clean_error(error, key)


@pytest.mark.parametrize("size", [0, 10, 16, 31])
def test_encrypted_file_shorter_than_iv_and_one_block(tmp_path: Path, size: int) -> None:
    key = os.urandom(32)
    path = tmp_path / "short.csv.aes"
    path.write_bytes(os.urandom(size))
    error = read_error(path, params(OFF, AES), {str(path): key})
    assert "truncated" in error.reason
    assert_clean_error(error, key)


def test_corrupted_ciphertext(tmp_path: Path) -> None:
    key = os.urandom(32)
    path, data = secret_file(tmp_path, ZSTD, key, rows=3000)
    corrupted = bytearray(data)
    middle = len(corrupted) // 2
    corrupted[middle : middle + 4] = bytes(b ^ 0xFF for b in corrupted[middle : middle + 4])
    path.write_bytes(bytes(corrupted))
    error = read_error(path, params(ZSTD, AES), {str(path): key})
    assert "zstd" in error.reason
    assert error.row is not None
    assert_clean_error(error, key)


def test_truncated_zstd_and_gzip(tmp_path: Path) -> None:
    header, rows, _ = generated_rows(300, seed=1)
    plaintext = csv_bytes(header, rows)
    for compression in (ZSTD, GZIP):
        path = tmp_path / f"cut.{compression.name}"
        data = compress(plaintext, compression)
        path.write_bytes(data[: len(data) // 2])
        error = read_error(path, params(compression, NONE), {})
        assert "truncated" in error.reason, compression
        assert_clean_error(error)


def test_compression_setting_that_does_not_match(tmp_path: Path) -> None:
    path = tmp_path / "actually_gzip.csv"
    path.write_bytes(gzip.compress(b"id\n1\n"))
    error = read_error(path, params(ZSTD, NONE), {})
    assert "not valid zstd" in error.reason
    path.write_bytes(compress(b"id\n1\n", ZSTD))
    error = read_error(path, params(GZIP, NONE), {})
    assert "not valid gzip" in error.reason
    error = read_error(path, params(OFF, NONE), {})  # zstd bytes read as text
    assert "UTF-8" in error.reason or "CSV" in error.reason


def test_row_with_the_wrong_number_of_fields(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_bytes(f"id,secret\n1,{SECRET_CELL}\n2,{SECRET_CELL},extra\n".encode())
    error = read_error(path, params(OFF, NONE), {})
    assert error.row == 2
    assert "3 fields, the header 2" in error.reason
    assert "(data row 2)" in str(error)
    assert_clean_error(error)


def test_missing_header_and_duplicate_columns(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "missing file headers" in read_error(path, params(OFF, NONE), {}).reason
    path.write_bytes(b"id,id\n1,2\n")
    assert "duplicate column names" in read_error(path, params(OFF, NONE), {}).reason


def test_a_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_bytes(b"id,name\n")
    assert read_all(path, params(OFF, NONE)) == (None, [])


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("id,name\n1,caf\u00e9\n".encode("latin-1"))
    error = read_error(path, params(OFF, NONE), {})
    assert "not UTF-8" in error.reason


@pytest.mark.parametrize(("field", "value"), [("compression", 7), ("encryption", 2)])
def test_unknown_enum_values(tmp_path: Path, field: str, value: int) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"id\n1\n")
    base = {"compression": 0, "encryption": 0, "null_string": "", "unmodified_string": ""}
    error = read_error(path, BatchFileParams(**{**base, field: value}), {})  # type: ignore[arg-type]
    assert f"unknown {field} {value}" in error.reason
    assert "upgrade" in error.action


def test_missing_or_malformed_key(tmp_path: Path) -> None:
    key = os.urandom(32)
    path, _ = secret_file(tmp_path, OFF, key)
    error = read_error(path, params(OFF, AES), {"/other/path.csv": key})
    assert "no entry for its path" in error.reason
    assert "The key provided by Fivetran to decrypt the source data is invalid" in error.action
    error = read_error(path, params(OFF, AES), {str(path): key[:16]})
    assert "16 bytes long, not 32" in error.reason
    assert_clean_error(error, key)


def test_unencrypted_files_need_no_key(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_bytes(b"id\n1\n")
    assert read_all(path, params(OFF, NONE), {})[1] == [{"id": "1"}]


def test_missing_file(tmp_path: Path) -> None:
    error = read_error(tmp_path / "nowhere" / "gone.csv", params(OFF, NONE), {})
    assert error.file_name == "gone.csv"
    assert "couldn't open the file" in error.reason


def test_the_file_is_closed_when_reading_stops_early(tmp_path: Path) -> None:
    header, rows, _ = generated_rows(50, seed=2)
    path = tmp_path / "early.csv"
    path.write_bytes(csv_bytes(header, rows))
    batches: Iterator[RowBatch] = read_batch_file(str(path), params(OFF, NONE), {}, rows_per_batch=10)
    next(batches)
    batches.close()  # type: ignore[attr-defined]
    fds = os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []
    assert not any(os.path.realpath(f"/proc/self/fd/{fd}") == str(path) for fd in fds)


def test_gzip_bomb_output_is_bounded_per_step(tmp_path: Path) -> None:
    """Highly compressible data decompresses in bounded steps (the reader never inflates it at once)."""
    from fivetran_destination import batch_files

    data = b"id\n" + b"1\n" * (20 << 20)
    compressed = zlib.compress(data, 9, wbits=31) if sys.version_info >= (3, 11) else gzip.compress(data)
    steps = list(batch_files._gzip_decompressed(iter([compressed])))
    assert b"".join(steps) == data
    assert max(len(step) for step in steps) <= batch_files.READ_CHUNK_BYTES
